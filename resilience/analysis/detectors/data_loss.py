"""Lost writes: every acknowledged write read back after the run (Jepsen's set check).

The runner reads back the writes the load engine saw acknowledged (``readback.json``; see
``resilience.runner.evidence``): with a ``list`` path, one GET for the ids present, then the
acknowledged ids missing from it one by one to confirm; otherwise every acknowledged id
through ``read_back`` (``{id}`` replaced), faulted-window writes first, at most ``max_reads``
(2000). This detector judges from that file alone:

Outcomes: **lost** (acknowledged, read back 404/410), **duplicated** (the list holds an id
twice, the same id was acknowledged for two writes, or two read-back records carry the
same ``client_ref``), **mismatched** (a read-back record whose id field is not the id
asked for: the only corruption visible, because the load engine records ids, not
payloads), **unverified** (the read failed, answered another status or ran out of time),
and, when the list is there and ids are numbers, **unacknowledged present in range**
(listed ids between the smallest and largest acknowledged id that were never
acknowledged: probably writes that timed out or failed at the client yet committed,
Jepsen's "recovered"; this assumes nothing else wrote to the target during the run).
"Unexpected" records (present, never attempted) cannot be judged: the load engine
records acknowledgements, not attempts.

Lost, duplicated or mismatched > 0 is critical and fails the run; only unverified reads
make the result ``inconclusive``. When nothing is wrong the finding still reports its
counts (status ``held``, severity ``info``): "608 acknowledged, 0 lost".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from resilience.analysis.detectors._common import BaseDetector
from resilience.analysis.detectors.base import Finding
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext
    from resilience.experiment.model import WriteSpec
    from resilience.rundir.readback import EndpointReadBack
    from resilience.rundir.records import EndpointWrites

logger = logging.getLogger(__name__)

MAX_LISTED_IDS = 50
_LIST_KEYS = ("ids", "items", "data", "results")


@dataclass
class SetCheck:
    """Jepsen's set check over one write endpoint."""

    endpoint: str
    acknowledged: int = 0
    checked: int = 0
    lost: list[Any] = field(default_factory=list)
    duplicated: list[Any] = field(default_factory=list)
    mismatched: list[Any] = field(default_factory=list)
    unverified: dict[str, str] = field(default_factory=dict)
    unacknowledged_in_range: int | None = None
    listed: int | None = None
    notes: list[str] = field(default_factory=list)
    lost_seconds: set[int] = field(default_factory=set)


def _key(record_id: Any) -> str:
    return str(record_id)


class DataLossDetector(BaseDetector):
    kind: ClassVar[str] = "data_loss"
    needs: ClassVar[frozenset[str]] = frozenset({"readback"})
    default_severity: ClassVar[Severity] = "critical"
    default_fails_run: ClassVar[bool] = True

    def applies(self, ctx: AnalysisContext) -> bool:
        return ctx.writes is not None and bool(ctx.writes)

    def specs(self, ctx: AnalysisContext) -> dict[str, WriteSpec]:
        return {r.endpoint: r.write for r in ctx.experiment.load.workload.requests or [] if r.write}

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        readback = ctx.readback
        if readback is None or ctx.writes is None or not ctx.writes:
            return []
        specs = self.specs(ctx)
        checks: list[SetCheck] = []
        for endpoint, acks in sorted(ctx.writes.endpoints.items()):
            if not acks.acknowledged:
                continue
            spec = specs.get(endpoint)
            recorded = readback.endpoints.get(endpoint)
            if spec is None or recorded is None:
                check = SetCheck(endpoint, acknowledged=acks.acknowledged)
                check.notes.append(
                    "no write spec for this endpoint: not read back"
                    if spec is None
                    else "this endpoint's writes were not read back"
                )
                checks.append(check)
                continue
            checks.append(self._check(endpoint, acks, recorded))
        return self._findings(ctx, checks)

    # -- the check ----------------------------------------------------------------------

    @staticmethod
    def _check(endpoint: str, acks: EndpointWrites, recorded: EndpointReadBack) -> SetCheck:
        check = SetCheck(endpoint, acknowledged=acks.acknowledged)
        check.notes.extend(recorded.notes)
        check.duplicated.extend(acks.duplicated)
        first_ack = acks.first
        if recorded.listed_ids is not None:
            duplicated, check.listed, in_range = _listed(recorded.listed_ids, acks)
            check.duplicated.extend(duplicated)
            check.unacknowledged_in_range = in_range
            check.checked = acks.distinct
        else:
            check.checked = len(recorded.planned)
        refs: dict[str, str] = {}
        for key in recorded.planned:
            read = recorded.reads.get(key)
            acked = first_ack.get(key)
            if acked is None:
                continue
            if read is None:
                check.unverified[key] = "not read within the time budget"
            elif read.absent:
                check.lost.append(acked.id)
                check.lost_seconds.add(int(acked.t))
            elif not read.present:
                check.unverified[key] = read.error or f"HTTP {read.status}"
            else:
                if read.record_id is not None and _key(read.record_id) != key:
                    check.mismatched.append(acked.id)
                ref = read.client_ref
                if ref:
                    if ref in refs and refs[ref] != key:
                        check.duplicated.append(key)
                    refs.setdefault(ref, key)
        return check

    # -- findings -----------------------------------------------------------------------

    def _findings(self, ctx: AnalysisContext, checks: list[SetCheck]) -> list[Finding]:
        lost = sum(len(c.lost) for c in checks)
        duplicated = sum(len(c.duplicated) for c in checks)
        mismatched = sum(len(c.mismatched) for c in checks)
        unverified = sum(len(c.unverified) for c in checks)
        acknowledged = sum(c.acknowledged for c in checks)
        numbers: dict[str, Any] = {
            "acknowledged": acknowledged,
            "checked": sum(c.checked for c in checks),
            "lost": lost,
            "duplicated": duplicated,
            "mismatched": mismatched,
            "unverified": unverified,
        }
        in_range = [c.unacknowledged_in_range for c in checks if c.unacknowledged_in_range]
        if in_range:
            numbers["unacknowledged present in range"] = sum(in_range)
        evidence: dict[str, Any] = {
            "endpoints": sorted(
                c.endpoint for c in checks if c.lost or c.duplicated or c.mismatched
            ),
            "seconds": sorted({s for c in checks for s in c.lost_seconds}),
            "trace_ids": [],
            "numbers": numbers,
            "lost_ids": [i for c in checks for i in c.lost][:MAX_LISTED_IDS],
            "duplicated_ids": [i for c in checks for i in c.duplicated][:MAX_LISTED_IDS],
            "mismatched_ids": [i for c in checks for i in c.mismatched][:MAX_LISTED_IDS],
            "per_endpoint": {
                c.endpoint: {
                    "acknowledged": c.acknowledged,
                    "checked": c.checked,
                    "listed": c.listed,
                    "lost": len(c.lost),
                    "duplicated": len(c.duplicated),
                    "mismatched": len(c.mismatched),
                    "unverified": len(c.unverified),
                    "notes": c.notes,
                }
                for c in checks
            },
        }
        if lost or duplicated or mismatched:
            parts = [
                f"{n} {what}"
                for n, what in (
                    (lost, "lost"),
                    (duplicated, "duplicated"),
                    (mismatched, "mismatched"),
                )
                if n
            ]
            summary = (
                f"Data loss: of {acknowledged} acknowledged writes, {', '.join(parts)} "
                "when read back after recovery"
            )
            return [self.finding(ctx, summary, evidence)]
        if unverified:
            evidence["unverified_examples"] = dict(
                list({k: v for c in checks for k, v in c.unverified.items()}.items())[:10]
            )
            return [
                self.finding(
                    ctx,
                    f"Lost writes undetermined: {unverified} of {acknowledged} acknowledged "
                    "writes could not be read back",
                    evidence,
                    status="inconclusive",
                )
            ]
        present = numbers.get("unacknowledged present in range")
        summary = (
            f"No lost writes: of {acknowledged} acknowledged writes, {numbers['checked']} read "
            "back, 0 lost, 0 duplicated, 0 mismatched"
            + (f"; {present} unacknowledged but present" if present else "")
        )
        return [self.finding(ctx, summary, evidence, severity="info", status="held")]


