"""What /proc and the cgroup files say about one local process tree, read cheaply.

The rig monitor (``runner/rig.py``) reads these once a second for every process it watches
— the target's, the built-in stack's, the load workers' and its own — so each reader costs a
handful of system calls: ``/proc/<pid>/stat`` (CPU ticks, threads, resident pages),
``/proc/<pid>/task/<tid>/children`` (the tree: PostgreSQL's backends, a service's worker
processes), ``/proc/<pid>/fd`` (descriptors; the sockets among them are matched against the
established TCP connections of ``/proc/net/tcp``), and the process's cgroup: its CPU quota
and throttling (``cpu.stat``: ``nr_periods``, ``nr_throttled``) under cgroup v1
(``cpu.cfs_quota_us``) or v2 (``cpu.max``), and its memory limit. Nothing here raises for a
process that is gone or a file that cannot be read: the figure is None.

psutil reads the same files; it is not a dependency of the toolkit, it scans every
descriptor for its connection list (``net_connections`` walks all processes), and it knows
nothing of cgroup quotas or PostgreSQL's backends.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_TREE = 512
"""Processes followed under one root: a fork bomb must not stall the monitor."""
UNLIMITED = 1 << 60
"""cgroup v1 writes "no limit" as a huge number (9223372036854771712)."""
TCP_ESTABLISHED = "01"


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` the rig uses."""

    state: str
    ppid: int
    ticks: int
    """utime + stime, in clock ticks."""
    threads: int
    rss_pages: int
    start_ticks: int


def read_stat(pid: int, proc: Path = PROC) -> Stat | None:
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    try:
        fields = raw[raw.rindex(")") + 2 :].split()
        return Stat(
            state=fields[0],
            ppid=int(fields[1]),
            ticks=int(fields[11]) + int(fields[12]),
            threads=int(fields[17]),
            rss_pages=int(fields[21]),
            start_ticks=int(fields[19]),
        )
    except (ValueError, IndexError):
        return None


def children(pid: int, proc: Path = PROC) -> list[int]:
    """The direct children of ``pid`` (of every thread of it)."""
    out: list[int] = []
    try:
        tasks = [t.name for t in (proc / str(pid) / "task").iterdir()]
    except OSError:
        return out
    for tid in tasks:
        try:
            text = (proc / str(pid) / "task" / tid / "children").read_text()
        except OSError:
            continue
        out.extend(int(c) for c in text.split() if c.isdigit())
    return out


def tree(root: int, proc: Path = PROC, limit: int = MAX_TREE) -> list[int]:
    """``root`` and its descendants, breadth first, at most ``limit`` of them."""
    seen = [root]
    index = 0
    while index < len(seen) and len(seen) < limit:
        for child in children(seen[index], proc):
            if child not in seen and len(seen) < limit:
                seen.append(child)
        index += 1
    return seen


def fd_sockets(pid: int, proc: Path = PROC) -> tuple[int, set[int]] | None:
    """(open descriptors, inodes of the sockets among them), or None when unreadable."""
    base = proc / str(pid) / "fd"
    try:
        names = os.listdir(base)  # noqa: PTH208 (hundreds of descriptors a second: plain strings)
    except OSError:
        return None
    inodes: set[int] = set()
    for name in names:
        try:
            target = os.readlink(base / name)  # noqa: PTH115 (as above)
        except OSError:
            continue
        if target.startswith("socket:["):
            try:
                inodes.add(int(target[8:-1]))
            except ValueError:
                continue
    return len(names), inodes


