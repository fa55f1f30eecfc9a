"""Experiment files: the typed model, the loader (profiles, overrides, precise errors), the catalogue.

Other rooms (the load engine, the fault timeline, the orchestrator, the analysis) consume
``Experiment`` objects from here and never read experiment YAML themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Loaded on first use: the load worker imports one small module of this package
# (placeholders) and must not pay for the pydantic model and the loader (~0.2 s).
_LAZY = {
    "CatalogueEntry": "resilience.experiment.catalogue",
    "catalogue_entries": "resilience.experiment.catalogue",
    "catalogue_names": "resilience.experiment.catalogue",
    "find_catalogue_dir": "resilience.experiment.catalogue",
    "Expectation": "resilience.experiment.expectation",
    "FAULT_TYPES": "resilience.experiment.fault_types",
    "AttributeSpec": "resilience.experiment.fault_types",
    "FaultTypeSpec": "resilience.experiment.fault_types",
    "load_all_profiles": "resilience.experiment.loader",
    "load_experiment": "resilience.experiment.loader",
    "load_experiment_bytes": "resilience.experiment.loader",
    "parse_experiment": "resilience.experiment.loader",
    "DETECTOR_KINDS": "resilience.experiment.model",
    "ArrivalStage": "resilience.experiment.model",
    "Check": "resilience.experiment.model",
    "DetectorSettings": "resilience.experiment.model",
    "Experiment": "resilience.experiment.model",
    "Fault": "resilience.experiment.model",
    "Guard": "resilience.experiment.model",
    "Load": "resilience.experiment.model",
    "PhaseSlo": "resilience.experiment.model",
    "ProxyDef": "resilience.experiment.model",
    "RecoverySettings": "resilience.experiment.model",
    "RecoverySlo": "resilience.experiment.model",
    "RequestSpec": "resilience.experiment.model",
    "ShopSettings": "resilience.experiment.model",
    "Slo": "resilience.experiment.model",
    "Stage": "resilience.experiment.model",
    "Target": "resilience.experiment.model",
    "Thresholds": "resilience.experiment.model",
    "Wait": "resilience.experiment.model",
    "Workload": "resilience.experiment.model",
    "WriteSpec": "resilience.experiment.model",
    "experiment_schema": "resilience.experiment.model",
    "MissingVariable": "resilience.experiment.placeholders",
    "Template": "resilience.experiment.placeholders",
    "render_json": "resilience.experiment.placeholders",
    "PRESET_STAGES": "resilience.experiment.presets",
    "format_duration": "resilience.experiment.units",
    "format_percent": "resilience.experiment.units",
    "parse_duration": "resilience.experiment.units",
    "parse_percent": "resilience.experiment.units",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resilience.experiment' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


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
