"""The stack: the processes an experiment needs, supervised natively or described for compose.

Public face: ``Stack`` (up, down, status, plan_up, is_up, shop_mode), its results, the
configuration (``StackConfig``), the installer, ``doctor`` and the compose exporter.
Everything else in this package is free to move.
"""

from __future__ import annotations

from resilience.stack.config import Ports, StackConfig, StackPaths
from resilience.stack.supervisor import (
    ComponentStatus,
    DownResult,
    FaultSweeper,
    PlannedComponent,
    Stack,
    UpResult,
    parse_shop_options,
    resolve_components,
)

__all__ = [
    "ComponentStatus",
    "DownResult",
    "FaultSweeper",
    "PlannedComponent",
    "Ports",
    "Stack",
    "StackConfig",
    "StackPaths",
    "UpResult",
    "parse_shop_options",
    "resolve_components",
]
