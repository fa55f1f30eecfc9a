"""The load engine: Locust in child processes, per-second latency data in the run directory.

This package's public face never imports Locust or gevent (they patch the process they are
imported into); only ``resilience.load.worker`` and ``resilience.load.runtime`` do, and
they run in the worker processes the engine starts.
"""

from __future__ import annotations

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
