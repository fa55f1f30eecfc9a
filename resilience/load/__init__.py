"""The load engine: Locust in child processes, per-second latency data in the run directory.

This package's public face never imports Locust or gevent (they patch the process they are
imported into); only ``resilience.load.worker`` and ``resilience.load.runtime`` do, and
they run in the worker processes the engine starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilience.load.engine import LoadEngine
    from resilience.load.plan import (
        ArrivalStage,
        LoadPlan,
        RequestPlan,
        Stage,
        WritePlan,
        plan_from_experiment,
    )
    from resilience.load.recorder import LiveStats, LoadRecorder
    from resilience.load.samples import (
        EndpointSecond,
        LiveTick,
        LoadEvent,
        SecondSample,
        WorkerExit,
        WorkerReady,
    )

# Loaded on first use: a worker process imports its own modules of this package and must
# not pay for the parent's (engine, recorder) before it is ready.
_LAZY = {
    "LoadEngine": "resilience.load.engine",
    "ArrivalStage": "resilience.load.plan",
    "LoadPlan": "resilience.load.plan",
    "RequestPlan": "resilience.load.plan",
    "Stage": "resilience.load.plan",
    "WritePlan": "resilience.load.plan",
    "plan_from_experiment": "resilience.load.plan",
    "LiveStats": "resilience.load.recorder",
    "LoadRecorder": "resilience.load.recorder",
    "EndpointSecond": "resilience.load.samples",
    "LiveTick": "resilience.load.samples",
    "LoadEvent": "resilience.load.samples",
    "SecondSample": "resilience.load.samples",
    "WorkerExit": "resilience.load.samples",
    "WorkerReady": "resilience.load.samples",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilience.load' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ArrivalStage",
    "EndpointSecond",
    "LiveStats",
    "LiveTick",
    "LoadEngine",
    "LoadEvent",
    "LoadPlan",
    "LoadRecorder",
    "RequestPlan",
    "SecondSample",
    "Stage",
    "WorkerExit",
    "WorkerReady",
    "WritePlan",
    "plan_from_experiment",
]