def established(proc: Path = PROC) -> set[int]:
    """Inodes of this network namespace's established TCP connections (IPv4 and IPv6)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            with (proc / "net" / name).open(encoding="ascii", errors="replace") as handle:
                next(handle, None)  # the header
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == TCP_ESTABLISHED:
                        try:
                            inodes.add(int(fields[9]))
                        except ValueError:
                            continue
        except OSError:
            continue
    return inodes


def fd_limit(pid: int, proc: Path = PROC) -> int | None:
    """The soft limit on open files (``Max open files`` in ``/proc/<pid>/limits``)."""
    try:
        text = (proc / str(pid) / "limits").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            value = line[len("Max open files") :].split()[0]
            return int(value) if value.isdigit() else None
    return None


def cmdline(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def postgres_backends(pids: Iterable[int], proc: Path = PROC) -> int:
    """PostgreSQL client connections among ``pids``: backends whose title names a user, a
    database and a client (``postgres: shop shop 127.0.0.1(51234) idle``), not the
    checkpointer, the writers or the launchers."""
    count = 0
    for pid in pids:
        title = cmdline(pid, proc)
        if not title.startswith("postgres: "):
            continue
        words = title[len("postgres: ") :].split()
        if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
            count += 1
    return count


def postgres_max_connections(pgdata: Path) -> int | None:
    """``max_connections`` of a cluster from its configuration files (the last setting
    wins, ``postgresql.auto.conf`` after ``postgresql.conf``); None when not found."""
    value: int | None = None
    for name in ("postgresql.conf", "postgresql.auto.conf"):
        try:
            text = (pgdata / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition("=")
            if key.strip() == "max_connections":
                number = rest.split("#")[0].strip().strip("'")
                if number.isdigit():
                    value = int(number)
    return value


# -- cgroups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mounts:
    """Where the cgroup hierarchies are mounted: v1 per controller, and v2."""

    v1: dict[str, Path]
    v2: Path | None

    @classmethod
    def read(cls, proc: Path = PROC) -> Mounts:
        v1: dict[str, Path] = {}
        v2: Path | None = None
        try:
            lines = (proc / "self" / "mountinfo").read_text().splitlines()
        except OSError:
            return cls(v1, v2)
        for line in lines:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            mount_point = Path(fields[4])
            if tail[0] == "cgroup2":
                v2 = v2 or mount_point
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    if option in ("cpu", "memory"):
                        v1.setdefault(option, mount_point)
        return cls(v1, v2)


@dataclass(frozen=True)
class CgroupCpu:
    """A process's CPU cgroup: its quota in cores (None: unlimited) and its stat file."""

    path: Path
    quota: float | None
    version: int

    def throttling(self) -> tuple[int, int] | None:
        """(periods, throttled periods) so far, or None when unreadable."""
        try:
            text = (self.path / "cpu.stat").read_text()
        except OSError:
            return None
        values = {
            parts[0]: int(parts[1])
            for parts in (line.split() for line in text.splitlines())
            if len(parts) == 2 and parts[1].isdigit()
        }
        if "nr_periods" not in values or "nr_throttled" not in values:
            return None
        return values["nr_periods"], values["nr_throttled"]


def _cgroup_paths(pid: int, proc: Path) -> dict[str, str]:
    """Controller (``cpu``, ``memory``, or ``""`` for v2) -> the process's cgroup path."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if controllers == "":
            out[""] = path
        for controller in controllers.split(","):
            out.setdefault(controller, path)
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def cgroup_cpu(pid: int, mounts: Mounts, proc: Path = PROC) -> CgroupCpu | None:
    """The CPU cgroup of ``pid`` with its quota (v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, v2 ``cpu.max``); None when it has none we can read."""
    paths = _cgroup_paths(pid, proc)
    if "cpu" in paths and "cpu" in mounts.v1:
        where = mounts.v1["cpu"] / paths["cpu"].lstrip("/")
        quota, period = (
            _read_int(where / "cpu.cfs_quota_us"),
            _read_int(where / "cpu.cfs_period_us"),
        )
        cores = quota / period if quota is not None and quota > 0 and period else None
        return CgroupCpu(where, cores, 1)
    if "" in paths and mounts.v2 is not None:
        where = mounts.v2 / paths[""].lstrip("/")
        try:
            words = (where / "cpu.max").read_text().split()
        except OSError:
            words = []
        if len(words) < 2:
            return CgroupCpu(where, None, 2) if (where / "cpu.stat").exists() else None
        cores = int(words[0]) / int(words[1]) if words[0].isdigit() and words[1].isdigit() else None
        return CgroupCpu(where, cores, 2)
    return None


def cgroup_memory_limit(pid: int, mounts: Mounts, proc: Path = PROC) -> int | None:
    """The memory limit of ``pid``'s cgroup in bytes; None when unlimited or unknown."""
    paths = _cgroup_paths(pid, proc)
    value: int | None = None
    if "memory" in paths and "memory" in mounts.v1:
        value = _read_int(
            mounts.v1["memory"] / paths["memory"].lstrip("/") / "memory.limit_in_bytes"
        )
    elif "" in paths and mounts.v2 is not None:
        value = _read_int(mounts.v2 / paths[""].lstrip("/") / "memory.max")
    if value is None or value <= 0 or value >= UNLIMITED:
        return None
    return value
