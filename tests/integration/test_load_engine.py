"""The load engine against a real local HTTP server: counts, trace ids, stalls, stopping.

The server is a small asyncio HTTP/1.1 server (keep-alive, Content-Length bodies) running
in a thread of the test process on a port in 8500-8599. It counts what it receives, keeps
every traceparent, and can be told to fail (``/fail`` answers 500), to be slow (``/slow``
answers after 3 s) or to stall everything for a while (requests that arrive during a stall
window are answered when it ends).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience import histogram as hist
from resilience.analysis.omission import estimate_omission
from resilience.errors import LoadError
from resilience.experiment.loader import parse_experiment
from resilience.load import (
    ArrivalStage,
    LoadEngine,
    LoadPlan,
    LoadRecorder,
    RequestPlan,
    Stage,
    WorkerExit,
)
from resilience.load.schedule import intended_times, planned_requests
from resilience.rundir.load import LoadData
from resilience.vocabulary import Phase

pytestmark = pytest.mark.integration

PORTS = range(8510, 8540)
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
STALL_EXPERIMENT = """
name: stall
load:
  {shape}
  workload:
    requests:
      - {{name: GET /x, path: /x}}
"""
STALL_PHASES = [Phase("baseline", 1.0, 3.0), Phase("fault", 3.0, 6.0), Phase("recovery", 6.0, 10.0)]


class Server:
    """What the server saw; behaviours are chosen by path."""

    def __init__(self) -> None:
        self.port = 0
        self.seen: Counter[str] = Counter()
        self.traceparents: list[str | None] = []
        self.failed_traceparents: list[str | None] = []
        self.headers: dict[str, list[dict[str, str]]] = {}
        """Each request's headers (names lower-cased), by its first path segment."""
        self.created_ids: list[int] = []
        self.stall_window: tuple[float, float] = (0.0, 0.0)
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        self.seen.clear()
        self.traceparents.clear()
        self.failed_traceparents.clear()
        self.headers.clear()
        self.created_ids.clear()
        self.stall_window = (0.0, 0.0)

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if target.startswith("/trickle"):
                    await self._trickle(writer)
                    continue
                if target.startswith("/cut"):
                    self.seen["GET /cut"] += 1
                    # Promise 1 MB, send 200 kB, hang up: the body breaks off after the
                    # head and the first reads were whole.
                    writer.write(b"HTTP/1.1 200 X\r\nContent-Length: 1000000\r\n\r\n")
                    writer.write(b"x" * 200_000)
                    await writer.drain()
                    return
                status, body = await self._respond(method, target.split("?")[0], headers)
                payload = json.dumps(body).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        """An answer whose body comes a byte every 0.2 s for 3 s: no socket read waits long
        enough to time out, only the client's deadline for the whole request can end it."""
        self.seen["GET /trickle"] += 1
        writer.write(b"HTTP/1.1 200 X\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n")
        for _ in range(15):
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(b"x")
        await writer.drain()

    async def _respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, object]:
        parts = path.strip("/").split("/")
        self.seen[f"{method} /{parts[0]}"] += 1
        self.headers.setdefault(parts[0], []).append(headers)
        traceparent = headers.get("traceparent")
        self.traceparents.append(traceparent)
        start, end = self.stall_window
        now = time.time()
        if start <= now < end:
            await asyncio.sleep(end - now)
        if parts[0] == "slow":
            await asyncio.sleep(3.0)
        if parts[0] == "fail":
            self.failed_traceparents.append(traceparent)
            return 500, {"error": "told to fail"}
        if method == "POST" and parts[0] == "orders":
            self._next_id += 1
            self.created_ids.append(self._next_id)
            return 201, {"id": self._next_id}
        return 200, {"ok": True}

    def start(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            server = None
            for port in PORTS:
                try:
                    server = loop.run_until_complete(
                        asyncio.start_server(self._handle, "127.0.0.1", port, backlog=1024)
                    )
                except OSError as exc:
                    errors.append(exc)
                    continue
                self.port = port
                break
            ready.set()
            if server is None:
                loop.close()
                return
            try:
                loop.run_forever()
            finally:
                server.close()
                for _ in range(3):  # handlers of connections accepted while closing, too
                    handlers = asyncio.all_tasks(loop)
                    for handler in handlers:
                        handler.cancel()
                    if handlers:
                        loop.run_until_complete(asyncio.gather(*handlers, return_exceptions=True))
                    # let the transports' close callbacks run before the loop goes
                    loop.run_until_complete(asyncio.sleep(0.05))
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="load-test-server", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the test server did not start"
        assert self.port, f"no free port in {PORTS}: {errors[-1:]}"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, server: Server, tmp_path: Path) -> None:
    monkeypatch.setenv("RESILIENCE_PORT_OFFSET", "500")
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    server.reset()


