"""rig.jsonl read back for the analysis as a compact table (rundir/rig.py ``RigTable``): the
same resources, rig facts and host shares as the samples read as models, the same lines
skipped, and a bounded size."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from resilience.analysis.resources import from_rig
from resilience.analysis.rig import rig_report
from resilience.rundir.rig import RigSample, RigTable, RigWriter, read_rig, read_rig_table
from resilience.testing.analysis import fault_phases

PHASES = fault_phases(end=60.0, fault=(20.0, 40.0))
ROLES = {"gateway": "target", "catalog": "target", "orders": "target", "postgres": "stack",
         "toxiproxy": "stack", "load worker 0": "generator", "orchestrator": "rig"}  # fmt: skip


def _line(second: int, rng: random.Random) -> dict[str, Any]:
    """A second as the monitor writes it, with what varies in real files: figures missing,
    processes appearing late or gone, the first second without CPU, sources lost."""
    procs: dict[str, dict[str, Any]] = {}
    names = list(ROLES)
    rng.shuffle(names)  # the order of a line's processes decides the resources' order
    for name in names:
        if (name == "orders" and second < 5) or (name == "toxiproxy" and 30 <= second < 33):
            continue
        proc: dict[str, Any] = {"role": ROLES[name], "processes": rng.randint(1, 3)}
        if second > 0:
            proc["cpu"] = round(rng.uniform(0.0, 1.1), 3)
        proc["cores"] = 0.5 if name == "catalog" else 1.0
        if name == "catalog":
            proc["throttled"] = round(rng.uniform(0.0, 1.0), 3)
        if name == "postgres":
            proc |= {"backends": rng.randint(0, 100), "max_connections": 100}
        if rng.random() < 0.9:
            proc |= {"fds": rng.randint(10, 1100), "fd_limit": 1024 if rng.random() < 0.9 else 0}
        proc |= {"rss": rng.randint(10**7, 10**9)}
        if name == "gateway":
            proc["mem_limit"] = 2 * 10**9
        procs[name] = proc
    down = 25 <= second < 35
    return {
        "t": second + 0.1 + rng.random() / 10,
        "second": second,
        "cores": 2,
        "load1": round(rng.uniform(0, 4), 2),
        "busy": None if second == 0 else round(rng.uniform(0.2, 1.0), 3),
        "steal": round(rng.uniform(0, 0.2), 3),
        "idle": round(rng.uniform(0, 0.3), 3),
        "workers": [round(rng.uniform(0.5, 1.0), 3), None],
        "other_cpu": None if second < 2 else round(rng.uniform(0, 1.5), 3),
        "procs": procs,
        "sources": {"prometheus": "down" if down else "up", "target": "up"},
        "why": {"prometheus": "connection refused"} if down else {},
        "died": ["postgres (pid 1) died"] if second == 50 else [],
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = random.Random(14)
    writer = RigWriter(tmp_path)
    for second in range(60):
        writer.write(RigSample.model_validate(_line(second, rng)))
    writer.close()
    return tmp_path


def test_the_table_gives_what_the_models_gave(run_dir: Path) -> None:
    """Resources (keys, order, roles, values, limits, the host's shares) and the rig's
    report are the same read as a table as read as models."""
    models = read_rig(run_dir)
    table = read_rig_table(run_dir)
    assert models is not None and table is not None and len(table) == 60
    old, new = from_rig(models), from_rig(table)
    assert [r.key for r in new] == [r.key for r in old]
    assert new == old
    host = next(r for r in new if r.kind == "host_cpu")
    assert list(host.parts) == ["the target", "its stack", "the load generator", "other processes"]
    assert (
        rig_report(table, PHASES, None, end=60.0).to_dict()
        == rig_report(models, PHASES, None, end=60.0).to_dict()
    )
    assert rig_report(table, PHASES, None, end=60.0).lost_text("prometheus")


def test_unreadable_lines_are_skipped_as_the_models_skip_them(run_dir: Path) -> None:
    """A torn last line, a role that is none, a figure that is not a number, a second that
    is not whole: each line skipped, by the table as by the models; the rest kept."""
    good = json.loads((run_dir / "rig.jsonl").read_text().splitlines()[0])
    bad_role = {**good, "second": 100, "procs": {"gateway": {"role": "boss"}}}
    bad_cpu = {**good, "second": 101, "procs": {"gateway": {"role": "target", "cpu": "hot"}}}
    bad_second = {**good, "second": 102.5}
    bad_source = {**good, "second": 103, "sources": {"target": "asleep"}}
    fine = {**good, "second": 104, "cores": 2.0}
    with (run_dir / "rig.jsonl").open("a") as handle:
        for data in (bad_role, bad_cpu, bad_second, bad_source, fine):
            handle.write(json.dumps(data) + "\n")
        handle.write('{"t": 3.1, "second"')
    models, table = read_rig(run_dir), read_rig_table(run_dir)
    assert models is not None and table is not None
    assert [s.second for s in table.seconds] == [s.second for s in models]
    assert [s.second for s in table.seconds][-2:] == [59, 104]
    assert from_rig(table) == from_rig(models)
    assert read_rig_table(run_dir / "nowhere") is None


def test_samples_in_memory_make_the_same_table(run_dir: Path) -> None:
    """Models handed to the analysis (a test's) go through the same reader."""
    models = read_rig(run_dir)
    assert models is not None
    assert from_rig(RigTable.from_samples(models)) == from_rig(read_rig_table(run_dir))


def test_a_process_tree_costs_a_few_bytes_a_second(tmp_path: Path) -> None:
    """An hour of a dozen process trees: the table's columns under 6 MB (as models: some
    100 MB)."""
    line = json.dumps(_line(1, random.Random(1)))
    with (tmp_path / "rig.jsonl").open("w") as handle:
        for second in range(3600):
            handle.write(line.replace('"second": 1,', f'"second": {second},') + "\n")
    table = read_rig_table(tmp_path)
    assert table is not None
    size = sum(
        sum(a.nbytes for a in columns.arrays.values()) for columns in table.procs.values()
    ) + sum(sys.getsizeof(s) for s in table.seconds)
    assert size < 6 * 2**20, size
