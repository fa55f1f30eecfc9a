"""The orchestrator: runs one experiment on one clock and leaves a run directory behind."""
