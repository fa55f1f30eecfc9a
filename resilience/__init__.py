"""resilience: chaos-plus-load experiments with a verdict and evidence.

The public face is small; everything behind it may move. ``load_experiment``,
``run_experiment`` and the model load lazily, so ``import resilience`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from resilience.analysis.analyse import Verdict, analyse
    from resilience.experiment.loader import load_experiment
    from resilience.experiment.model import Experiment
    from resilience.runner.observer import LiveStatus, RunObserver
    from resilience.runner.orchestrator import RunOptions, RunResult, run_experiment

__version__ = "0.1.0"

_LAZY = {
    "load_experiment": "resilience.experiment.loader",
    "Experiment": "resilience.experiment.model",
    "run_experiment": "resilience.runner.orchestrator",
    "RunOptions": "resilience.runner.orchestrator",
    "RunResult": "resilience.runner.orchestrator",
    "RunObserver": "resilience.runner.observer",
    "LiveStatus": "resilience.runner.observer",
    "analyse": "resilience.analysis.analyse",
    "Verdict": "resilience.analysis.analyse",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilience' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DependencyUnavailable",
    "Experiment",
    "ExperimentError",
    "FaultError",
    "GuardTripped",
    "Interrupted",
    "LiveStatus",
    "LoadError",
    "ObserveError",
    "ResilienceError",
    "RunObserver",
    "RunOptions",
    "RunResult",
    "StackError",
    "Verdict",
    "__version__",
    "analyse",
    "load_experiment",
    "run_experiment",
]
