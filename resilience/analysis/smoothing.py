"""The smoothing rule of a breaking point, shared by the analysis (by send time, from the run
directory: ``analysis/breaking.py``) and a capacity search's live judge (by completion time:
``runner/search.py``), kept apart so the live run imports no analysis (docs/findings.md,
"Breaking point")."""

from __future__ import annotations

WINDOW = 3
"""Seconds in each judged window."""
MIN_REQUESTS = 20
"""Requests a window (of the whole target, or of an endpoint) needs to be judged."""
SUSTAIN = 5
"""Consecutive broken seconds that make a break (more than ``WINDOW``)."""
GROWTH = 0.25
"""Rise of the offered load without a rise of the served rate that makes a plateau."""
GAIN = 0.05
"""Rise of the served rate that counts as throughput still rising with the load."""
