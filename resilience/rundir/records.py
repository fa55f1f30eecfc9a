"""Per-request records the run directory keeps: kept trace ids and acknowledged writes.

The load workers emit them as they go (``resilience.load.samples`` carries them over the
worker pipe); the run directory stores one JSON line each (``trace_ids.jsonl``,
``writes.jsonl``); the evidence gathering and the analysis read them back. Times are
seconds on the experiment clock (``t``: when the request was sent), latencies seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

TraceReason = Literal["failed", "slow", "sampled"]


@dataclass(frozen=True)
class TraceRef:
    """A request whose trace id was kept: why (failed, slow, sampled) and what it got."""

    worker: int
    trace_id: str
    span_id: str
    endpoint: str
    t: float
    latency: float
    outcome: str
    status: int
    reason: TraceReason


@dataclass(frozen=True)
class WriteAck:
    """An acknowledged write: the record ``id`` the target said it stored."""

    worker: int
    id: Any
    endpoint: str
    t: float
    status: int
