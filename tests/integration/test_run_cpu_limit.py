"""A shop service held to a CPU limit: the run names that service's CPU, no other, and no
cascade (issue 14: "the resource behind it").

The catalog's process tree is put in a cgroup of its own with a CPU quota of
``QUOTA_CORES`` (cgroup v1 ``cpu.cfs_quota_us``, or v2 ``cpu.max``): a limit on that service
alone, not a host-wide hog, so the rig's host-overload rule has nothing to see (the host
keeps idle CPU; a neighbour burning both cores would rightly make the run inconclusive).
A tenth of a core: the gateway spends about four times the catalog's CPU on a request (at
a 0.2 quota it reached 0.83 of its core), so it stays well below its own core here.
Then a short run (30 s, closed model, no think time) against the hardened shop, with a
latency fault on the orders' database in the middle: the catalog endpoints are slow from
the first second (the quota), not because of the fault.

Needs root and a writable cgroup CPU controller; skipped otherwise, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from resilience.runner import procfs
from tests.integration._runs import RESILIENCE, cli_env, read_journal
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

QUOTA_CORES = 0.1
PERIOD_US = 100_000
SERVICE = "catalog"
RUN_TIMEOUT_S = 120
"""The run's load lasts 30 s; start-up, gathering and the reports come on top."""

EXPERIMENT = """\
name: catalog-cpu-limit
description: The catalog held to a CPU quota; the orders' database slowed in the middle.
load:
  stages: [{duration: 30s, users: 8, spawn_rate: 8}]
  client_timeout: 5s
  workers: 1
  trace_sample: 10%
  workload:
    wait: {min: 0ms, max: 20ms}
    requests:
      - {name: GET /catalog/items, path: /catalog/items, weight: 4}
      - {name: "GET /catalog/items/{item_id}", path: "/catalog/items/{int:1:50}", weight: 3}
      - name: POST /orders
        method: POST
        path: /orders
        weight: 2
        json: {item_id: "{int:1:50}", quantity: 1, client_ref: "{uuid}"}
        expect: [201]
        capture: {order_id: id}
      - {name: "GET /orders/{order_id}", path: "/orders/{order_id}", weight: 1}
faults:
  - {at: 12s, duration: 8s, proxy: postgres, type: latency, attributes: {latency: 200ms}}
slo:
  baseline: {p95: 5s, error_rate: 50%}
recovery: {stable_seconds: 3}
"""


@contextmanager
def cpu_quota(pids: list[int], cores: float, name: str) -> Iterator[Path]:
    """``pids`` in a new CPU cgroup limited to ``cores``; on exit (every exit) moved back
    to the cgroup they came from and the cgroup removed. Skips the test when this machine
    has no writable CPU controller (not root, no cgroup v1 ``cpu`` mount nor v2 ``cpu``)."""
    if os.geteuid() != 0:
        pytest.skip("a CPU quota needs root (cgroup files)")
    mounts = procfs.Mounts.read()
    v1 = mounts.v1.get("cpu")
    quota = int(cores * PERIOD_US)
    if v1 is not None:
        group, back = v1 / name, v1
    elif mounts.v2 is not None and "cpu" in _words(mounts.v2 / "cgroup.subtree_control"):
        group, back = mounts.v2 / name, mounts.v2
    else:
        pytest.skip("no writable cgroup CPU controller (v1 cpu mount or v2 cpu in subtree_control)")
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a CPU cgroup at {group}: {exc}")
    try:
        if v1 is not None:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        for pid in pids:
            (group / "cgroup.procs").write_text(str(pid))
        yield group
    finally:
        for pid in _words(group / "cgroup.procs"):
            try:
                (back / "cgroup.procs").write_text(pid)
            except OSError:
                continue  # gone meanwhile
        group.rmdir()


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def test_a_service_held_to_a_cpu_quota_is_named_not_another_and_not_a_cascade(
    hardened_shop: StackHandle, tmp_path: Path
) -> None:
    """The catalog limited to 0.1 of a core: a cpu_saturation finding on the catalog (its CPU
    at its quota, or its cgroup throttling it), none on the gateway, orders or the stack's
    processes, and no cascading_failure although the catalog endpoints are slow while the
    database is faulted; the rig read the quota (cores 0.1) and the throttling."""
    experiment = tmp_path / "catalog-cpu-limit.yaml"
    experiment.write_text(EXPERIMENT)
    out = tmp_path / "run"
    catalog = hardened_shop.stack.records()[SERVICE].pid
    with cpu_quota(procfs.tree(catalog), QUOTA_CORES, f"resilience-test-{os.getpid()}"):
        done = subprocess.run(
            [RESILIENCE, "run", str(experiment), "--shop-mode", "hardened", "--out", str(out)],
            env=cli_env(hardened_shop), capture_output=True, text=True,
            timeout=RUN_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert hardened_shop.stack.records()[SERVICE].pid == catalog, "the shop was restarted"
    journal = read_journal(out)
    assert journal is not None, done.stdout + done.stderr
    assert done.returncode in (0, 1), (done.returncode, journal.get("reason"), done.stderr[-2000:])
    found = [f for f in journal["findings"] if f["status"] == "found"]
    saturated = [f for f in found if f["kind"] == "cpu_saturation"]
    owners = {f["evidence"].get("process") for f in saturated}
    assert owners == {SERVICE}, [f["summary"] for f in saturated]
    assert not [f for f in found if f["kind"] == "cascading_failure"], [
        f["summary"] for f in found if f["kind"] == "cascading_failure"
    ]
    catalog_seen = [
        line["procs"][SERVICE]
        for line in map(json.loads, (out / "rig.jsonl").read_text().splitlines())
        if SERVICE in line.get("procs", {})
    ]
    assert catalog_seen and all(p.get("cores") == QUOTA_CORES for p in catalog_seen)
    assert max(p.get("throttled") or 0.0 for p in catalog_seen) >= 0.5
