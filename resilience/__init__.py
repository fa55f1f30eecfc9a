"""resilience: chaos-plus-load experiments with a verdict and evidence.

The public face is small; everything behind it may move. Heavy modules load lazily.
"""

from __future__ import annotations

from resilience.errors import (
    DependencyUnavailable,
    ExperimentError,
    FaultError,
    GuardTripped,
    Interrupted,
    LoadError,
    ObserveError,
    ResilienceError,
    StackError,
)

__version__ = "0.1.0"

__all__ = [
    "DependencyUnavailable",
    "ExperimentError",
    "FaultError",
    "GuardTripped",
    "Interrupted",
    "LoadError",
    "ObserveError",
    "ResilienceError",
    "StackError",
    "__version__",
]
