"""Faults: the Toxiproxy client, the fault catalogue, the timeline that applies and heals, the sweeper.

    specs = specs_from_model(experiment.faults)           # or FaultSpec(...) by hand
    with ToxiproxyClient(config.toxiproxy_url) as api:
        sweep(api, paths.fault_ledger, proxies=["postgres"])   # leftovers of a killed run
        timeline = FaultTimeline(specs, api, clock, on_event, ledger=paths.fault_ledger)
        try:
            timeline.run(until=experiment.total_duration)
        finally:
            timeline.heal_all()

See docs/faults.md for the fault types, their attributes, and what Toxiproxy really does.
"""

from __future__ import annotations

from resilience.faults.catalogue import (
    FAULT_TYPES,
    TOXIC_PREFIX,
    AttributeSpec,
    FaultPlan,
    FaultSpec,
    FaultType,
    PlanStep,
    plan_fault,
    specs_from_model,
    validate_attributes,
)
from resilience.faults.ledger import FaultLedger, LedgerEntry, read_ledger
from resilience.faults.sweeper import SweepReport, sweep
from resilience.faults.timeline import FaultEvent, FaultState, FaultTimeline, HealReport
from resilience.faults.toxiproxy import (
    TOXIC_ATTRIBUTES,
    Proxy,
    Toxic,
    ToxiproxyApi,
    ToxiproxyClient,
    ToxiproxyConflict,
    ToxiproxyError,
    ToxiproxyNotFound,
)

__all__ = [
    "FAULT_TYPES",
    "TOXIC_ATTRIBUTES",
    "TOXIC_PREFIX",
    "AttributeSpec",
    "FaultEvent",
    "FaultLedger",
    "FaultPlan",
    "FaultSpec",
    "FaultState",
    "FaultTimeline",
    "FaultType",
    "HealReport",
    "LedgerEntry",
    "PlanStep",
    "Proxy",
    "SweepReport",
    "Toxic",
    "ToxiproxyApi",
    "ToxiproxyClient",
    "ToxiproxyConflict",
    "ToxiproxyError",
    "ToxiproxyNotFound",
    "plan_fault",
    "read_ledger",
    "specs_from_model",
    "sweep",
    "validate_attributes",
]
