"""data_loss: the read-back of acknowledged writes (runner.evidence.read_back, through a fake
HTTP reader) and Jepsen's set check the detector makes of what it recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resilience.analysis.context import AnalysisContext
from resilience.analysis.detectors.base import Finding
from resilience.analysis.detectors.data_loss import DataLossDetector
from resilience.rundir.readback import ReadBack
from resilience.rundir.records import WriteAck
from resilience.runner.evidence import HttpGet, parse_listing, read_back
from resilience.testing.analysis import (
    LoadBuilder,
    fault_phases,
    make_context,
    shop_experiment,
    write_ack,
)

POST = "POST /orders"


@dataclass
class FakeOrders:
    """The shop's order reads: ``/orders/{id}`` and ``/orders/ids``."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    listing: list[int] | None = None
    list_status: int = 200
    fail: bool = False
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: str) -> tuple[int, Any]:
        with self.lock:
            self.calls.append(path)
        if self.fail:
            raise ConnectionError("connection refused")
        if path == "/orders/ids":
            ids = sorted(self.records) if self.listing is None else self.listing
            return self.list_status, {"ids": ids, "count": len(ids)}
        order_id = int(path.rsplit("/", 1)[1])
        record = self.records.get(order_id)
        if record is None:
            return 404, {"error": "NotFound"}
        return 200, record


def store(ids: range, **overrides: dict[str, Any]) -> FakeOrders:
    records = {i: {"id": i, "item_id": 1, "quantity": 1, "client_ref": f"ref-{i}"} for i in ids}
    for key, record in overrides.items():
        records[int(key)] = record
    return FakeOrders(records)


def acks(ids: range) -> list[WriteAck]:
    return [write_ack(i, POST, t=float(i % 38)) for i in ids]


def context(
    tmp_path: Path,
    writes: list[WriteAck],
    orders: FakeOrders | None,
    extra: str = "",
    reader: HttpGet | None = None,
) -> AnalysisContext:
    """Read the writes back through ``orders`` (or ``reader``), saved and loaded as a run
    directory's readback.json, then the detector's context."""
    experiment = shop_experiment(extra)
    phases = fault_phases(end=38, fault=(10, 22))
    get = reader or (orders.get if orders else None)
    readback = None
    if get is not None:
        read_back(experiment, writes, phases, get).save(tmp_path)
        readback = ReadBack.load(tmp_path)
    return make_context(
        experiment,
        LoadBuilder().add(POST, range(38)).view,
        phases,
        run_dir=tmp_path,
        writes=writes,
        readback=readback,
    )


def held(findings: list[Finding]) -> Finding:
    """The one finding of a read-back that found nothing wrong: its counts, not failing."""
    [finding] = findings
    assert finding.status == "held" and finding.severity == "info" and not finding.fails_run
    assert finding.summary.startswith("No lost writes")
    return finding


def test_every_write_present_is_no_finding(tmp_path: Path) -> None:
    """All acknowledged ids are in the list: one list call, and the counts reported."""
    orders = store(range(1, 51))
    finding = held(DataLossDetector().detect(context(tmp_path, acks(range(1, 51)), orders)))
    assert finding.evidence["numbers"]["acknowledged"] == 50
    assert finding.evidence["numbers"]["lost"] == 0
    assert orders.calls == ["/orders/ids"]


def test_lost_writes_are_critical_and_fail_the_run(tmp_path: Path) -> None:
    """Acknowledged ids missing from the list and answering 404 are lost."""
    orders = store(range(1, 51))
    for lost in (12, 13, 40):
        del orders.records[lost]
    [finding] = DataLossDetector().detect(context(tmp_path, acks(range(1, 51)), orders))
    assert finding.severity == "critical" and finding.fails_run
    assert finding.evidence["lost_ids"] == [12, 13, 40]
    assert finding.evidence["numbers"]["lost"] == 3
    assert finding.evidence["numbers"]["checked"] == 50
    assert finding.evidence["endpoints"] == [POST]
    assert finding.evidence["seconds"] == [2, 12, 13]
    assert "/orders/12" in orders.calls


def test_a_stale_list_is_confirmed_by_reading_back(tmp_path: Path) -> None:
    """An id missing from the list but readable is not lost."""
    orders = store(range(1, 11))
    orders.listing = list(range(1, 10))
    held(DataLossDetector().detect(context(tmp_path, acks(range(1, 11)), orders)))
    assert orders.calls == ["/orders/ids", "/orders/10"]