def run_to_end(
    plan: LoadPlan, run_dir: Path, *, workers: int, lead: float = 0.5
) -> tuple[LoadData, dict[int, WorkerExit], float]:
    """Run a plan to its end as the orchestrator would; returns data, exits, seconds taken."""
    with LoadEngine(plan, workers=workers, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        t0 = time.time() + lead
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=workers, endpoints=plan.endpoints())
        deadline = time.monotonic() + lead + plan.duration + plan.client_timeout + 20
        while engine.running and time.monotonic() < deadline:
            recorder.consume(engine.poll(0.5))
        recorder.consume(engine.poll(0))
        finished = time.time() - t0
        still_running = engine.running
        recorder.close()
    assert not still_running, "the workers did not stop by themselves"
    return LoadData.read(run_dir), recorder.exits, finished


def traced_ids(values: list[str | None]) -> list[str]:
    ids = []
    for value in values:
        match = TRACEPARENT.match(value or "")
        assert match, f"malformed or missing traceparent: {value!r}"
        ids.append(match.group(1))
    return ids


def test_closed_model_counts_traces_and_writes_match_the_server(
    server: Server, tmp_path: Path
) -> None:
    """Two workers: per-second counts equal the server's, every request carried a
    well-formed traceparent, failed requests' trace ids are kept, acknowledged writes logged."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=4, users=6, spawn_rate=6)],
        requests=[
            RequestPlan(name="GET /items/{id}", path="/items/{int:1:9}", weight=4),
            RequestPlan(name="GET /fail", path="/fail", weight=1),
            RequestPlan(
                name="POST /orders",
                method="POST",
                path="/orders",
                json_body={"ref": "{uuid}", "quantity": "{int:1:3}"},
                expect=[201],
                capture={"order_id": "id"},
                write={"id_field": "id", "read_back": "/orders/{id}"},
            ),
            RequestPlan(name="GET /orders/{order_id}", path="/orders/{order_id}", weight=2),
        ],
        wait_min=0.02,
        wait_max=0.06,
        trace_sample=0.0,
    )
    data, exits, took = run_to_end(plan, tmp_path / "run", workers=2)

    assert {w: e.reason for w, e in exits.items()} == {0: "end", 1: "end"}
    assert all(e.returncode == 0 for e in exits.values())
    assert took < plan.duration + 5, f"workers took {took:.1f}s to finish a 4 s plan"

    assert data.total_requests() == server.total > 50
    assert data.total_requests("GET /items/{id}") == server.seen["GET /items"]
    assert data.total_requests("GET /fail") == server.seen["GET /fail"]
    assert data.total_requests("POST /orders") == server.seen["POST /orders"]
    assert data.total_requests("GET /orders/{order_id}") == server.seen["GET /orders"]
    for endpoint in data.endpoints:
        for second in data.seconds:
            counts = data.counts(endpoint, second)
            histogram = data.histogram(endpoint, second)
            total = histogram.total if histogram else 0
            assert total == sum(counts.values()), (endpoint, second)
    fail_counts = [data.counts("GET /fail", s).get("5xx", 0) for s in data.seconds]
    assert sum(fail_counts) == server.seen["GET /fail"] > 0

    ids = traced_ids(server.traceparents)
    assert len(set(ids)) == len(ids)
    failed = set(traced_ids(server.failed_traceparents))
    kept = {r.trace_id for r in data.traces if r.reason == "failed"}
    assert failed <= kept
    assert all(r.outcome == "5xx" and r.status == 500 for r in data.traces)
    assert sum(e.dropped_traces for e in exits.values()) == 0

    assert sorted(int(w.id) for w in data.writes) == server.created_ids
    assert all(w.status == 201 and w.endpoint == "POST /orders" for w in data.writes)


def test_open_model_measures_a_stall_from_the_intended_send_time(
    server: Server, tmp_path: Path
) -> None:
    """A server that stalls for 2 s shows ~2 s..0 s latencies for every request due during
    the stall (coordinated-omission free), not one slow request."""
    rate, duration = 40, 7.0
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        arrival=[ArrivalStage(duration=duration, rps=rate)],
        requests=[RequestPlan(name="GET /x", path="/x")],
    )
    lead = 1.0
    run_dir = tmp_path / "run"
    with LoadEngine(plan, workers=2, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        t0 = time.time() + lead
        server.stall_window = (t0 + 2.0, t0 + 4.0)
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=2)
        deadline = time.monotonic() + lead + duration + 25
        while engine.running and time.monotonic() < deadline:
            recorder.consume(engine.poll(0.5))
        recorder.consume(engine.poll(0))
        recorder.close()
    data = LoadData.read(run_dir)

    planned = sum(planned_requests(plan.arrival, w, 2) for w in range(2))
    assert data.total_requests() == planned == server.total == rate * duration
    per_second = {s: sum(data.counts(None, s).values()) for s in data.seconds}
    assert per_second[2] == per_second[3] == rate  # nothing skipped while the server stalled

    def share_at_least(second: int, seconds: float) -> float:
        h = data.histogram(None, second)
        assert h is not None
        above = int(h.counts[h.highest_values_us() >= seconds * 1_000_000].sum())
        return above / h.total

    # Due in [2, 3): they wait until 4, so 1..2 s; due in [3, 4): 0..1 s, median ~0.5 s.
    assert share_at_least(2, 0.9) == 1.0
    second_2 = data.histogram(None, 2)
    assert second_2 is not None and second_2.max_us == pytest.approx(2_000_000, rel=0.15)
    second_3 = data.histogram(None, 3)
    assert second_3 is not None
    assert 300 <= (second_3.percentiles_ms([50.0])[0] or 0) <= 800
    for quiet in (0, 1, 6):
        h = data.histogram(None, quiet)
        assert h is not None and (h.percentiles_ms([99.0])[0] or 0) < 500, quiet


def test_client_timeout_ends_a_request_and_counts_it(server: Server, tmp_path: Path) -> None:
    """A request slower than the client timeout ends at the timeout as outcome 'timeout'."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=2, users=1, spawn_rate=1)],
        requests=[RequestPlan(name="GET /slow", path="/slow")],
        client_timeout=1.0,
    )
    data, _exits, took = run_to_end(plan, tmp_path / "run", workers=1)
    timeouts = sum(data.counts("GET /slow", s).get("timeout", 0) for s in data.seconds)
    assert timeouts == data.total_requests() >= 2
    worst = data.merged("GET /slow", data.seconds).max_us
    assert 1_000_000 <= worst < 1_500_000
    assert {r.outcome for r in data.traces} == {"timeout"}
    assert took < plan.duration + plan.client_timeout + 4


