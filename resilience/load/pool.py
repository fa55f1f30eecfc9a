"""Load workers started before their run is ready for them (``prestart``).

A local worker spends most of its start-up importing Locust and its own modules (about
half a second); ``resilience run`` starts the workers it will need first thing, before it
loads the experiment and gets the stack ready, and the run's ``LoadEngine.prepare``
adopts them: the imports of both sides overlap and the first request goes out about that
much sooner. This module imports nothing but the standard library (the CLI calls it
before anything heavy).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import resilience

logger = logging.getLogger(__name__)

PARENT_ENV = "RESILIENCE_LOAD_PARENT"
"""The worker's ``die_with_parent`` reads it (kept in step with ``load/worker.py``; this
module must not import the worker, which imports gevent)."""


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker or master process: this package importable, and the
    parent-death signal asked for when spawned from the main thread (it follows the
    *thread* that forks: only the main thread lives as long as the process)."""
    env = dict(os.environ if base is None else base)
    package_root = str(Path(resilience.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.pop(PARENT_ENV, None)
    if threading.current_thread() is threading.main_thread():
        env[PARENT_ENV] = str(os.getpid())
    return env


class LogSink:
    """A started-early worker's stderr, read by a thread: held in memory until its run's log
    file is known (``attach``), then appended there."""

    MAX_HELD = 10_000

    def __init__(self, stream: IO[bytes]) -> None:
        self._held: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._pump, args=(stream,), name="load-worker-log", daemon=True
        )
        self._thread.start()

    def join(self) -> None:
        """Wait (bounded) until the stream ended and is closed (its process is gone)."""
        self._thread.join(timeout=5.0)

    def attach(self, path: Path, opener: Callable[[str, int], int] | None = None) -> None:
        """From now on the lines go to ``path`` (opened with ``opener``), the held ones first."""
        with self._lock:
            self._file = open(path, "ab", opener=opener)  # noqa: SIM115 - kept open: the pump thread writes to it until the worker ends
            self._file.writelines(self._held)
            self._file.flush()
            self._held = []

    def _pump(self, stream: IO[bytes]) -> None:
        for line in stream:
            with self._lock:
                if self._file is not None:
                    self._file.write(line)
                    self._file.flush()
                elif len(self._held) < self.MAX_HELD:
                    self._held.append(line)
        stream.close()
        with self._lock:
            if self._file is not None:
                self._file.close()


class WorkerPool:
    """Local workers started before their run is ready for them.

    A worker spends most of its start-up importing Locust (about half a second); the CLI
    starts the workers a run will need (``prestart``) before it loads the experiment and
    gets the stack ready, and the run's ``LoadEngine.prepare`` adopts them. Workers nobody
    adopts are stopped by ``close`` (and die with this process in any case)."""

    def __init__(self) -> None:
        self._started: list[tuple[subprocess.Popen[bytes], LogSink]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._started)

    def start(self, count: int) -> None:
        """Start workers until ``count`` are waiting (never fewer than are there)."""
        env = child_env()
        with self._lock:
            for _ in range(count - len(self._started)):
                try:
                    process = spawn_child(
                        [sys.executable, "-m", "resilience.load.worker"], env, subprocess.PIPE
                    )
                except OSError as exc:  # the engine will try again, and say why
                    logger.debug("could not start a load worker early: %s", exc)
                    return
                assert process.stderr is not None
                self._started.append((process, LogSink(process.stderr)))

    def take(self, count: int) -> list[tuple[subprocess.Popen[bytes], LogSink]]:
        """Up to ``count`` of the waiting workers that are still alive; the rest stop."""
        with self._lock:
            alive = [(p, s) for p, s in self._started if p.poll() is None]
            taken, self._started = alive[:count], alive[count:]
        self.close()
        return taken

    def close(self) -> None:
        """Stop every worker nobody took."""
        with self._lock:
            started, self._started = self._started, []
        for process, sink in started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5.0)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            sink.join()


PRESTARTED = WorkerPool()
"""The process's early workers (``prestart``); the next local ``LoadEngine`` adopts them."""


def spawn_child(
    argv: list[str], env: dict[str, str], stderr: int | IO[bytes]
) -> subprocess.Popen[bytes]:
    """A load worker or master process: commands on its stdin, events on its stdout, in a
    process group of its own (a Ctrl-C to the terminal's group is not its; the parent stops
    it) but in this session: a session is a scheduler autogroup on Linux, and a worker in
    its own competed as a group with the rest of the machine (benchmarks/RESULTS.md,
    "Generator throughput on both cores")."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        process_group=0,
        close_fds=True,
    )


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def prestart(count: int) -> None:
    """Start ``count`` local load workers now (see ``WorkerPool``)."""
    PRESTARTED.start(count)
