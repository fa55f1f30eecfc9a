"""Per-process sampling of the rig (runner/procfs.py, runner/rig.py ProcessSampler): process
trees, CPU, connections, cgroup quotas and throttling, PostgreSQL's backends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from resilience.rundir.rig import RigSample, RigWriter, read_rig
from resilience.runner import procfs
from resilience.runner.rig import ProcessSampler, Watched


def _stat_line(pid: int, ppid: int, ticks: int, start: int, name: str = "python3") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itreal starttime vsize rss ...
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(ticks), "0", "0", "0", "20", "0", "3", "0"]
    fields += [str(start), "1000", "250"] + ["0"] * 20
    return f"{pid} ({name}) " + " ".join(fields) + "\n"


def _fake_proc(root: Path) -> Path:
    """A /proc with a postmaster (100), two client backends and a checkpointer under it."""
    proc = root / "proc"
    titles = {
        100: "/usr/lib/postgresql/16/bin/postgres -D /tmp/pgdata",
        101: "postgres: checkpointer ",
        102: "postgres: resilience shop 127.0.0.1(51234) idle",
        103: "postgres: resilience shop 127.0.0.1(51236) INSERT",
    }
    for pid, title in titles.items():
        base = proc / str(pid)
        (base / "task" / str(pid)).mkdir(parents=True)
        (base / "fd").mkdir()
        kids = " ".join(str(c) for c in (101, 102, 103)) if pid == 100 else ""
        (base / "task" / str(pid) / "children").write_text(kids)
        (base / "stat").write_text(_stat_line(pid, 1 if pid == 100 else 100, 50, 7000 + pid))
        (base / "cmdline").write_bytes(title.replace(" ", "\0").encode())
        (base / "cgroup").write_text("1:cpu:/shop\n0::/\n")
    (proc / "net").mkdir()
    (proc / "net" / "tcp").write_text("  sl  local rem st ...\n")
    return proc


def test_postgres_client_backends_are_counted_not_its_helpers(tmp_path: Path) -> None:
    """Two client backends and a checkpointer under the postmaster: two connections."""
    proc = _fake_proc(tmp_path)
    pids = procfs.tree(100, proc)
    assert sorted(pids) == [100, 101, 102, 103]
    assert procfs.postgres_backends(pids[1:], proc) == 2


def test_max_connections_is_read_from_the_cluster_files(tmp_path: Path) -> None:
    """postgresql.auto.conf overrides postgresql.conf; comments and quotes are ignored."""
    (tmp_path / "postgresql.conf").write_text(
        "max_connections = 100   # (change requires restart)\n"
    )
    assert procfs.postgres_max_connections(tmp_path) == 100
    (tmp_path / "postgresql.auto.conf").write_text("max_connections = '40'\n")
    assert procfs.postgres_max_connections(tmp_path) == 40
    assert procfs.postgres_max_connections(tmp_path / "missing") is None


def test_a_v1_quota_and_its_throttling_are_read(tmp_path: Path) -> None:
    """cpu.cfs_quota_us 50000 of 100000: half a core; throttled periods from cpu.stat."""
    proc = _fake_proc(tmp_path)
    group = tmp_path / "cgroup" / "cpu" / "shop"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("50000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    (group / "cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 1\n")
    mounts = procfs.Mounts({"cpu": tmp_path / "cgroup" / "cpu"}, None)
    cgroup = procfs.cgroup_cpu(100, mounts, proc)
    assert cgroup is not None
    assert cgroup.quota == 0.5
    assert cgroup.throttling() == (10, 4)


def test_a_v2_quota_is_read_and_max_means_unlimited(tmp_path: Path) -> None:
    """cpu.max "25000 100000" is a quarter core; "max 100000" is no quota."""
    proc = _fake_proc(tmp_path)
    (proc / "100" / "cgroup").write_text("0::/svc\n")
    group = tmp_path / "unified" / "svc"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("25000 100000\n")
    mounts = procfs.Mounts({}, tmp_path / "unified")
    cgroup = procfs.cgroup_cpu(100, mounts, proc)
    assert cgroup is not None and cgroup.quota == 0.25
    (group / "cpu.max").write_text("max 100000\n")
    cgroup = procfs.cgroup_cpu(100, mounts, proc)
    assert cgroup is not None and cgroup.quota is None


def test_the_sampler_reports_throttling_and_caps_cores_at_the_quota(tmp_path: Path) -> None:
    """A tree in a half-core cgroup: cores 0.5; 6 of 10 new periods throttled: 0.6."""
    proc = _fake_proc(tmp_path)
    group = tmp_path / "cgroup" / "cpu" / "shop"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("50000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    (group / "cpu.stat").write_text("nr_periods 10\nnr_throttled 0\n")
    (tmp_path / "mountinfo").write_text("")
    sampler = ProcessSampler(2, proc=proc)
    sampler.mounts = procfs.Mounts({"cpu": tmp_path / "cgroup" / "cpu"}, None)
    root = Watched("postgres", 100, 7100, max_connections=100)
    first = sampler.sample([root], 0.0)["postgres"]
    assert first.cpu is None and first.cores == 0.5 and first.processes == 4
    assert first.backends == 2 and first.max_connections == 100
    (group / "cpu.stat").write_text("nr_periods 20\nnr_throttled 6\n")
    (proc / "102" / "stat").write_text(_stat_line(102, 100, 150, 7102))
    second = sampler.sample([root], 1.0)["postgres"]
    assert second.throttled == 0.6
    assert second.cpu is not None and abs(second.cpu - 100 / procfs.TICKS) < 1e-6


def test_a_busy_child_and_its_connection_are_seen_in_the_tree(tmp_path: Path) -> None:
    """A real process that forks a spinning child and holds a TCP connection: its tree has
    two processes, one established connection and CPU well above idle."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = (
        "import os, socket, time\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        "if os.fork() == 0:\n"
        "    end = time.time() + 3\n"
        "    while time.time() < end: pass\n"
        "    os._exit(0)\n"
        "time.sleep(3)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    accepted, _ = server.accept()
    try:
        info = procfs.read_stat(child.pid)
        assert info is not None
        root = Watched("busy", child.pid, info.start_ticks, target=True, single_core=True)
        sampler = ProcessSampler(os.cpu_count() or 1)
        deadline = time.monotonic() + 2.0
        while len(procfs.tree(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        sampler.sample([root], time.monotonic())
        time.sleep(0.5)
        sample = sampler.sample([root], time.monotonic())["busy"]
        assert sample.role == "target" and sample.cores == 1.0
        assert sample.processes == 2
        assert sample.conns == 1
        assert sample.cpu is not None and sample.cpu > 0.2
        assert sample.rss is not None and sample.rss > 1_000_000
        assert sample.fd_limit is not None
    finally:
        accepted.close()
        child.kill()
        child.wait()
        server.close()


def test_proc_samples_round_trip_without_the_figures_not_read(tmp_path: Path) -> None:
    """A sample's processes are written without None figures and read back equal."""
    writer = RigWriter(tmp_path)
    sample = RigSample.model_validate(
        {
            "t": 1.0,
            "second": 1,
            "users": 12,
            "procs": {"gateway": {"role": "target", "cpu": 0.97, "cores": 1.0, "conns": 40}},
        }
    )
    writer.write(sample)
    writer.close()
    line = (tmp_path / "rig.jsonl").read_text()
    assert '"throttled"' not in line
    back = read_rig(tmp_path)
    assert back is not None
    assert back[0].procs["gateway"].cpu == 0.97 and back[0].procs["gateway"].throttled is None
    assert back[0].users == 12
