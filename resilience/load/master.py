"""The master of a distributed run: ``python -m resilience.load.master`` (started by the engine).

A child of the run, like a local worker (importing Locust patches a process with gevent, so
the orchestrator cannot be the master itself). It binds Locust's master runner
(``Environment.create_master_runner``; ZeroMQ, heartbeats, worker indexes) on the address
it is given — loopback unless the user named an interface — and talks to the run through
its stdin and stdout, exactly like a local worker:

- stdout, JSON lines (``resilience.load.samples``): ``MasterReady`` once it listens, a
  ``RemoteWorker`` for each worker that joined (its clock offset measured by a few pings)
  and for each it assigned or refused, then every event the workers send, relayed
  unchanged (they already carry their worker index), and a ``WorkerExit`` with reason
  ``lost`` for a worker that stopped answering (Locust's heartbeat: about 4 s) or ended
  early without being asked to: its load is missing from then on.
- stdin: the plan (one line), then commands (``resilience.load.commands``), each sent to
  every assigned worker. When the plan arrives the first ``--workers`` workers that joined
  get it with their index and t0 shifted onto their own clock; later ones are refused.

It ends when every assigned worker has ended or been lost, or on SIGTERM / stdin's end:
then it tells the workers to stop, relays what they flush (for up to ``STOP_WAIT_S``),
and quits. It never decides anything about the load: no shape, no dispatch — each
worker runs its share of the plan, as a local worker does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.os
from locust.env import Environment
from locust.rpc import Message
from locust.runners import STATE_MISSING, MasterRunner

from resilience.errors import LoadError
from resilience.load.distributed import (
    BYE,
    COMMAND,
    EVENTS,
    PING,
    PLAN,
    PONG,
    REFUSE,
    STOP,
    format_address,
)
from resilience.load.plan import LoadPlan
from resilience.load.samples import REFUSED, MasterReady, RemoteWorker, WorkerExit
from resilience.load.worker import PipeLink, die_with_parent

logger = logging.getLogger("resilience.load.master")

PINGS = 5
"""Round trips per worker to measure its clock; the one with the shortest trip counts."""
PING_TIMEOUT_S = 2.0
WATCH_EVERY_S = 0.25
STOP_WAIT_S = 3.0
"""After a stop: how long the workers get to flush what they recorded."""
_MAX_LINE = 64 * 1024 * 1024


@dataclass
class _Remote:
    client: str
    order: int
    host: str = "?"
    pid: int = 0
    offset: float | None = None
    rtt: float | None = None
    index: int | None = None
    ended: bool = False
    last_heard: float = field(default_factory=time.time)
    pong: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)

    def event(self, state: str, joined: int = 0) -> RemoteWorker:
        return RemoteWorker(
            worker=-1 if self.index is None else self.index,
            client=self.client,
            host=self.host,
            pid=self.pid,
            state=state,
            offset=round(self.offset or 0.0, 6),
            rtt=round(self.rtt or 0.0, 6),
            joined=joined,
        )


class Relay:
    """Joins workers, hands out the plan, relays events and commands, notices losses."""

    def __init__(self, master: MasterRunner, expected: int, out: PipeLink) -> None:
        self.master = master
        self.expected = expected
        self.out = out
        self.remotes: dict[str, _Remote] = {}
        self.assigned: list[_Remote] = []
        self.plan: LoadPlan | None = None
        self.stopping = False
        self.done = gevent.event.Event()
        master.register_message(EVENTS, self._on_events)
        master.register_message(PONG, self._on_pong)
        master.environment.events.worker_connect.add_listener(self._on_connect)

    # -- joining ----------------------------------------------------------------------

    def _on_connect(self, client_id: str, **_: object) -> None:
        if client_id in self.remotes:
            return  # Locust re-registers a worker after a reconnect: same worker
        remote = _Remote(client=client_id, order=len(self.remotes))
        self.remotes[client_id] = remote
        if self.plan is not None or self.stopping:
            self._refuse(remote, "the run has started with its workers")
            return
        gevent.spawn(self._measure, remote)

    def _measure(self, remote: _Remote) -> None:
        """A few pings; the offset of the shortest round trip (NTP's rule of thumb)."""
        best: tuple[float, float] | None = None
        for _ in range(PINGS):
            remote.pong = gevent.event.AsyncResult()
            sent = time.time()
            self.master.send_message(PING, {"t": sent}, client_id=remote.client)
            try:
                data = remote.pong.get(timeout=PING_TIMEOUT_S)
            except gevent.Timeout:
                continue
            back = time.time()
            rtt = back - sent
            offset = float(data["w"]) - (sent + rtt / 2)
            remote.host = str(data.get("host") or "?")
            remote.pid = int(data.get("pid") or 0)
            if best is None or rtt < best[0]:
                best = (rtt, offset)
        if best is None:
            logger.warning("worker %s never answered a ping; not used", remote.client)
            return
        remote.rtt, remote.offset = best
        joined = sum(1 for r in self.remotes.values() if r.offset is not None)
        logger.info(
            "worker %s (%s, pid %d) joined: clock offset %+.1f ms, round trip %.1f ms (%d/%d)",
            remote.client,
            remote.host,
            remote.pid,
            remote.offset * 1000,
            remote.rtt * 1000,
            joined,
            self.expected,
        )
        if self.plan is not None:
            self._refuse(remote, "the run has started with its workers")
            return
        self.out.emit(remote.event("joined", joined))
        self.out.flush()

    def _on_pong(self, environment: Environment, msg: Message, **_: object) -> None:
        remote = self.remotes.get(msg.node_id)
        if remote is not None and not remote.pong.ready():
            remote.pong.set(msg.data)

    def _alive(self, remote: _Remote) -> bool:
        client = self.master.clients.get(remote.client)
        return client is not None and client.state != STATE_MISSING

    def _refuse(self, remote: _Remote, why: str) -> None:
        self.master.send_message(REFUSE, {"why": why}, client_id=remote.client)
        self.out.emit(remote.event("refused"))
        self.out.flush()

    # -- the run --------------------------------------------------------------------------

    def start(self, line: bytes) -> None:
        """The plan arrived: the first ``expected`` joined workers get their share."""
        plan = LoadPlan.from_json(line)
        self.plan = plan
        ready = sorted(
            (r for r in self.remotes.values() if r.offset is not None and self._alive(r)),
            key=lambda r: r.order,
        )
        if len(ready) < self.expected:
            raise LoadError(
                f"only {len(ready)} of {self.expected} load workers are connected at the start"
            )
        chosen, extra = ready[: self.expected], ready[self.expected :]
        for index, remote in enumerate(chosen):
            remote.index = index
            share = plan.model_copy(
                update={
                    "worker": index,
                    "workers": self.expected,
                    "t0": plan.t0 + (remote.offset or 0.0),
                }
            )
            self.master.send_message(PLAN, {"plan": share.to_json()}, client_id=remote.client)
            self.assigned.append(remote)
            self.out.emit(remote.event("assigned"))
        for remote in extra:
            self._refuse(remote, f"the run has its {self.expected} workers")
        self.out.flush()
        logger.info("plan sent to %d workers", len(chosen))
        gevent.spawn(self._watch)

    def command(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        for remote in self.assigned:
            if not remote.ended:
                self.master.send_message(COMMAND, {"line": text}, client_id=remote.client)

    def _on_events(self, environment: Environment, msg: Message, **_: object) -> None:
        remote = self.remotes.get(msg.node_id)
        if remote is None or remote.index is None:
            return  # not a worker of this run: nothing it says is recorded
        remote.last_heard = time.time()
        lines = str((msg.data or {}).get("lines", "")).split("\n")
        for i, line in enumerate(lines):
            if '"type":"exit"' in line:
                lines[i] = self._on_exit(remote, line)
        self.out.write("\n".join(line for line in lines if line))

    def _on_exit(self, remote: _Remote, line: str) -> str:
        """A worker's own exit event: passed on, as ``lost`` when it ended early unasked."""
        remote.ended = True
        self.master.send_message(BYE, None, client_id=remote.client)
        try:
            body = json.loads(line)
        except ValueError:
            return line
        reason = body.get("reason")
        if reason not in ("end", "error", REFUSED) and not self.stopping:
            body["reason"] = "lost"
            body["message"] = f"the worker on {remote.host} stopped early ({reason})"
            body["at"] = self._experiment_time(remote.last_heard)
            return json.dumps(body, separators=(",", ":"))
        return line

    def _experiment_time(self, wall: float) -> float | None:
        """``wall`` on the experiment clock (never before t0: a worker lost before it sent
        anything was last heard at the start)."""
        return None if self.plan is None else round(max(0.0, wall - self.plan.t0), 3)

    def _watch(self) -> None:
        """Notice lost workers; end when every assigned worker has ended or is lost."""
        while not self.done.is_set():
            for remote in self.assigned:
                if remote.ended or self._alive(remote):
                    continue
                remote.ended = True
                silent = time.time() - remote.last_heard
                self.out.emit(
                    WorkerExit(
                        worker=remote.index if remote.index is not None else -1,
                        reason="lost",
                        at=self._experiment_time(remote.last_heard),
                        message=f"the worker on {remote.host} (pid {remote.pid}) stopped "
                        f"answering: nothing heard for {silent:.1f} s",
                    )
                )
                self.out.flush()
                logger.warning("worker %d (%s) lost", remote.index, remote.client)
            if all(r.ended for r in self.assigned):
                self.finish()
                return
            gevent.sleep(WATCH_EVERY_S)

    def stop(self) -> None:
        """Stop the workers (the run ends early): they flush, then the master quits."""
        if self.stopping:
            return
        self.stopping = True
        for remote in self.assigned:
            if not remote.ended:
                self.master.send_message(STOP, None, client_id=remote.client)
        for remote in self.remotes.values():
            if remote.index is None:
                self.master.send_message(
                    REFUSE, {"why": "the run is over"}, client_id=remote.client
                )
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and not all(r.ended for r in self.assigned):
            gevent.sleep(0.05)
        self.finish()

    def finish(self) -> None:
        if not self.done.is_set():
            self.done.set()


def _read_stdin(relay: Relay) -> None:
    """The plan, then commands; stdin's end stops the run (the parent is gone)."""
    gevent.os.make_nonblocking(0)
    buffer = b""
    while not relay.done.is_set():
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            if relay.plan is None:
                try:
                    relay.start(line)
                except LoadError as exc:
                    logger.error("%s", exc)
                    relay.out.emit(WorkerExit(worker=-1, reason="error", message=str(exc)))
                    relay.out.flush()
                    relay.stop()
                    return
            else:
                relay.command(line)
        if len(buffer) > _MAX_LINE:
            logger.error("dropping %d bytes on stdin without a line break", len(buffer))
            buffer = b""
        try:
            data = gevent.os.nb_read(0, 1 << 20)
        except OSError:
            data = b""
        if not data:
            relay.stop()
            return
        buffer += data


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m resilience.load.master")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    out = PipeLink(sys.stdout.fileno())
    env = Environment(user_classes=[])
    try:
        master = env.create_master_runner(master_bind_host=args.bind, master_bind_port=args.port)
    except SystemExit:  # Locust exits when the port is taken; it logged why
        message = f"cannot listen on {format_address(args.bind, args.port)}: the port is in use"
        out.emit(WorkerExit(worker=-1, reason="error", message=message))
        out.flush()
        return 3
    except Exception as exc:
        message = f"cannot listen on {format_address(args.bind, args.port)}: {exc}"
        out.emit(WorkerExit(worker=-1, reason="error", message=message))
        out.flush()
        return 3
    relay = Relay(master, args.workers, out)
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(relay.stop))
    address = format_address(args.bind, master.server.port)
    logger.info("master listening on %s for %d workers", address, args.workers)
    out.emit(MasterReady(address=address, pid=os.getpid()))
    out.flush()
    gevent.spawn(_read_stdin, relay)
    relay.done.wait()
    master.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