def test_the_deadline_ends_an_answer_that_trickles(server: Server, tmp_path: Path) -> None:
    """An answer that keeps sending a byte every 0.2 s never trips a socket timeout; the
    worker's deadline ends each request at the client timeout (give or take an event-loop turn)
    as a timeout, and the worker goes on."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=3, users=2, spawn_rate=2)],
        requests=[RequestPlan(name="GET /trickle", path="/trickle")],
        client_timeout=1.0,
        trace_sample=1.0,
    )
    data, _exits, took = run_to_end(plan, tmp_path / "run", workers=1)
    timeouts = sum(data.counts("GET /trickle", s).get("timeout", 0) for s in data.seconds)
    assert timeouts == data.total_requests() >= 4
    latencies = sorted(r.latency for r in data.traces)
    assert latencies and latencies[0] >= 1.0 and latencies[-1] < 1.3, latencies
    assert took < plan.duration + plan.client_timeout + 4


def test_requests_carry_what_locust_adds_and_a_body_cut_short_is_an_error(
    server: Server, tmp_path: Path
) -> None:
    """Our users send through the session's transport, not ``FastHttpSession.request``:
    requests still carry what that adds (gzip accepted, the target URL's credentials as
    basic auth unless the request names its own ``Authorization``, JSON's content type and
    the JSON itself), and an answer whose body breaks off is a connection error, not OK."""
    plan = LoadPlan(
        target=f"http://ann:s%3Acret@127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=2, users=3, spawn_rate=3)],
        requests=[
            RequestPlan(name="POST /orders", method="POST", path="/orders", json_body={"n": 1}),
            RequestPlan(name="GET /mine", path="/mine", headers={"Authorization": "Bearer t"}),
            RequestPlan(name="GET /cut", path="/cut"),
        ],
        client_timeout=1.0,
    )
    data, _exits, _took = run_to_end(plan, tmp_path / "run", workers=1)
    basic = "Basic " + base64.b64encode(b"ann:s:cret").decode()
    orders, mine = server.headers["orders"], server.headers["mine"]
    assert orders and mine and server.seen["GET /cut"] >= 1
    for headers in orders:
        assert headers["authorization"] == basic
        assert headers["content-type"] == headers["accept"] == "application/json"
        assert headers["accept-encoding"] == "gzip, deflate, br"
        assert TRACEPARENT.match(headers["traceparent"])
    assert {h["authorization"] for h in mine} == {"Bearer t"}
    assert len(server.created_ids) == len(orders)

    def total(endpoint: str, outcome: str) -> int:
        return sum(data.counts(endpoint, s).get(outcome, 0) for s in data.seconds)

    assert total("POST /orders", "ok") == len(orders)
    assert total("GET /cut", "ok") == 0
    assert total("GET /cut", "connection_error") == server.seen["GET /cut"]


def test_locustfile_users_are_recorded_with_traceparents(server: Server, tmp_path: Path) -> None:
    """A user's own locustfile runs under the shape; its requests are counted and traced."""
    locustfile = tmp_path / "shoppers.py"
    locustfile.write_text(
        textwrap.dedent(
            """
            from locust import FastHttpUser, constant, task

            class Shopper(FastHttpUser):
                wait_time = constant(0.05)

                @task(3)
                def items(self):
                    self.client.get("/items/1", name="/items/{id}")

                @task
                def fail(self):
                    self.client.get("/fail")
            """
        )
    )
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=3, users=2, spawn_rate=2)],
        locustfile=str(locustfile),
        user_classes=["Shopper"],
        trace_sample=0.0,
    )
    data, exits, _ = run_to_end(plan, tmp_path / "run", workers=1)
    assert exits[0].reason == "end" and exits[0].late == 0
    assert data.total_requests() == server.total > 10
    assert data.total_requests("GET /items/{id}") == server.seen["GET /items"]
    assert (
        sum(data.counts("GET /fail", s).get("5xx", 0) for s in data.seconds)
        == server.seen["GET /fail"]
    )
    traced_ids(server.traceparents)
    assert set(traced_ids(server.failed_traceparents)) <= {r.trace_id for r in data.traces}


