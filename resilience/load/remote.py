"""A load worker that joins a distributed run: ``resilience worker --master HOST[:PORT]``.

It connects to the run's master as a Locust worker (``Environment.create_worker_runner``:
Locust's ZeroMQ transport, its connection retries and heartbeats), answers the master's
clock pings, waits for its plan and then runs exactly what a local worker runs
(``resilience.load.worker.Worker``: the same users, scheduler and recording) with a
``LocustLink`` instead of pipes: its events travel to the master as custom messages (one
batch a second), commands (users, arrival rate, phase marks) come back the same way. The
Locust runner carries no users of its own: the load runs in a second Locust environment,
as in a local worker.

It stops at the plan's end, when the master says stop, or when the master has been silent
for ``MASTER_SILENT_S`` seconds (the run's host is gone: a worker never loads a target on
its own). One run per process: it exits when the run is over (start it again for the
next). Importing this module imports Locust (gevent): only worker processes do.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import gevent
import gevent.event
import locust.runners
from locust.env import Environment
from locust.rpc import Message
from locust.runners import WorkerRunner

from resilience.errors import LoadError
from resilience.load.distributed import BYE, COMMAND, EVENTS, PING, PLAN, PONG, REFUSE, STOP
from resilience.load.plan import LoadPlan
from resilience.load.samples import LoadEvent, encode_event

logger = logging.getLogger("resilience.load.remote")

MASTER_SILENT_S = 5.0
"""No heartbeat answer from the master for this long: the run's host is gone, stop."""
BYE_WAIT_S = 5.0
"""After its last events, how long a worker waits for the master to confirm them."""


class LocustLink:
    """The link of a worker to its master over Locust's messaging (see ``worker.Link``)."""

    def __init__(self, runner: WorkerRunner, record: TextIO | None = None) -> None:
        self.runner = runner
        self._record = record
        self._lines: list[str] = []
        self._on_line: Callable[[bytes], None] | None = None
        self._on_closed: Callable[[str], None] | None = None
        self._early: list[bytes] = []
        self._connected_at = time.time()
        self.plan: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.bye = gevent.event.Event()
        self.refused = ""
        self.lost_master = False
        runner.register_message(PLAN, self._plan)
        runner.register_message(COMMAND, self._command)
        runner.register_message(PING, self._ping)
        runner.register_message(STOP, self._stop)
        runner.register_message(BYE, self._bye)
        runner.register_message(REFUSE, self._refuse)

    # -- Link -------------------------------------------------------------------------

    def emit(self, event: LoadEvent) -> None:
        self._lines.append(encode_event(event))

    def flush(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines)
        self._lines = []
        if self._record is not None:
            self._record.write(text + "\n")
            self._record.flush()
        try:
            self.runner.send_message(EVENTS, {"lines": text})
        except Exception as exc:  # Locust raises RPCError after its own retries
            logger.error("could not send events to the master: %s", exc)

    def listen(self, on_line: Callable[[bytes], None], on_closed: Callable[[str], None]) -> None:
        self._on_line, self._on_closed = on_line, on_closed
        early, self._early = self._early, []
        for line in early:
            on_line(line)

    def gone(self) -> str | None:
        last = self.runner.last_heartbeat_timestamp or self._connected_at
        if time.time() - last > MASTER_SILENT_S:
            return "master_gone"
        return None

    # -- messages from the master (run inside Locust's receive loop: keep them short) ----

    def _plan(self, environment: Environment, msg: Message, **_: object) -> None:
        self.plan.set(str((msg.data or {}).get("plan", "")) or None)

    def _command(self, environment: Environment, msg: Message, **_: object) -> None:
        line = str((msg.data or {}).get("line", "")).encode()
        if self._on_line is None:
            self._early.append(line)
        else:
            self._on_line(line)

    def _ping(self, environment: Environment, msg: Message, **_: object) -> None:
        data = dict(msg.data or {})
        self.runner.send_message(
            PONG,
            {
                "t": data.get("t"),
                "w": time.time(),
                "pid": os.getpid(),
                "host": socket.gethostname(),
            },
        )

    def _stop(self, environment: Environment, msg: Message, **_: object) -> None:
        if self._on_closed is not None:
            self._on_closed("stopped")
        elif not self.plan.ready():
            self.refused = "the run stopped before it started"
            self.plan.set(None)

    def _bye(self, environment: Environment, msg: Message, **_: object) -> None:
        self.bye.set()

    def _refuse(self, environment: Environment, msg: Message, **_: object) -> None:
        self.refused = str((msg.data or {}).get("why") or "the run does not need this worker")
        if not self.plan.ready():
            self.plan.set(None)

    # -- life ---------------------------------------------------------------------------

    def wait_plan(self) -> LoadPlan | None:
        """This worker's plan, once the master sends it; None when the master refused this
        worker (``refused`` says why) or went silent first (``lost_master``)."""
        while not self.plan.ready():
            self.plan.wait(timeout=1.0)
            if not self.plan.ready() and self.gone():
                self.lost_master = True
                return None
        text = self.plan.get()
        return None if text is None else LoadPlan.from_json(str(text))

    def leave(self) -> None:
        """After the last events: wait (bounded) for the master's bye, then say goodbye to
        Locust's master too so it forgets this worker at once."""
        self.bye.wait(timeout=BYE_WAIT_S)
        try:
            self.runner.client.send(Message("quit", None, self.runner.client_id))
        except Exception as exc:  # the master may be gone already
            logger.debug("quit message not sent: %s", exc)
        gevent.sleep(0.1)  # let ZeroMQ hand the last message over
        self.runner.quit()


