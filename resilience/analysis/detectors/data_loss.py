"""Lost writes: every acknowledged write is read back after the run (Jepsen's set check).

For each request with a ``write`` spec, the acknowledged ids (``ctx.writes``, recorded by
the load engine from 2xx answers) are checked against the target through ``ctx.http_get``:

- with a ``list`` path, one GET returns the ids present (a JSON list of ids or of records
  with the id field, or an object holding one under ``ids``, ``items``, ``data`` or
  ``results``); acknowledged ids missing from it are then read back one by one to confirm;
- otherwise each acknowledged id is read back through ``read_back`` (``{id}`` replaced),
  faulted-window writes first, at most ``max_reads`` (2000) in all.

Outcomes: **lost** (acknowledged, read back 404/410), **duplicated** (the list holds an id
twice, the same id was acknowledged for two writes, or two read-back records carry the
same ``client_ref``), **mismatched** (a read-back record whose id field is not the id
asked for: the only corruption visible, because the load engine records ids, not
payloads), **unverified** (the read failed or answered another status), and, when the
list is there and ids are numbers, **unacknowledged present in range** (listed ids between
the smallest and largest acknowledged id that were never acknowledged: probably writes
that timed out or failed at the client yet committed, Jepsen's "recovered"; this assumes
nothing else wrote to the target during the run). "Unexpected" records (present, never
attempted) cannot be judged: the load engine records acknowledgements, not attempts.

Lost, duplicated or mismatched > 0 is critical and fails the run; only unverified reads
make the result ``inconclusive``. Reads run on ``concurrency`` (4) threads, each read
retried once, the whole check bounded by ``budget_s`` (60) seconds.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from resilience.analysis.detectors._common import BaseDetector
from resilience.analysis.detectors.base import Finding
from resilience.vocabulary import Severity

if TYPE_CHECKING:
    from resilience.analysis.context import AnalysisContext, HttpGet
    from resilience.experiment.model import WriteSpec
    from resilience.load.samples import WriteAck

logger = logging.getLogger(__name__)

MAX_LISTED_IDS = 50
_LIST_KEYS = ("ids", "items", "data", "results")


@dataclass(frozen=True)
class Read:
    """One read-back: the status (None when the request failed) and the body."""

    status: int | None
    body: Any
    error: str = ""

    @property
    def present(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def absent(self) -> bool:
        return self.status in (404, 410)


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


def parse_listing(body: Any, id_field: str) -> list[Any] | None:
    """The ids a list endpoint answered, or ``None`` when the shape is not understood."""
    items = body
    if isinstance(body, dict):
        items = next((body[k] for k in _LIST_KEYS if isinstance(body.get(k), list)), None)
    if not isinstance(items, list):
        return None
    ids: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            if id_field not in item:
                return None
            ids.append(item[id_field])
        elif isinstance(item, str | int) and not isinstance(item, bool):
            ids.append(item)
        else:
            return None
    return ids


class DataLossDetector(BaseDetector):
    kind: ClassVar[str] = "data_loss"
    needs: ClassVar[frozenset[str]] = frozenset({"http"})
    default_severity: ClassVar[Severity] = "critical"
    default_fails_run: ClassVar[bool] = True

    def applies(self, ctx: AnalysisContext) -> bool:
        return bool(ctx.writes)

    def specs(self, ctx: AnalysisContext) -> dict[str, WriteSpec]:
        return {r.endpoint: r.write for r in ctx.experiment.load.workload.requests or [] if r.write}

    def detect(self, ctx: AnalysisContext) -> list[Finding]:
        if ctx.http_get is None or not ctx.writes:
            return []
        specs = self.specs(ctx)
        by_endpoint: dict[str, list[WriteAck]] = {}
        for ack in ctx.writes:
            by_endpoint.setdefault(ack.endpoint, []).append(ack)
        deadline = time.monotonic() + self.param(ctx, "budget_s", 60.0)
        budget = self.int_param(ctx, "max_reads", 2000)
        checks: list[SetCheck] = []
        for endpoint, acks in sorted(by_endpoint.items()):
            spec = specs.get(endpoint)
            if spec is None:
                check = SetCheck(endpoint, acknowledged=len(acks))
                check.notes.append("no write spec for this endpoint: not read back")
                checks.append(check)
                continue
            check = self._check(
                ctx, ctx.http_get, endpoint, spec, acks, budget=budget, deadline=deadline
            )
            budget -= check.checked
            checks.append(check)
        return self._findings(ctx, checks)

    # -- the check ----------------------------------------------------------------------

    def _check(
        self,
        ctx: AnalysisContext,
        http_get: HttpGet,
        endpoint: str,
        spec: WriteSpec,
        acks: Sequence[WriteAck],
        *,
        budget: int,
        deadline: float,
    ) -> SetCheck:
        check = SetCheck(endpoint, acknowledged=len(acks))
        counts = Counter(_key(a.id) for a in acks)
        check.duplicated.extend(k for k, n in counts.items() if n > 1)
        first_ack: dict[str, WriteAck] = {}
        for ack in acks:
            first_ack.setdefault(_key(ack.id), ack)
        listed: set[str] | None = None
        if spec.list is not None:
            listed = self._listing(ctx, http_get, spec, check, deadline)
        if listed is not None:
            to_read = [k for k in first_ack if k not in listed]
            check.unacknowledged_in_range = _unacknowledged_in_range(listed, first_ack)
        else:
            # Faulted-window writes first: the likeliest to be lost if the budget runs out.
            fault = ctx.phase("fault")
            order = sorted(
                first_ack.values(),
                key=lambda a: (not (fault is not None and a.t >= fault.start), a.t),
            )
            to_read = [_key(a.id) for a in order]
        if len(to_read) > budget:
            check.notes.append(
                f"read back {max(budget, 0)} of {len(to_read)} writes (max_reads reached)"
            )
            to_read = to_read[: max(budget, 0)]
        reads = self._read_all(ctx, http_get, [(k, _path(spec, k)) for k in to_read], deadline)
        check.checked = len(to_read) if listed is None else len(first_ack)
        refs: dict[str, str] = {}
        for key in to_read:
            read = reads.get(key)
            if read is None:
                check.unverified[key] = "not read within the time budget"
            elif read.absent:
                check.lost.append(first_ack[key].id)
                check.lost_seconds.add(int(first_ack[key].t))
            elif not read.present:
                check.unverified[key] = read.error or f"HTTP {read.status}"
            elif isinstance(read.body, dict):
                if spec.id_field in read.body and _key(read.body[spec.id_field]) != key:
                    check.mismatched.append(first_ack[key].id)
                ref = read.body.get("client_ref")
                if isinstance(ref, str) and ref:
                    if ref in refs and refs[ref] != key:
                        check.duplicated.append(key)
                    refs.setdefault(ref, key)
        return check

    def _listing(
        self,
        ctx: AnalysisContext,
        http_get: HttpGet,
        spec: WriteSpec,
        check: SetCheck,
        deadline: float,
    ) -> set[str] | None:
        assert spec.list is not None
        read = self._read_all(ctx, http_get, [(spec.list, spec.list)], deadline).get(spec.list)
        if read is None or not read.present:
            why = (
                "not read within the time budget"
                if read is None
                else read.error or f"HTTP {read.status}"
            )
            check.notes.append(f"list {spec.list} failed ({why}): read back one by one")
            return None
        ids = parse_listing(read.body, spec.id_field)
        if ids is None:
            check.notes.append(f"list {spec.list} answered a shape not understood: read back")
            return None
        counts = Counter(_key(i) for i in ids)
        check.duplicated.extend(k for k, n in counts.items() if n > 1)
        check.listed = len(counts)
        return set(counts)

    def _read_all(
        self,
        ctx: AnalysisContext,
        http_get: HttpGet,
        paths: Sequence[tuple[str, str]],
        deadline: float,
    ) -> dict[str, Read]:
        """Read ``(key, path)`` pairs on a small pool until done or ``deadline``."""
        if not paths:
            return {}
        workers = max(1, self.int_param(ctx, "concurrency", 4))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="data-loss")
        results: dict[str, Read] = {}
        try:
            pending: dict[Future[Read], str] = {}
            queue = iter(paths)
            # Keep at most twice as many reads as workers queued so a stop leaves little to cancel.
            for key, path in _take(queue, 2 * workers):
                pending[pool.submit(_read_twice, http_get, path)] = key
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, _ = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
                for key, path in _take(queue, len(done)):
                    pending[pool.submit(_read_twice, http_get, path)] = key
        finally:
            # Do not wait for a read stuck past the budget: its thread ends with its timeout.
            pool.shutdown(wait=False, cancel_futures=True)
        return results

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
        return []


def _unacknowledged_in_range(listed: Iterable[str], acked: Iterable[str]) -> int | None:
    """Listed ids between the smallest and largest acknowledged one, never acknowledged
    (numeric ids only; ``None`` when the acknowledged ids are not all numbers)."""
    acked_keys = set(acked)
    numbers = [_as_int(k) for k in acked_keys]
    known = [n for n in numbers if n is not None]
    if not known or len(known) != len(numbers):
        return None
    low, high = min(known), max(known)
    return sum(
        1
        for key in listed
        if key not in acked_keys and (n := _as_int(key)) is not None and low <= n <= high
    )


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _take(iterator: Iterator[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    return list(islice(iterator, max(n, 0)))


def _path(spec: WriteSpec, key: str) -> str:
    return spec.read_back.replace("{id}", quote(key, safe=""))


def _read(http_get: HttpGet, path: str) -> Read:
    """One GET; any failure of the caller's reader means "not verified".

    ``http_get`` is the caller's and carries its own timeout; the detector's budget only
    stops waiting for it.
    """
    try:
        status, body = http_get(path)
    except Exception as exc:
        return Read(None, None, f"{type(exc).__name__}: {exc}")
    return Read(status, body)


def _read_twice(http_get: HttpGet, path: str) -> Read:
    """One retry for a read that neither found nor missed the record (a transient error)."""
    read = _read(http_get, path)
    if read.present or read.absent:
        return read
    return _read(http_get, path)
