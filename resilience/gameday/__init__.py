"""gameday."""
