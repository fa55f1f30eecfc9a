"""The four load presets, with the numbers of the load-testing guide this project grew from.

normal: 50 users (spawning 5/s) for 10 min. stress: 500 users (50/s) for 5 min.
spike: 100 users (10/s) for 5 min, 1000 users (100/s) for 2 min, back to 100 for 8 min.
endurance: 200 users (10/s) for 2 h. Stage durations are per stage, not cumulative.
"""

from __future__ import annotations

from typing import Final, Literal

Preset = Literal["normal", "stress", "spike", "endurance"]

PRESET_STAGES: Final[dict[str, tuple[tuple[float, int, float], ...]]] = {
    # (duration in seconds, users, spawn rate per second)
    "normal": ((600.0, 50, 5.0),),
    "stress": ((300.0, 500, 50.0),),
    "spike": ((300.0, 100, 10.0), (120.0, 1000, 100.0), (480.0, 100, 100.0)),
    "endurance": ((7200.0, 200, 10.0),),
}

PRESET_ERROR_RATE: Final[dict[str, float]] = {
    "normal": 0.001,
    "stress": 0.01,
    "spike": 0.05,
    "endurance": 0.001,
}
"""The guide's error-rate budget per preset (a fraction), for SLO defaults and docs."""