def _listed(
    listed_ids: Sequence[Any] | np.ndarray, acked: EndpointWrites
) -> tuple[list[str], int, int | None]:
    """What the list answered: ids listed twice (in the order first listed), how many
    distinct ids, and how many of them lie in the acknowledged range unacknowledged.
    A list of plain integers (the usual case, a million of them after a long run) is
    judged with numpy; anything else id by id."""
    ints = listed_ids if isinstance(listed_ids, np.ndarray) else None
    if ints is None and all(type(i) is int and i.bit_length() < 63 for i in listed_ids):
        ints = np.asarray(listed_ids, np.int64)
    if ints is not None and len(ints):
        return _listed_integers(ints, acked)
    listed = Counter(_key(i) for i in listed_ids)
    duplicated = [k for k, n in listed.items() if n > 1]
    return duplicated, len(listed), _unacknowledged_in_range(listed, acked)


def _listed_integers(ints: np.ndarray, acked: EndpointWrites) -> tuple[list[str], int, int | None]:
    """``_listed`` for a listing of integers: one sort, a few arrays of its size."""
    ordered = np.sort(ints)
    again = ordered[1:] == ordered[:-1]
    repeated = np.unique(ordered[1:][again])
    keep = np.ones(len(ordered), bool)
    keep[1:] = ~again
    values = ordered[keep]
    del ordered, again, keep
    twice: list[tuple[int, int]] = []
    if len(repeated):
        where = np.flatnonzero(np.isin(ints, repeated))
        seen, first = np.unique(ints[where], return_index=True)
        twice = sorted(zip(where[first].tolist(), seen.tolist(), strict=True))
    bounds = acked.bounds()
    in_range = None
    if bounds is not None:
        low, high = max(bounds[0], 0), bounds[1]
        inside = values[(values >= low) & (values <= high)]
        known = acked.numeric
        at = np.minimum(np.searchsorted(known, inside), max(len(known) - 1, 0))
        found = known[at] == inside if len(known) else np.zeros(len(inside), bool)
        in_range = int((~found).sum())
    return [str(v) for _, v in twice], len(values), in_range


def _unacknowledged_in_range(listed: Iterable[str], acked: EndpointWrites) -> int | None:
    """Listed ids between the smallest and largest acknowledged one, never acknowledged
    (numeric ids only; ``None`` when the acknowledged ids are not all numbers)."""
    bounds = acked.bounds()
    if bounds is None:
        return None
    low, high = bounds
    return sum(
        1
        for key in listed
        if (n := _as_int(key)) is not None and low <= n <= high and not acked.acked(key)
    )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
