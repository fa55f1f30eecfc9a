"""Experiment files: the typed model, the loader (profiles, overrides, precise errors), the catalogue.

Other rooms (the load engine, the fault timeline, the orchestrator, the analysis) consume
``Experiment`` objects from here and never read experiment YAML themselves.
"""

from __future__ import annotations

from resilience.experiment.catalogue import (
    CatalogueEntry,
    catalogue_entries,
    catalogue_names,
    find_catalogue_dir,
)
from resilience.experiment.expectation import Expectation
from resilience.experiment.fault_types import FAULT_TYPES, AttributeSpec, FaultTypeSpec
from resilience.experiment.loader import (
    load_all_profiles,
    load_experiment,
    load_experiment_bytes,
    parse_experiment,
)
from resilience.experiment.model import (
    DETECTOR_KINDS,
    ArrivalStage,
    Check,
    DetectorSettings,
    Experiment,
    Fault,
    Guard,
    Load,
    PhaseSlo,
    ProxyDef,
    RecoverySettings,
    RecoverySlo,
    RequestSpec,
    ShopSettings,
    Slo,
    Stage,
    Target,
    Thresholds,
    Wait,
    Workload,
    WriteSpec,
    experiment_schema,
)
from resilience.experiment.placeholders import MissingVariable, Template, render_json
from resilience.experiment.presets import PRESET_STAGES
from resilience.experiment.units import (
    format_duration,
    format_percent,
    parse_duration,
    parse_percent,
)

__all__ = [
    "DETECTOR_KINDS",
    "FAULT_TYPES",
    "PRESET_STAGES",
    "ArrivalStage",
    "AttributeSpec",
    "CatalogueEntry",
    "Check",
    "DetectorSettings",
    "Expectation",
    "Experiment",
    "Fault",
    "FaultTypeSpec",
    "Guard",
    "Load",
    "MissingVariable",
    "PhaseSlo",
    "ProxyDef",
    "RecoverySettings",
    "RecoverySlo",
    "RequestSpec",
    "ShopSettings",
    "Slo",
    "Stage",
    "Target",
    "Template",
    "Thresholds",
    "Wait",
    "Workload",
    "WriteSpec",
    "catalogue_entries",
    "catalogue_names",
    "experiment_schema",
    "find_catalogue_dir",
    "format_duration",
    "format_percent",
    "load_all_profiles",
    "load_experiment",
    "load_experiment_bytes",
    "parse_duration",
    "parse_experiment",
    "parse_percent",
    "render_json",
]