def _long_plan(server: Server) -> LoadPlan:
    return LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=120, users=2, spawn_rate=2)],
        requests=[RequestPlan(name="GET /", path="/")],
        wait_min=0.1,
        wait_max=0.2,
    )


def test_stop_ends_workers_promptly_and_keeps_their_data(server: Server, tmp_path: Path) -> None:
    """stop() (SIGTERM) ends a 120 s run within seconds; the workers flush what they have."""
    run_dir = tmp_path / "run"
    events = []
    with LoadEngine(_long_plan(server), workers=2, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        engine.start(t0=time.time() + 0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.total < 20:
            events += engine.poll(0.2)
        started = time.monotonic()
        engine.stop(grace=5.0)
        stopped_in = time.monotonic() - started
        while engine.running:
            events += engine.poll(0.2)
        events += engine.poll(0)
    exits = [e for e in events if isinstance(e, WorkerExit)]
    assert stopped_in < 4.0
    assert sorted(e.reason for e in exits) == ["sigterm", "sigterm"]
    assert all(e.returncode == 0 for e in exits)
    assert sum(e.requests for e in exits) >= 20


def test_workers_ignore_sigint(server: Server, tmp_path: Path) -> None:
    """A Ctrl-C reaching the workers' group does not stop them: the parent decides."""
    run_dir = tmp_path / "run"
    with LoadEngine(_long_plan(server), workers=1, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        engine.start(t0=time.time() + 0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.total < 5:
            engine.poll(0.2)
        os.killpg(engine.pids[0], signal.SIGINT)
        seen = server.total
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            engine.poll(0.2)  # would raise LoadError if the worker had ended
        assert engine.running
        assert server.total > seen


def test_a_worker_that_dies_raises_load_error_with_its_log(server: Server, tmp_path: Path) -> None:
    """A worker killed under the engine surfaces as LoadError carrying its log's tail."""
    run_dir = tmp_path / "run"
    with LoadEngine(_long_plan(server), workers=2, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        engine.start(t0=time.time() + 0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.total < 5:
            engine.poll(0.2)
        os.kill(engine.pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 20
        with pytest.raises(LoadError) as caught:
            while time.monotonic() < deadline:
                engine.poll(0.2)
    message = str(caught.value)
    assert "load worker 1 ended early" in message
    assert "load-worker-1.log" in message
    assert "Shape test starting" in message or "worker 1/2" in message


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has stopped; only its reaping is left


def test_workers_stop_by_themselves_when_the_parent_is_killed(
    server: Server, tmp_path: Path
) -> None:
    """SIGKILL the process that owns the engine: its workers notice and exit, no orphans."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from resilience.load import LoadEngine, LoadPlan
        plan = LoadPlan.from_json(sys.argv[1])
        engine = LoadEngine(plan, workers=2, log_dir=Path({str(tmp_path)!r}) / "logs")
        engine.start(t0=time.time() + 0.2)
        print(json.dumps(engine.pids), flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, _long_plan(server).to_json()],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = json.loads(line)
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.total < 5:
            time.sleep(0.1)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.1)
        assert all(_gone(p) for p in pids), "workers outlived their parent"
    finally:
        if parent.stdout is not None:
            parent.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        parent.wait(timeout=10)


def test_requests_after_a_timeout_are_not_failed_at_once(server: Server, tmp_path: Path) -> None:
    """After client timeouts against a stalled server, later requests succeed; no request
    is counted as a timeout before the client timeout has passed."""
    t0 = time.time() + 3.0
    server.stall_window = (t0 + 1.0, t0 + 3.0)
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=t0,
        stages=[Stage(duration=6, users=3, spawn_rate=3)],
        requests=[RequestPlan(name="GET /items", path="/items")],
        client_timeout=0.5,
        wait_min=0.05,
        wait_max=0.1,
        trace_sample=1.0,
    )
    data, _exits, _took = run_to_end(plan, tmp_path / "run", workers=1, lead=t0 - time.time())
    timeouts = [r for r in data.traces if r.outcome == "timeout"]
    assert timeouts, "the stall should have produced client timeouts"
    assert min(r.latency for r in timeouts) >= 0.45, sorted(r.latency for r in timeouts)[:5]
    after = [r for r in data.traces if r.t >= 3.6]
    assert after and all(r.outcome == "ok" for r in after)


# The stall test (issue 12): 100 req/s offered, the server frozen for 3 s of a 10 s run.
STALL_RPS, STALL_RUN_S, STALL_AT, STALL_S = 100, 10.0, 3.0, 3.0


def _stall_run(server: Server, plan: LoadPlan, run_dir: Path, lead: float = 1.0) -> LoadData:
    """Run ``plan`` with the server frozen from STALL_AT to STALL_AT + STALL_S (load time)."""
    t0 = time.time() + lead
    server.stall_window = (t0 + STALL_AT, t0 + STALL_AT + STALL_S)
    data, exits, _took = run_to_end(plan, run_dir, workers=1, lead=t0 - time.time())
    assert [e.reason for e in exits.values()] == ["end"]
    return data


def _whole_run_p99_ms(data: LoadData) -> float:
    merged = hist.merge_all(data.histogram(None, s) for s in data.seconds)
    [p99] = merged.percentiles_ms([99.0])
    assert p99 is not None
    return p99


def _schedule_p99_ms(arrival: list[ArrivalStage]) -> float:
    """What the schedule says p99 must be: a request due during the stall is answered when
    it ends (measured from when it was due), any other at once."""
    due = list(intended_times(arrival, 0, 1))
    end = STALL_AT + STALL_S
    latencies = sorted(end - t if STALL_AT <= t < end else 0.0 for t in due)
    return latencies[math.ceil(0.99 * len(latencies)) - 1] * 1000


def test_stall_open_model_p99_is_the_schedules(server: Server, tmp_path: Path) -> None:
    """Open model, 100 req/s, server frozen 3 s: p99 within 10 % of the schedule's value,
    nothing skipped, and the analysis makes no closed-model estimate (none is needed)."""
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        arrival=[ArrivalStage(duration=STALL_RUN_S, rps=STALL_RPS)],
        requests=[RequestPlan(name="GET /x", path="/x")],
    )
    data = _stall_run(server, plan, tmp_path / "run")
    assert data.total_requests() == STALL_RPS * STALL_RUN_S == server.total
    expected = _schedule_p99_ms(plan.arrival)
    measured = _whole_run_p99_ms(data)
    assert expected == pytest.approx(2900, abs=15)
    assert measured == pytest.approx(expected, rel=0.10), (measured, expected)
    experiment = parse_experiment(
        STALL_EXPERIMENT.format(shape=f"arrival_rate: [{{duration: 10s, rps: {STALL_RPS}}}]")
    )
    assert estimate_omission(data, STALL_PHASES, experiment) is None


def test_stall_closed_model_understates_p99_and_says_so(server: Server, tmp_path: Path) -> None:
    """Closed model at about the same rate (5 users, 50 ms think time): each user meets the
    stall once, so p99 hides it; the run's coordinated-omission estimate says so, counts
    the ~300 requests the blocked users did not send, and puts p99 back near the schedule's."""
    users = 5
    plan = LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        stages=[Stage(duration=STALL_RUN_S, users=users, spawn_rate=50)],
        requests=[RequestPlan(name="GET /x", path="/x")],
        wait_min=0.045,
        wait_max=0.055,
    )
    data = _stall_run(server, plan, tmp_path / "run")
    schedule = _schedule_p99_ms([ArrivalStage(duration=STALL_RUN_S, rps=STALL_RPS)])
    measured = _whole_run_p99_ms(data)
    assert measured < 0.2 * schedule, (measured, schedule)  # the stall hides in p99

    experiment = parse_experiment(
        STALL_EXPERIMENT.format(
            shape=f"stages: [{{duration: 10s, users: {users}, spawn_rate: 50}}]"
        )
    )
    omission = estimate_omission(data, STALL_PHASES, experiment)
    assert omission is not None and omission.users == users
    # Each user was blocked ~3 s at its usual interval of ~0.05 s: ~59 requests not sent.
    blocked = users * (STALL_S / omission.interval - 1)
    assert 0.7 * blocked <= omission.not_sent <= 1.1 * blocked, (omission.not_sent, blocked)
    text = omission.statement()
    assert "understated" in text and f"{omission.not_sent:,} more requests" in text
    merged = hist.merge_all(data.histogram(None, s) for s in data.seconds)
    corrected, _added = hist.corrected_for_omission(merged, round(omission.interval * 1e6))
    [p99_corrected] = corrected.percentiles_ms([99.0])
    assert p99_corrected == pytest.approx(schedule, rel=0.15), (p99_corrected, schedule)
