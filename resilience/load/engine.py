"""The parent side of the load engine: start the worker processes, read them, stop them.

``LoadEngine`` spawns ``python -m resilience.load.worker`` once per worker, each in its
own session (so a stop reaches its whole process group and a Ctrl-C in the terminal does
not) and set to die with its parent (the kernel's parent-death signal: a SIGKILLed
orchestrator leaves no worker behind), stderr appended to ``log_dir/load-worker-N.log``. A reader thread per worker decodes
its stdout into events on one queue; ``poll`` hands them out. A worker that ends before
its plan does, without being asked to, raises ``LoadError`` with the tail of its log.
This module never imports Locust or gevent: the orchestrator's process stays plain.

After the plan, the same stdin is a command channel: ``send(command)`` writes one
``resilience.load.commands`` line to every worker, which applies it to its running load
(users, arrival rate) and answers with a ``CommandAck`` event.

Typical use::

    with LoadEngine(plan, workers=2, log_dir=run_dir / "logs") as engine:
        engine.start()                      # or prepare(), then start(t0=clock.t0_wall)
        while engine.running:
            recorder.consume(engine.poll(1.0))
        recorder.consume(engine.poll(0))
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO

import resilience
from resilience.errors import LoadError
from resilience.load.commands import Command, PhaseMarks, command_type, encode_command
from resilience.load.plan import LoadPlan
from resilience.load.samples import LoadEvent, WorkerExit, WorkerReady, decode_event
from resilience.rundir.layout import make_dirs, private_opener

PARENT_ENV = "RESILIENCE_LOAD_PARENT"
"""The worker's ``die_with_parent`` reads it (kept in step with ``load/worker.py``; this
module must not import the worker, which imports gevent)."""

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 30
_NORMAL_EXIT = "end"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(deque(text.splitlines(), maxlen=lines))


class _Child:
    def __init__(self, index: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.index = index
        self.process = process
        self.log_path = log_path
        self.ready = False
        self.exit: WorkerExit | None = None
        self.thread: threading.Thread | None = None


class LoadEngine:
    """Worker processes for one plan; events through ``poll``; always stopped on exit."""

    def __init__(
        self,
        plan: LoadPlan,
        *,
        workers: int | None = None,
        log_dir: Path,
        python: str | None = None,
        ready_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workers = workers or plan.workers
        if self.workers < 1:
            raise LoadError(f"workers must be at least 1, got {self.workers}")
        self.plan = plan.for_worker(0, self.workers)
        self.log_dir = Path(log_dir)
        self._python = python or sys.executable
        self._ready_timeout = ready_timeout
        self._env = env
        self._children: list[_Child] = []
        self._queue: queue.Queue[tuple[int, LoadEvent]] = queue.Queue()
        self._carry: list[LoadEvent] = []
        self._prepared = False
        self._started = False
        self._stopping = False
        self._stdin_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------

    def prepare(self) -> None:
        """Spawn the workers and wait until each has imported Locust and is ready."""
        if self._prepared:
            return
        self._prepared = True
        make_dirs(self.log_dir)
        env = dict(os.environ if self._env is None else self._env)
        package_root = str(Path(resilience.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        env.pop(PARENT_ENV, None)
        if threading.current_thread() is threading.main_thread():
            # The parent-death signal follows the thread that forks: only the main thread
            # lives as long as the process, so only then may the workers die with it.
            env[PARENT_ENV] = str(os.getpid())
        try:
            for index in range(self.workers):
                self._spawn(index, env)
            self._wait_ready()
        except BaseException:
            self.stop(grace=1.0)
            raise

    def _spawn(self, index: int, env: dict[str, str]) -> None:
        log_path = self.log_dir / f"load-worker-{index}.log"
        # Private like every file of the run directory (0600 by default), whatever the umask.
        with open(log_path, "ab", opener=private_opener) as log:
            try:
                process = subprocess.Popen(
                    [self._python, "-m", "resilience.load.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise LoadError(f"cannot start load worker {index}: {exc}") from exc
        child = _Child(index, process, log_path)
        child.thread = threading.Thread(
            target=self._read, args=(child,), name=f"load-worker-{index}-reader", daemon=True
        )
        self._children.append(child)
        child.thread.start()
        logger.debug("load worker %d started, pid %d", index, process.pid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        held: list[LoadEvent] = []
        while not all(c.ready for c in self._children):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = [c for c in self._children if not c.ready]
                raise self._error(late[0], f"load worker {late[0].index} not ready in time")
            try:
                index, event = self._queue.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            child = self._children[index]
            if isinstance(event, WorkerReady):
                child.ready = True
            elif isinstance(event, WorkerExit):
                raise self._error(child, f"load worker {index} exited before it was ready")
            else:
                held.append(event)
        self._carry.extend(held)

    def start(self, t0: float | None = None) -> None:
        """Send each worker its plan; they begin at ``t0`` (default: the plan's)."""
        if self._started:
            return
        self.prepare()
        self._started = True
        if t0 is not None:
            self.plan = self.plan.model_copy(update={"t0": t0})
        for child in self._children:
            line = self.plan.for_worker(child.index, self.workers).to_json().encode() + b"\n"
            self._write(child, line)
        logger.info(
            "load engine: %d workers, %s model, t0=%.3f, %.0fs",
            self.workers,
            self.plan.model,
            self.plan.t0,
            self.plan.duration,
        )

    def send(self, command: Command) -> int:
        """Send ``command`` to every running worker; returns how many it reached.

        Each worker applies it to its running load and answers with a ``CommandAck``
        (through ``poll``). Raises LoadError before ``start`` or when no worker is left.
        """
        if not self._started or self._stopping:
            raise LoadError(f"cannot send {command_type(command)}: the load is not running")
        line = encode_command(command).encode() + b"\n"
        sent = 0
        for child in self._children:
            if child.process.poll() is not None:
                continue
            try:
                self._write(child, line)
            except LoadError as exc:
                logger.warning("%s", str(exc).splitlines()[0])
                continue
            sent += 1
        if not sent:
            raise LoadError(f"cannot send {command_type(command)}: no load worker is running")
        log = logger.debug if isinstance(command, PhaseMarks) else logger.info
        log("load command to %d worker(s): %s", sent, encode_command(command))
        return sent

    def _write(self, child: _Child, line: bytes) -> None:
        # A full pipe would block: a worker reads its stdin continuously, and a line is
        # far below the pipe's buffer, so a write here takes microseconds.
        with self._stdin_lock:
            stdin = child.process.stdin
            try:
                if stdin is None:
                    raise OSError("no stdin pipe")
                stdin.write(line)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise self._error(child, f"load worker {child.index} is gone: {exc}") from exc

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every worker's process group, SIGKILL after ``grace`` seconds, reap."""
        self._stopping = True
        alive = [c for c in self._children if c.process.poll() is None]
        for child in alive:
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in alive:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("load worker %d ignored SIGTERM; killing it", child.index)
                self._signal(child, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=5.0)
        for child in self._children:
            # The session may hold stray grandchildren; they go with the group.
            self._signal(child, signal.SIGKILL, group_only=True)
            if child.process.stdin is not None:
                with self._stdin_lock, contextlib.suppress(OSError):
                    child.process.stdin.close()
            if child.thread is not None:
                child.thread.join(timeout=5.0)

    def _signal(self, child: _Child, sig: signal.Signals, *, group_only: bool = False) -> None:
        # Only while the leader is unreaped is its pid (= the group id) surely still ours.
        if child.process.returncode is not None and not group_only:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Wait until every worker has ended by itself; True if they all did in time."""
        deadline = time.monotonic() + timeout
        for child in self._children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    @property
    def running(self) -> bool:
        """True while any worker process is alive or its output is not fully read."""
        return any(
            c.process.poll() is None or (c.thread is not None and c.thread.is_alive())
            for c in self._children
        )

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children]

    def __enter__(self) -> LoadEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- events -----------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> list[LoadEvent]:
        """Events that arrived, waiting up to ``timeout`` seconds for the first one.

        Raises LoadError when a worker ended early (not at its plan's end and not asked to
        stop); the events of that batch are not lost, the next ``poll`` returns them.
        """
        events, self._carry = self._carry, []
        if not events:
            try:
                events.append(
                    self._take(
                        self._queue.get(timeout=timeout)
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                )
            except queue.Empty:
                return []
        while True:
            try:
                events.append(self._take(self._queue.get_nowait()))
            except queue.Empty:
                break
        for event in events:
            if isinstance(event, WorkerExit) and self._failed(event):
                child = self._children[event.worker]
                self._carry = events
                raise self._error(
                    child,
                    f"load worker {event.worker} ended early ({event.reason}, "
                    f"exit code {event.returncode}){': ' + event.message if event.message else ''}",
                )
        return events

    def _take(self, item: tuple[int, LoadEvent]) -> LoadEvent:
        return item[1]

    def _failed(self, event: WorkerExit) -> bool:
        if event.worker < 0 or event.worker >= len(self._children):
            return False
        child = self._children[event.worker]
        if child.exit is event:
            return False  # already reported
        child.exit = event
        if self._stopping:
            return False
        return event.reason != _NORMAL_EXIT or event.returncode not in (0, None)

    def _error(self, child: _Child, message: str) -> LoadError:
        tail = log_tail(child.log_path)
        if tail:
            return LoadError(f"{message}\n--- last lines of {child.log_path} ---\n{tail}")
        return LoadError(f"{message} (its log {child.log_path} is empty)")

    def _read(self, child: _Child) -> None:
        """Reader thread: decode a worker's stdout; at EOF add one WorkerExit with its code."""
        stream: IO[bytes] | None = child.process.stdout
        own_exit: WorkerExit | None = None
        if stream is not None:
            for raw in stream:
                if not raw.strip():
                    continue
                try:
                    event = decode_event(raw)
                except LoadError as exc:
                    logger.warning("load worker %d: %s", child.index, exc)
                    continue
                if isinstance(event, WorkerReady):
                    event = replace(event, worker=child.index)
                if isinstance(event, WorkerExit):
                    own_exit = replace(event, worker=child.index)
                    continue
                self._queue.put((child.index, event))
            stream.close()
        try:
            code = child.process.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            code = None
        final = own_exit or WorkerExit(worker=child.index, reason="died")
        self._queue.put((child.index, replace(final, returncode=code)))
