"""Processes and ports, read from /proc and the socket API: start detached, find, stop, measure.

Stack processes outlive the command that started them, so they are never children of
the caller: a tiny launcher (a second Python process) starts each one in its own session
and process group and exits, handing back the PID. Identity is the PID plus its start
time from /proc, so a recycled PID is never mistaken for ours. Everything that waits
does so until a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from resilience.errors import StackError

logger = logging.getLogger(__name__)

_PROC = Path("/proc")

# Runs in a fresh interpreter (-I -S: no site, no env). It must stay tiny and stdlib-only.
_LAUNCHER = """
import json, subprocess, sys
spec = json.load(sys.stdin)
extra = {}
if spec["uid"] is not None:
    extra = {"user": spec["uid"], "group": spec["gid"], "extra_groups": []}
with open(spec["log"], "ab", buffering=0) as log:
    child = subprocess.Popen(
        spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, **extra)
sys.stdout.write(str(child.pid))
"""


@dataclass(frozen=True)
class RunAs:
    """An OS user to run a program as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Launch:
    """How to start one long-running program."""

    argv: list[str]
    log: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    run_as: RunAs | None = None


@dataclass(frozen=True)
class ProcInfo:
    """One process as /proc describes it."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start_ticks: int
    rss_pages: int


def spawn_detached(launch: Launch, *, timeout: float = 15.0) -> int:
    """Start ``launch`` in a new session, detached from the caller; return its PID."""
    spec = {
        "argv": launch.argv,
        "env": launch.env,
        "cwd": str(launch.cwd),
        "log": str(launch.log),
        "uid": launch.run_as.uid if launch.run_as else None,
        "gid": launch.run_as.gid if launch.run_as else None,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"could not launch {launch.argv[0]}: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise StackError(f"could not launch {launch.argv[0]}: {reason[0]}")
    return int(done.stdout.strip())


def proc_info(pid: int) -> ProcInfo | None:
    """What /proc says about ``pid``, or None if there is no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def all_processes() -> list[ProcInfo]:
    """Every process visible in /proc (those that vanish while reading are skipped)."""
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None:
                found.append(info)
    return found


def is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie is dead) and, if given, started at ``start_ticks``."""
    info = proc_info(pid)
    if info is None or info.state in ("Z", "X"):
        return False
    return start_ticks is None or info.start_ticks == start_ticks


def family(roots: Iterable[int], processes: list[ProcInfo] | None = None) -> list[ProcInfo]:
    """Live processes in the process groups of ``roots`` or descending from them."""
    processes = all_processes() if processes is None else processes
    roots = set(roots)
    children: dict[int, list[ProcInfo]] = {}
    for info in processes:
        children.setdefault(info.ppid, []).append(info)
    by_pid = {info.pid: info for info in processes}
    found: dict[int, ProcInfo] = {
        info.pid: info for info in processes if info.pgid in roots or info.pid in roots
    }
    # PostgreSQL backends call setsid(): they leave the group but stay descendants.
    frontier = list(found)
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, []):
            if child.pid not in found:
                found[child.pid] = child
                frontier.append(child.pid)
    return [by_pid[pid] for pid in sorted(found) if by_pid[pid].state not in ("Z", "X")]


def resident_bytes(infos: Iterable[ProcInfo]) -> int:
    """Sum of the resident set sizes of ``infos``."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(info.rss_pages for info in infos) * page


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_group(pgid: int, *, grace: float = 10.0, kill_wait: float = 5.0) -> bool:
    """SIGTERM the process group ``pgid`` and its descendants, SIGKILL after ``grace``.

    Returns True when nothing of it is left.
    """

    def remaining() -> list[ProcInfo]:
        return family([pgid])

    def signal_all(sig: signal.Signals) -> None:
        for info in remaining():
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, sig)

    if not remaining():
        return True
    signal_all(signal.SIGTERM)
    if wait_until(lambda: not remaining(), timeout=grace):
        return True
    logger.warning("process group %d ignored SIGTERM for %.0fs; sending SIGKILL", pgid, grace)
    signal_all(signal.SIGKILL)
    return wait_until(lambda: not remaining(), timeout=kill_wait)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def tail(path: Path, *, start: int = 0, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of ``path`` written after byte offset ``start``."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
