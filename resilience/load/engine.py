"""The parent side of the load engine: start the worker processes, read them, stop them.

``LoadEngine`` spawns ``python -m resilience.load.worker`` once per worker, each in its
own process group within the run's session (so a stop reaches its whole group, a Ctrl-C
in the terminal does not, and the scheduler treats it as part of the run) and set to die with its parent (the kernel's parent-death signal: a SIGKILLed
orchestrator leaves no worker behind), stderr appended to ``log_dir/load-worker-N.log``. A reader thread per worker decodes
its stdout into events on one queue; ``poll`` hands them out. A worker that ends before
its plan does, without being asked to, raises ``LoadError`` with the tail of its log.
This module never imports Locust or gevent: the orchestrator's process stays plain.

After the plan, the same stdin is a command channel: ``send(command)`` writes one
``resilience.load.commands`` line to every worker, which applies it to its running load
(users, arrival rate) and answers with a ``CommandAck`` event.

Distributed (``distributed=Distributed(workers=N, ...)``): the engine starts one child, the
master (``python -m resilience.load.master``), instead of local workers, and waits until N
``resilience worker --master HOST:PORT`` processes have joined it. The master speaks the
same lines on the same pipes: the plan and commands go to it and on to every worker, the
workers' events come back through it unchanged. A worker lost mid-run arrives as a
``WorkerExit`` with reason ``lost``: the run goes on without its load (``lost``), unless
every worker is lost.

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
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO

from resilience.errors import LoadError, LoadRefused
from resilience.load.commands import Command, PhaseMarks, command_type, encode_command
from resilience.load.distributed import Distributed
from resilience.load.plan import LoadPlan
from resilience.load.pool import PRESTARTED, LogSink, child_env, spawn_child
from resilience.load.samples import (
    REFUSED,
    LoadEvent,
    MasterReady,
    RemoteWorker,
    WorkerExit,
    WorkerReady,
    decode_event,
)
from resilience.rundir.layout import make_dirs, private_opener

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 30
_NORMAL_EXIT = "end"
LOST = "lost"
"""A remote worker's exit reason when it stopped answering or ended early unasked."""
MASTER = -1
"""The index of the master child of a distributed run (its own errors carry it too)."""
MASTER_STOP_GRACE = 4.0
"""Seconds the master gets to stop its workers and relay what they flush."""


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
    """A child process: a local worker (its index) or the master of a distributed run."""

    def __init__(self, index: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.index = index
        self.process = process
        self.log_path = log_path
        self.ready = False
        self.thread: threading.Thread | None = None
        self.sink: LogSink | None = None
        """A started-early worker's stderr pump (its log file's only writer)."""
        self.relayed_exits: set[int] = set()
        """The master's: worker indexes whose exit it relayed (read by its reader thread)."""

    @property
    def name(self) -> str:
        return "the load master" if self.index == MASTER else f"load worker {self.index}"


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
        distributed: Distributed | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.distributed = distributed
        self.workers = distributed.workers if distributed else (workers or plan.workers)
        if self.workers < 1:
            raise LoadError(f"workers must be at least 1, got {self.workers}")
        self.plan = plan.for_worker(0, self.workers)
        self.log_dir = Path(log_dir)
        self._python = python or sys.executable
        self._ready_timeout = ready_timeout
        self._env = env
        self._progress = progress or (lambda text: None)
        self._children: list[_Child] = []
        self._queue: queue.Queue[tuple[int, LoadEvent]] = queue.Queue()
        self._carry: list[LoadEvent] = []
        self._exits: dict[int, WorkerExit] = {}
        self._prepared = False
        self._started = False
        self._stopping = False
        self._stdin_lock = threading.Lock()
        self.address: str | None = None
        """Distributed: where the master listens (``host:port``), once it does."""
        self.remote: dict[int, RemoteWorker] = {}
        """Distributed: the workers assigned to the run, by index."""
        self.lost: list[WorkerExit] = []
        """Distributed: the workers lost mid-run (their load is missing from then on)."""

    # -- life cycle -------------------------------------------------------------------

    def prepare(self) -> None:
        """Spawn the workers and wait until each has imported Locust and is ready
        (distributed: the master, then until every remote worker has joined it)."""
        if self._prepared:
            return
        self._prepared = True
        make_dirs(self.log_dir)
        env = child_env(self._env)
        try:
            if self.distributed is not None:
                PRESTARTED.close()  # the load runs elsewhere
                self._spawn(MASTER, env, self._master_argv(self.distributed))
                self._wait_ready()
                self._wait_joined(self.distributed)
            else:
                adopted = PRESTARTED.take(self.workers) if self._adopts() else []
                for index, (process, sink) in enumerate(adopted):
                    self._add(_Child(index, process, self._log_path(index)), sink)
                for index in range(len(adopted), self.workers):
                    self._spawn(index, env, ["-m", "resilience.load.worker"])
                self._wait_ready()
        except BaseException:
            self.stop(grace=1.0)
            raise

    @staticmethod
    def _master_argv(distributed: Distributed) -> list[str]:
        return [
            "-m", "resilience.load.master", "--bind", distributed.bind,
            "--port", str(distributed.port), "--workers", str(distributed.workers),
        ]  # fmt: skip

    def _adopts(self) -> bool:
        """Whether workers started early (``prestart``) can be this engine's: they run this
        interpreter with this process's environment."""
        return self._python == sys.executable and self._env is None

    def _log_path(self, index: int) -> Path:
        name = "load-master.log" if index == MASTER else f"load-worker-{index}.log"
        return self.log_dir / name

    def _spawn(self, index: int, env: dict[str, str], argv: list[str]) -> None:
        log_path = self._log_path(index)
        # Private like every file of the run directory (0600 by default), whatever the umask.
        with open(log_path, "ab", opener=private_opener) as log:
            try:
                process = spawn_child([self._python, *argv], env, log)
            except OSError as exc:
                what = "the load master" if index == MASTER else f"load worker {index}"
                raise LoadError(f"cannot start {what}: {exc}") from exc
        self._add(_Child(index, process, log_path))
        logger.debug(
            "load %s started, pid %d", "master" if index == MASTER else "worker", process.pid
        )

    def _add(self, child: _Child, sink: LogSink | None = None) -> None:
        """Read the child's events from now on (a started-early one: its log goes to the
        run's file from now on, what it logged before first)."""
        if sink is not None:
            sink.attach(child.log_path, opener=private_opener)
            child.sink = sink
        child.thread = threading.Thread(
            target=self._read, args=(child,), name=f"{child.name}-reader", daemon=True
        )
        self._children.append(child)
        child.thread.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while not all(c.ready for c in self._children):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = [c for c in self._children if not c.ready]
                raise self._error(late[0], f"{late[0].name} not ready in time")
            self._next_while_waiting(min(remaining, 0.5))

    def _wait_joined(self, distributed: Distributed) -> None:
        """Until every remote worker has joined the master (or the wait is over)."""
        address = self.address or distributed.address
        self._progress(
            f"waiting for {distributed.workers} load worker(s): start each with "
            f"`resilience worker --master {address}`"
        )
        joined = 0
        deadline = time.monotonic() + distributed.wait
        while joined < distributed.workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(
                    self._children[0],
                    f"only {joined} of {distributed.workers} load worker(s) joined the master "
                    f"at {address} within {distributed.wait:.0f} s (start them with "
                    f"`resilience worker --master {address}`)",
                )
            event = self._next_while_waiting(min(remaining, 0.5))
            if isinstance(event, RemoteWorker) and event.state == "joined":
                joined = max(joined, event.joined)
                self._progress(
                    f"load worker joined from {event.host} (pid {event.pid}; clock offset "
                    f"{event.offset * 1000:+.1f} ms, round trip {event.rtt * 1000:.1f} ms): "
                    f"{event.joined}/{distributed.workers}"
                )

    def _next_while_waiting(self, timeout: float) -> LoadEvent | None:
        """One event before the start: readiness is noted, an exit is an error, anything
        else is kept for ``poll``."""
        try:
            index, event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        child = next(c for c in self._children if c.index == index)
        if isinstance(event, WorkerReady | MasterReady):
            child.ready = True
            if isinstance(event, MasterReady):
                self.address = event.address
        elif isinstance(event, WorkerExit):
            detail = f": {event.message}" if event.message else ""
            raise self._error(child, f"{child.name} exited before the load started{detail}")
        else:
            self._carry.append(event)
        return event

    def start(self, t0: float | None = None) -> None:
        """Send each worker its plan; they begin at ``t0`` (default: the plan's)."""
        if self._started:
            return
        self.prepare()
        self._started = True
        if t0 is not None:
            self.plan = self.plan.model_copy(update={"t0": t0})
        if self.distributed is not None:
            self._write(self._children[0], self._remote_plan().to_json().encode() + b"\n")
        else:
            for child in self._children:
                line = self.plan.for_worker(child.index, self.workers).to_json().encode() + b"\n"
                self._write(child, line)
        logger.info(
            "load engine: %d %sworkers, %s model, t0=%.3f, %.0fs",
            self.workers,
            "remote " if self.distributed else "",
            self.plan.model,
            self.plan.t0,
            self.plan.duration,
        )

    def _remote_plan(self) -> LoadPlan:
        """The plan for workers on other machines: a locustfile travels with it."""
        plan = self.plan
        if plan.locustfile and plan.locustfile_text is None:
            try:
                text = Path(plan.locustfile).read_text(encoding="utf-8")
            except OSError as exc:
                raise LoadError(f"cannot read the locustfile {plan.locustfile}: {exc}") from exc
            plan = plan.model_copy(update={"locustfile_text": text})
        return plan

    def send(self, command: Command) -> int:
        """Send ``command`` to every running worker; returns how many it reached.

        Each worker applies it to its running load and answers with a ``CommandAck``
        (through ``poll``). Raises LoadError before ``start`` or when no worker is left.
        Distributed: the master passes it on to every worker it still has.
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
        if self.distributed is not None:
            sent = self.workers - len(self._exits)
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
                raise self._error(child, f"{child.name} is gone: {exc}") from exc

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every worker's process group, SIGKILL after ``grace`` seconds, reap."""
        self._stopping = True
        alive = [c for c in self._children if c.process.poll() is None]
        for child in alive:
            self._signal(child, signal.SIGTERM)
        if self.distributed is not None and grace >= 1.0:
            # The master stops its workers and relays what they flush before it goes.
            grace = max(grace, MASTER_STOP_GRACE)
        deadline = time.monotonic() + grace
        for child in alive:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM; killing it", child.name)
                self._signal(child, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=5.0)
        for child in self._children:
            # The group may hold stray grandchildren; they go with it.
            self._signal(child, signal.SIGKILL, group_only=True)
            if child.process.stdin is not None:
                with self._stdin_lock, contextlib.suppress(OSError):
                    child.process.stdin.close()
            if child.thread is not None:
                child.thread.join(timeout=5.0)
            if child.sink is not None:
                child.sink.join()  # its log is whole before anyone rewrites it

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
        """The load's processes on this machine: the local workers; distributed, the
        remote workers that run here (by index) and the master last."""
        if self.distributed is None:
            return [c.process.pid for c in self._children]
        here = socket.gethostname()
        local = [r.pid for _, r in sorted(self.remote.items()) if r.host == here and r.pid > 0]
        return [*local, *(c.process.pid for c in self._children)]

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
        stop); the events of that batch are not lost, the next ``poll`` returns them. A
        remote worker that was lost is not an error (``lost`` lists it) unless every worker
        is.
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
                self._carry = events
                child = self._child_of(event.worker)
                if event.reason == LOST:
                    raise self._error(child, f"every load worker was lost ({event.message})")
                if event.reason == REFUSED:
                    raise LoadRefused(f"{self._name(event.worker)} refused: {event.message}")
                raise self._error(
                    child,
                    f"{self._name(event.worker)} ended early ({event.reason}, "
                    f"exit code {event.returncode}){': ' + event.message if event.message else ''}",
                )
        return events

    def _take(self, item: tuple[int, LoadEvent]) -> LoadEvent:
        event = item[1]
        if isinstance(event, RemoteWorker) and event.state == "assigned":
            self.remote[event.worker] = event
        return event

    def _name(self, worker: int) -> str:
        if worker == MASTER:
            return "the load master"
        if self.distributed is not None:
            remote = self.remote.get(worker)
            where = f" on {remote.host}" if remote is not None else ""
            return f"remote load worker {worker}{where}"
        return f"load worker {worker}"

    def _child_of(self, worker: int) -> _Child:
        if self.distributed is not None or worker == MASTER:
            return self._children[0]
        return self._children[worker]

    def _failed(self, event: WorkerExit) -> bool:
        """Whether this exit ends the run: a worker that ended early, the master's own
        error, or the last remote worker lost. Each worker's first exit counts once."""
        if event.worker == MASTER:
            return not self._stopping
        known = 0 <= event.worker < self.workers and event.worker not in self._exits
        if known:
            self._exits[event.worker] = event
        if not known or self._stopping:
            return False
        if event.reason == LOST:
            self.lost.append(event)
            logger.warning("%s lost: %s", self._name(event.worker), event.message)
            return len(self.lost) >= self.workers
        return event.reason != _NORMAL_EXIT or event.returncode not in (0, None)

    def _error(self, child: _Child, message: str) -> LoadError:
        tail = log_tail(child.log_path)
        if tail:
            return LoadError(f"{message}\n--- last lines of {child.log_path} ---\n{tail}")
        return LoadError(f"{message} (its log {child.log_path} is empty)")

    def _read(self, child: _Child) -> None:
        """Reader thread: decode a child's stdout. A local worker's exit is held until its
        output ends and passed on with its exit code; the master's events (its workers'
        exits included) pass at once, and at its end every worker it had not ended yet
        gets a ``died`` exit."""
        stream: IO[bytes] | None = child.process.stdout
        own_exit: WorkerExit | None = None
        for event in _events(child, stream):
            if child.index == MASTER:
                if isinstance(event, WorkerExit):
                    child.relayed_exits.add(event.worker)
                self._queue.put((child.index, event))
            elif isinstance(event, WorkerExit):
                own_exit = replace(event, worker=child.index)
            elif isinstance(event, WorkerReady):
                self._queue.put((child.index, replace(event, worker=child.index)))
            else:
                self._queue.put((child.index, event))
        try:
            code = child.process.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            code = None
        if child.index == MASTER:
            for worker in range(self.workers):
                if worker not in child.relayed_exits:
                    self._queue.put((child.index, WorkerExit(worker, "died", returncode=code)))
            if code not in (0, None) and MASTER not in child.relayed_exits:
                self._queue.put((child.index, WorkerExit(MASTER, "died", returncode=code)))
            return
        final = own_exit or WorkerExit(worker=child.index, reason="died")
        self._queue.put((child.index, replace(final, returncode=code)))


def _events(child: _Child, stream: IO[bytes] | None) -> Iterator[LoadEvent]:
    """The events on a child's stdout until it closes (malformed lines logged, skipped)."""
    if stream is None:
        return
    for raw in stream:
        if not raw.strip():
            continue
        try:
            yield decode_event(raw)
        except LoadError as exc:
            logger.warning("%s: %s", child.name, exc)
    stream.close()