def run_remote(
    host: str,
    port: int,
    *,
    connect_timeout: float = 300.0,
    record: Path | None = None,
    run_worker: Callable[[LoadPlan, LocustLink], int],
) -> int:
    """Join the master at ``host``:``port``, run its plan with ``run_worker``, leave.

    Exit codes: 0 after a run (or when refused: the run had its workers), 3 when no
    master answered within ``connect_timeout`` or it went away before the run started.
    """
    # Locust retries a connection every CONNECT_TIMEOUT (5) s, CONNECT_RETRY_COUNT times.
    locust.runners.CONNECT_RETRY_COUNT = max(
        0, math.ceil(connect_timeout / locust.runners.CONNECT_TIMEOUT) - 1
    )
    env = Environment(user_classes=[])
    logger.info("connecting to the master at %s:%d", host, port)
    try:
        runner = env.create_worker_runner(master_host=host, master_port=port)
    except (ConnectionError, OSError) as exc:
        logger.error(
            "no master answered at %s:%d within %.0f s (%s)", host, port, connect_timeout, exc
        )
        return 3
    handle: TextIO | None = None
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        handle = record.open("a", encoding="utf-8")
    try:
        link = LocustLink(runner, handle)
        logger.info("joined as %s; waiting for the run to start", runner.client_id)
        plan = link.wait_plan()
        if plan is None:
            if link.lost_master:
                logger.error("the master went silent before the run started")
            else:
                logger.warning("not running: %s", link.refused)
            runner.quit()
            return 3 if link.lost_master else 0
        plan = _local_locustfile(plan)
        logger.info("worker %d of %d, t0 %.3f on this clock", plan.worker, plan.workers, plan.t0)
        code = run_worker(plan, link)
        link.leave()
        return code
    finally:
        if handle is not None:
            handle.close()


def _local_locustfile(plan: LoadPlan) -> LoadPlan:
    """A plan whose locustfile travelled with it: written here, its path replaced."""
    if plan.locustfile_text is None or plan.locustfile is None:
        return plan
    folder = Path(tempfile.mkdtemp(prefix="resilience-locustfile-"))
    path = folder / Path(plan.locustfile).name
    try:
        path.write_text(plan.locustfile_text, encoding="utf-8")
    except OSError as exc:
        raise LoadError(f"cannot write the run's locustfile to {path}: {exc}") from exc
    return plan.model_copy(update={"locustfile": str(path)})