def test_without_a_list_every_write_is_read_back(tmp_path: Path) -> None:
    """A failing list falls back to reading each id; a 404 is lost."""
    orders = store(range(1, 21))
    orders.list_status = 503
    del orders.records[7]
    [finding] = DataLossDetector().detect(context(tmp_path, acks(range(1, 21)), orders))
    assert finding.evidence["lost_ids"] == [7]
    assert len(orders.calls) == 2 + 20  # the list (retried once), then each id
    notes = finding.evidence["per_endpoint"][POST]["notes"]
    assert any("HTTP 503" in note for note in notes)


def test_duplicates_in_the_list_and_by_client_ref(tmp_path: Path) -> None:
    """An id listed twice and two records sharing a client_ref are duplicated."""
    orders = store(range(1, 6), **{"5": {"id": 5, "client_ref": "ref-4"}})
    orders.listing = [1, 2, 2, 3]
    [finding] = DataLossDetector().detect(context(tmp_path, acks(range(1, 6)), orders))
    assert finding.evidence["duplicated_ids"] == ["2", "5"]
    assert finding.evidence["numbers"]["lost"] == 0
    assert finding.fails_run


def test_a_record_answering_for_another_id_is_mismatched(tmp_path: Path) -> None:
    """Reading /orders/3 returns order 99: mismatched (the corruption we can see)."""
    orders = store(range(1, 4), **{"3": {"id": 99, "client_ref": "x"}})
    orders.listing = [1, 2]
    [finding] = DataLossDetector().detect(context(tmp_path, acks(range(1, 4)), orders))
    assert finding.evidence["mismatched_ids"] == [3]


def test_unreadable_target_is_inconclusive(tmp_path: Path) -> None:
    """Every read failing: nothing can be judged, one inconclusive finding."""
    orders = store(range(1, 4))
    orders.fail = True
    [finding] = DataLossDetector().detect(context(tmp_path, acks(range(1, 4)), orders))
    assert finding.status == "inconclusive"
    assert not finding.fails_run
    assert finding.evidence["numbers"]["unverified"] == 3
    assert len(orders.calls) == 2 + 3 * 2  # every read is retried once


def test_unacknowledged_writes_present_in_range_are_counted(tmp_path: Path) -> None:
    """Listed ids between acknowledged ones that were never acknowledged (recovered)."""
    orders = store(range(1, 11))
    del orders.records[4]
    writes = [a for a in acks(range(1, 11)) if a.id not in (5, 6)]
    [finding] = DataLossDetector().detect(context(tmp_path, writes, orders))
    assert finding.evidence["numbers"]["unacknowledged present in range"] == 2


def test_no_writes_does_not_apply_and_no_reader_is_not_judged(tmp_path: Path) -> None:
    """Without acknowledged writes the detector does not apply; without a read-back it is silent."""
    detector = DataLossDetector()
    assert not detector.applies(context(tmp_path, [], store(range(1, 3))))
    assert detector.detect(context(tmp_path, acks(range(1, 3)), None)) == []


def test_reads_are_bounded_by_max_reads(tmp_path: Path) -> None:
    """With max_reads 5 and no list, only five ids are read, fault-window writes first."""
    orders = store(range(1, 31))
    orders.list_status = 500
    extra = "detectors: {data_loss: {params: {max_reads: 5}}}\n"
    held(DataLossDetector().detect(context(tmp_path, acks(range(1, 31)), orders, extra)))
    reads = [c for c in orders.calls if c != "/orders/ids"]
    assert sorted(reads) == sorted(f"/orders/{i}" for i in (10, 11, 12, 13, 14))


def test_a_hanging_reader_is_cut_by_the_budget(tmp_path: Path) -> None:
    """Reads that hang are abandoned at budget_s; the result says they were not read."""
    release = threading.Event()

    def hang(path: str) -> tuple[int, Any]:
        release.wait(10)  # bounded: the test releases it at the end
        return 200, {"ids": []}

    extra = "detectors: {data_loss: {params: {budget_s: 0.5}}}\n"
    started = time.monotonic()
    try:
        ctx = context(tmp_path, acks(range(1, 4)), None, extra, reader=hang)
    finally:
        release.set()
    findings = DataLossDetector().detect(ctx)
    assert time.monotonic() - started < 5
    [finding] = findings
    assert finding.status == "inconclusive"
    assert finding.evidence["numbers"]["unverified"] == 3


def test_parse_listing_shapes() -> None:
    """Lists of ids, lists of records and wrapped lists are understood; others are not."""
    assert parse_listing([1, 2], "id") == [1, 2]
    assert parse_listing({"ids": [3]}, "id") == [3]
    assert parse_listing({"items": [{"id": "a"}, {"id": "b"}]}, "id") == ["a", "b"]
    assert parse_listing({"count": 2}, "id") is None
    assert parse_listing([{"name": "x"}], "id") is None
