"""The per-request files streamed: writes summarised in one pass, trace ids held within a bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.rundir.load import LoadFiles, read_trace_refs, sample_trace_refs, scan_writes
from resilience.rundir.readback import EndpointReadBack, ReadBack
from resilience.rundir.records import EndpointWrites, TraceRef, WriteAck, WriteSummary

ids = st.one_of(
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=-3, max_value=10**20),
    st.sampled_from(["a", "b", "007", "7", "x y", 'q"uote', "é", "0"]),
)
acks = st.lists(st.tuples(st.sampled_from(["POST /a", "POST /b"]), ids), max_size=80)


def _write(run_dir: Path, items: list[tuple[str, Any]], *, odd_line: bool) -> list[WriteAck]:
    files = LoadFiles(run_dir, t0=0.0)
    written = [
        WriteAck(0, record_id, name, i / 10, 201) for i, (name, record_id) in enumerate(items)
    ]
    for ack in written:
        files.write_ack(ack)
    files.close()
    if odd_line:  # a line in another form (keys reordered) sends its chunk the slow way
        with (run_dir / "writes.jsonl").open("a", encoding="utf-8") as handle:
            body = {"endpoint": "POST /a", "id": 5, "worker": 0, "t": 9.0, "status": 201}
            handle.write(json.dumps(body) + "\n")
        written.append(WriteAck(0, 5, "POST /a", 9.0, 201))
    return written


def _same(got: EndpointWrites, want: EndpointWrites, wanted: set[str]) -> None:
    assert got.acknowledged == want.acknowledged
    assert got.distinct == want.distinct
    assert got.duplicated == want.duplicated
    assert list(got.numeric) == list(want.numeric)
    assert got.all_digits == want.all_digits
    assert got.other == want.other
    assert got.bounds() == want.bounds()
    assert got.first == {k: v for k, v in want.first.items() if k in wanted}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=acks, odd_line=st.booleans(), data=st.data())
def test_scan_equals_the_whole_list(
    tmp_path: Path, items: list[tuple[str, Any]], odd_line: bool, data: st.DataObject
) -> None:
    """scan_writes gives exactly what the acknowledgements held in memory give: counts,
    duplicates in first-seen order, distinct ids, bounds, first acks of the ids asked for."""
    run_dir = tmp_path / f"run{abs(hash((tuple(map(str, items)), odd_line)))}"
    written = _write(run_dir, items, odd_line=odd_line)
    whole = WriteSummary.from_acks(WriteAck(**json.loads(json.dumps(a.__dict__))) for a in written)
    keys = sorted({str(a.id) for a in written})
    wanted = set(data.draw(st.lists(st.sampled_from(keys), max_size=5))) if keys else set()
    scanned = scan_writes(run_dir, dict.fromkeys(("POST /a", "POST /b"), wanted))
    assert sorted(scanned.endpoints) == sorted(whole.endpoints)
    for name, want in whole.endpoints.items():
        _same(scanned.endpoints[name], want, wanted)


def test_trace_refs_past_the_bound_keep_saved_ones_and_each_groups_first(tmp_path: Path) -> None:
    """Within the bound every kept trace id is held; past it, the saved ones and the first
    of each (endpoint, outcome, reason), and the sample says how many it read."""
    files = LoadFiles(tmp_path, t0=0.0)
    for i in range(300):
        outcome, reason = ("timeout", "failed") if i % 3 else ("ok", "sampled")
        trace_id = f"{i:032x}"
        files.write_trace(
            TraceRef(0, trace_id, "ab" * 8, "GET /x", i / 10, 0.1, outcome, 0, reason)
        )
    files.close()
    whole = sample_trace_refs(tmp_path, limit=1000)
    assert whole.held == whole.read == 300 and not whole.sampled
    assert whole.refs == read_trace_refs(tmp_path)  # the fast reading is the JSON one
    saved = {f"{i:032x}" for i in (250, 299)}
    part = sample_trace_refs(tmp_path, saved, limit=50, per_group=10)
    assert part.read == 300 and part.sampled
    kept = [int(r.trace_id, 16) for r in part.refs]
    assert kept == sorted(kept)  # file order
    assert {250, 299} <= set(kept)
    assert len([k for k in kept if k % 3]) == 10 + (1 if 250 % 3 else 0) + (1 if 299 % 3 else 0)


def test_a_listing_of_integers_is_read_into_an_array(tmp_path: Path) -> None:
    """readback.json's listing of plain integers comes back as an int64 array (a million
    ids are 8 MB, not a million Python ints); any other listing as the list it was."""
    ints = EndpointReadBack("POST /a", listed_ids=[3, 1, -2, 3, 10**17])
    mixed = EndpointReadBack("POST /b", listed_ids=[1, "x", 2.5, None])
    empty = EndpointReadBack("POST /c", listed_ids=[])
    ReadBack({"POST /a": ints, "POST /b": mixed, "POST /c": empty}).save(tmp_path)
    loaded = ReadBack.load(tmp_path)
    assert loaded is not None
    got = loaded.endpoints["POST /a"].listed_ids
    assert isinstance(got, np.ndarray) and got.tolist() == [3, 1, -2, 3, 10**17]
    assert loaded.endpoints["POST /b"].listed_ids == [1, "x", 2.5, None]
    assert loaded.endpoints["POST /c"].listed_ids == []
