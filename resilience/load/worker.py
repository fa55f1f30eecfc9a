"""A load worker process: ``python -m resilience.load.worker [--plan FILE]``.

The parent (``LoadEngine``) starts one per core. The worker imports Locust (which patches
this process with gevent), reports ``ready`` on stdout, reads its ``LoadPlan`` (one JSON
line on stdin, or ``--plan FILE``), waits for t0 and runs its share of the load. Every
later line on stdin is a command (``resilience.load.commands``: users or arrival rate
changed live), applied to the running load and answered with a ``CommandAck``. It writes
events as JSON lines on stdout (see ``samples``) and logs to stderr. Every loop is bounded:
the worker stops by itself at the plan's end (after at most the client timeout to drain),
when its stdin closes, when its parent dies, or promptly on SIGTERM. A parent's death is
caught twice: the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set
first thing when the parent asks for it) ends the worker the moment a SIGKILLed
orchestrator goes, and ``os.getppid()`` is polled every second where prctl is missing. SIGINT is ignored: a Ctrl-C in the terminal reaches the whole foreground process
group, and the parent decides how its workers stop.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import logging
import math
import os
import random
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

from resilience.errors import LoadError
from resilience.load.commands import (
    Command,
    PhaseMarks,
    SetRate,
    SetUsers,
    command_type,
    decode_command,
)
from resilience.load.samples import (
    REFUSED,
    CommandAck,
    LoadEvent,
    WorkerExit,
    WorkerReady,
    encode_event,
)
from resilience.redact import RedactingFilter, Redactor

if TYPE_CHECKING:
    from resilience.load.plan import LoadPlan
    from resilience.load.runtime import OpenScheduler, StageShape, Workload

logger = logging.getLogger("resilience.load.worker")

# Locust's own stop of users on a stage change waits this long beyond the client timeout.
_DRAIN_GRACE_S = 2.0
# A command line longer than this is not ours: it is dropped rather than buffered forever.
_MAX_COMMAND_BYTES = 64 * 1024


class Link(Protocol):
    """How a worker talks to whoever runs it: events out, commands in, and whether that
    someone is still there. ``PipeLink`` for a local worker (stdout, stdin, the parent
    process); ``resilience.load.remote.LocustLink`` for a remote one (Locust's messages)."""

    def emit(self, event: LoadEvent) -> None: ...

    def flush(self) -> None: ...

    def listen(self, on_line: Callable[[bytes], None], on_closed: Callable[[str], None]) -> None:
        """Deliver every command line to ``on_line``; ``on_closed(reason)`` when the channel
        closes (the worker then stops)."""
        ...

    def gone(self) -> str | None:
        """A stop reason when the one running this worker is gone (else None)."""
        ...


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


class PipeLink:
    """A local worker's link: events as JSON lines on stdout (one system call per batch),
    commands as lines on stdin, the parent watched through ``os.getppid()``."""

    def __init__(self, fd: int, stdin_pending: bytes = b"") -> None:
        self._fd = fd
        self._lines: list[str] = []
        self._pending = stdin_pending
        self._ppid = os.getppid()

    def emit(self, event: LoadEvent) -> None:
        self._lines.append(encode_event(event))

    def flush(self) -> None:
        if not self._lines:
            return
        self.write("\n".join(self._lines))
        self._lines = []

    def write(self, text: str) -> None:
        """Lines already encoded (no trailing newline), in one go."""
        view = memoryview((text + "\n").encode())
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def listen(self, on_line: Callable[[bytes], None], on_closed: Callable[[str], None]) -> None:
        if _stdin_is_pipe():
            import gevent

            gevent.spawn(self._watch_stdin, on_line, on_closed)

    def gone(self) -> str | None:
        return "parent_gone" if os.getppid() != self._ppid else None

    def _watch_stdin(
        self, on_line: Callable[[bytes], None], on_closed: Callable[[str], None]
    ) -> None:
        """Read commands line by line until stdin closes (then stop: the parent is gone)."""
        import gevent.os

        gevent.os.make_nonblocking(0)
        buffer, self._pending = self._pending, b""
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    on_line(line)
            if len(buffer) > _MAX_COMMAND_BYTES:
                logger.error("dropping %d bytes on stdin without a line break", len(buffer))
                buffer = b""
            try:
                data = gevent.os.nb_read(0, 65536)
            except OSError:
                data = b""
            if not data:
                on_closed("stdin_closed")
                return
            buffer += data


class Worker:
    """One worker's life: start at t0, tick every second, stop for one of five reasons."""

    def __init__(self, plan: LoadPlan, link: Link) -> None:
        from resilience.load.collector import Collector
        from resilience.load.runtime import Clock

        self.plan = plan
        self.output = link
        self.clock = Clock(plan.t0)
        seed = None if plan.seed is None else plan.seed * 1000 + plan.worker
        self.rng = random.Random(seed)
        self.collector = Collector(
            worker=plan.worker,
            emit=link.emit,
            slow_threshold=plan.slow_threshold,
            trace_sample=plan.trace_sample,
            trace_cap=plan.trace_cap,
            rng=random.Random(self.rng.getrandbits(64)),
            track_phases=plan.phase_marks,
        )
        self.reason = ""
        self.message = ""
        self.shape: StageShape | None = None
        self.scheduler: OpenScheduler | None = None
        self.workload: Workload | None = None
        self._held: list[Command] = []
        import gevent.event

        self._wake = gevent.event.Event()

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            logger.info("stopping: %s", reason)
        self._wake.set()

    def run(self) -> int:
        import gevent

        gevent.signal_handler(signal.SIGTERM, self.stop, "sigterm")
        self.output.listen(self._on_command_line, self.stop)

        plan = self.plan
        wait = -self.clock.now()
        if wait > 0:
            logger.info("waiting %.2fs for t0", wait)
            self._wait(wait)
        if self.reason:
            return self._finish(users=0)
        self.collector.start(self.clock.now())
        logger.info(
            "worker %d/%d: %s model, %.0fs against %s",
            plan.worker,
            plan.workers,
            plan.model,
            plan.duration,
            plan.target,
        )
        if plan.model == "open":
            return self._run_open()
        return self._run_closed()

    # -- the two models ---------------------------------------------------------------

    def _run_closed(self) -> int:
        from locust.env import Environment

        from resilience.load import runtime

        plan = self.plan
        shape = runtime.StageShape(plan, self.clock, hold_at_end=not plan.locustfile)
        self.shape = shape
        self._apply_held()
        if plan.locustfile:
            classes = runtime.load_user_classes(plan)
            env = Environment(
                user_classes=classes,
                shape_class=shape,
                host=plan.target,
                stop_timeout=plan.client_timeout + 1.0,
            )
            listener = runtime.locust_request_listener(plan, self.clock, self.collector)
            env.events.request.add_listener(listener)
            floor_lag = plan.client_timeout + 1.0
        else:
            workload = runtime.Workload(plan, self.clock, self.collector)
            self.workload = workload
            workload.on_refused = self._refused
            workload.run_setup(stopped=lambda: bool(self.reason))
            user = runtime.workload_user_class(workload, random.Random(self.rng.getrandbits(64)))
            env = Environment(
                user_classes=[user],
                shape_class=shape,
                host=plan.target,
                stop_timeout=plan.client_timeout + 1.0,
            )
            floor_lag = 0.0
        shape.runner = runner = env.create_local_runner()
        runner.start_shape()
        try:
            while not self.reason:
                now = self._tick_wait()
                users = runner.user_count
                self.collector.tick(now, users=users, send_floor=now - floor_lag)
                self.output.flush()
                if self._over(now, drained=users == 0 and self.collector.in_flight <= 0):
                    self.stop("end")
                self._check_parent()
        finally:
            env.stop_timeout = 0.0  # from here on, stop users at once
            runner.quit()
        return self._finish(users=0)

    def _run_open(self) -> int:
        import gevent

        from resilience.load import runtime

        plan = self.plan
        workload = runtime.Workload(plan, self.clock, self.collector)
        self.workload = workload
        workload.on_refused = self._refused
        workload.run_setup(stopped=lambda: bool(self.reason))
        scheduler = runtime.OpenScheduler(workload, random.Random(self.rng.getrandbits(64)))
        self.scheduler = scheduler
        self._apply_held()
        greenlet = gevent.spawn(scheduler.run)
        try:
            while not self.reason:
                now = self._tick_wait()
                floor = min(now, scheduler.next_t) if not scheduler.done else now
                self.collector.tick(now, users=0, send_floor=floor)
                self.output.flush()
                if self._over(now, drained=scheduler.done and self.collector.in_flight <= 0):
                    self.stop("end")
                self._check_parent()
        finally:
            scheduler.kill()
            greenlet.kill(block=True, timeout=2.0)
        return self._finish(users=0)

    # -- plumbing ---------------------------------------------------------------------

    def _refused(self, message: str) -> None:
        """A captured URL led off the target's host: stop, and say why (exit 2)."""
        self.message = message
        self.stop(REFUSED)

    def _over(self, now: float, *, drained: bool) -> bool:
        """The plan has ended and everything sent was answered, or the drain time is up."""
        plan = self.plan
        if now >= plan.duration and drained:
            return True
        return now >= plan.duration + plan.client_timeout + _DRAIN_GRACE_S

    def _wait(self, seconds: float) -> None:
        self._wake.wait(timeout=max(0.0, seconds))

    def _tick_wait(self) -> float:
        """Sleep to just past the next second boundary (or until woken); return now."""
        now = self.clock.now()
        self._wait(math.floor(now) + 1.0 + 0.01 - now)
        return self.clock.now()

    def _check_parent(self) -> None:
        reason = self.output.gone()
        if reason:
            self.stop(reason)

    # -- commands ---------------------------------------------------------------------

    def _on_command_line(self, line: bytes) -> None:
        try:
            command = decode_command(line)
        except LoadError as exc:
            logger.error("%s", exc)
            self.output.emit(
                CommandAck(self.plan.worker, "invalid", self.clock.now(), ok=False, detail=str(exc))
            )
            return
        if isinstance(command, PhaseMarks):
            # For the recording, not the load: applied at once, and not acknowledged.
            self.collector.set_marks(command.marks, command.upto)
            return
        if self.shape is None and self.scheduler is None:
            self._held.append(command)  # before t0: applied when the load starts
            return
        self._apply(command)

    def _apply_held(self) -> None:
        held, self._held = self._held, []
        for command in held:
            self._apply(command)

    def _apply(self, command: Command) -> None:
        """Change the running load; answer with a CommandAck either way."""
        from resilience.load.schedule import split_evenly

        plan = self.plan
        now = self.clock.now()
        ok, detail = False, ""
        if isinstance(command, SetUsers):
            if self.shape is None:
                detail = "set_users needs the closed model (users); this load is open (rps)"
            else:
                share = split_evenly(command.users, plan.workers, plan.worker)
                rate = command.spawn_rate / plan.workers
                self.shape.set_target(share, rate)
                ok, detail = True, f"users={share} spawn_rate={rate:g}"
        elif isinstance(command, SetRate):
            if self.scheduler is None:
                detail = "set_rate needs the open model (arrival rate); this load is closed"
            else:
                self.scheduler.set_rate(command.rps, now)
                ok, detail = True, f"rps={command.rps / plan.workers:g}"
        log = logger.info if ok else logger.warning
        log("command %s: %s", command_type(command), detail)
        self.output.emit(CommandAck(plan.worker, command_type(command), now, ok=ok, detail=detail))

    def _finish(self, *, users: int) -> int:
        now = self.clock.now()
        last = min(math.ceil(self.plan.duration) - 1, math.floor(now))
        self.collector.finish(now, users=users, last_second=max(last, 0))
        collector = self.collector
        workload = self.workload
        self.output.emit(
            WorkerExit(
                worker=self.plan.worker,
                reason=self.reason or "end",
                requests=collector.requests,
                dropped_traces=collector.dropped_traces,
                abandoned=collector.abandoned,
                late=collector.late,
                setup_failed=workload.on_start_failed if workload is not None else 0,
                setup_errors=tuple(workload.on_start_errors) if workload is not None else (),
                capture_missed=workload.capture_missed if workload is not None else 0,
                capture_errors=tuple(workload.capture_errors) if workload is not None else (),
                message=self.message,
            )
        )
        self.output.flush()
        logger.info(
            "worker %d done (%s): %d requests, %d trace ids dropped, %d abandoned",
            self.plan.worker,
            self.reason or "end",
            collector.requests,
            collector.dropped_traces,
            collector.abandoned,
        )
        return 0


def _read_line(fd: int) -> tuple[bytes, bytes]:
    """The first line on ``fd`` and whatever arrived after it (read unbuffered: the rest
    belongs to the command reader, which reads the same descriptor)."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def _read_plan(path: str | None) -> tuple[LoadPlan, bytes]:
    from resilience.load.plan import LoadPlan

    if path:
        return LoadPlan.from_json(Path(path).read_text(encoding="utf-8")), b""
    line, rest = _read_line(0)
    if not line.strip():
        raise LoadError("stdin closed before a load plan arrived")
    return LoadPlan.from_json(line), rest


PARENT_ENV = "RESILIENCE_LOAD_PARENT"
"""Set by the engine to its pid when workers must die with it (parent-death signal)."""
_PR_SET_PDEATHSIG = 1


def die_with_parent(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``prctl``).

    Only when the engine set ``RESILIENCE_LOAD_PARENT`` (it does when it spawns from the
    main thread: the signal follows the *thread* that forked). If the parent died before
    the call, ``getppid()`` already differs from the recorded pid: exit at once. Returns
    whether the signal is armed."""
    wanted = environ.get(PARENT_ENV, "")
    if not wanted.isdigit():
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != int(wanted):
        os._exit(3)  # the parent is already gone: nothing to report to
    return bool(armed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.load.worker")
    parser.add_argument("--plan", help="read the plan from this file instead of stdin")
    parser.add_argument(
        "--master",
        metavar="HOST:PORT",
        help="join a distributed run's master instead of reading a plan (resilience worker)",
    )
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--record", help="also append every event sent to this file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.master is None:
        die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    # Every line of the log is masked: by the rules until the plan brings the literal
    # values. What bypasses logging (a traceback gevent prints) is masked by the parent,
    # which rewrites the log once the worker has exited.
    redacting = RedactingFilter(Redactor())
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
    # Locust patches the process on import; from here on everything is gevent. What a run
    # needs is imported before the worker says it is ready, so t0 may follow at once. The
    # garbage collector waits for the imports (they make objects, not garbage; collecting
    # among them was about a tenth of their time) and then leaves what they made alone.
    gc.disable()
    import locust  # noqa: F401

    import resilience.load.collector
    import resilience.load.plan
    import resilience.load.runtime  # noqa: F401

    gc.freeze()
    gc.enable()

    if args.master is not None:
        return _main_remote(args.master, args.connect_timeout, args.record, redacting)
    output = PipeLink(sys.stdout.fileno())
    worker_index = -1
    try:
        output.emit(WorkerReady(worker=-1, pid=os.getpid()))
        output.flush()
        plan, pending = _read_plan(args.plan)
        redacting.redactor = Redactor(plan.secrets)
        worker_index = plan.worker
        return Worker(plan, PipeLink(sys.stdout.fileno(), pending)).run()
    except LoadError as exc:
        logger.error("%s", exc)
        _report_error(output, worker_index, str(exc))
        return 2
    except Exception as exc:
        logger.exception("load worker failed")
        _report_error(output, worker_index, f"{type(exc).__name__}: {exc}")
        return 1


def _main_remote(
    address: str, connect_timeout: float, record: str | None, redacting: RedactingFilter
) -> int:
    """A worker of a distributed run on another machine (``resilience worker``): SIGINT and
    SIGTERM stop its load (what it recorded still reaches the run), the master's address
    comes from the command line, the rest from the master."""
    import gevent

    from resilience.load.distributed import parse_address
    from resilience.load.remote import LocustLink, run_remote

    host, port = parse_address(address, default_port=5557, option="--master")
    current: list[Worker] = []

    def on_signal(name: str) -> None:
        if current:
            current[0].stop(name)
        else:
            raise SystemExit(130)

    gevent.signal_handler(signal.SIGINT, on_signal, "sigint")
    gevent.signal_handler(signal.SIGTERM, on_signal, "sigterm")

    def run_worker(plan: LoadPlan, link: LocustLink) -> int:
        redacting.redactor = Redactor(plan.secrets)
        worker = Worker(plan, link)
        current.append(worker)
        try:
            code = worker.run()
            # The run's host went silent: what this worker measured may never have arrived.
            return 3 if worker.reason == "master_gone" else code
        except LoadError as exc:
            logger.error("%s", exc)
            _report_error(link, plan.worker, str(exc))
            return 2
        except Exception as exc:
            logger.exception("load worker failed")
            _report_error(link, plan.worker, f"{type(exc).__name__}: {exc}")
            return 1

    return run_remote(
        host,
        port,
        connect_timeout=connect_timeout,
        record=Path(record) if record else None,
        run_worker=run_worker,
    )


def _report_error(output: Link, worker: int, message: str) -> None:
    try:
        output.emit(WorkerExit(worker=worker, reason="error", message=message[:2000]))
        output.flush()
    except OSError:
        pass  # the parent is gone; the log has the error


def _entry() -> NoReturn:
    raise SystemExit(main())


if __name__ == "__main__":
    _entry()
