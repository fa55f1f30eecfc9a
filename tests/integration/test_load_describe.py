"""The load engine against a service described with the newer parts of the file: a login
whose token is nested (``data.token``), a POST answering 202 + ``Location`` that later
requests and the read-back follow, a raw JSON-RPC body with literal braces, HEAD and
OPTIONS, a capture that misses (counted, not silent), and a ``Location`` off the target's
host (refused: the run would exit 2, and nothing is sent there).

The server is ``http.server`` in a thread of the test process on 127.0.0.1 (an ephemeral
port); each test runs 3 s of load with one worker.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from resilience.errors import EXIT_INVALID, LoadRefused
from resilience.experiment.loader import parse_experiment
from resilience.load import LoadEngine, LoadPlan, LoadRecorder, plan_from_experiment
from resilience.rundir.load import LoadData, read_writes
from resilience.runner.evidence import read_back

pytestmark = pytest.mark.integration


class Service(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: Counter[str] = Counter()
    rpc_bodies: list[object] = []
    authorized: list[str] = []
    next_id = 0
    elsewhere = False

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, status: int, body: object = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        Service.seen[f"POST {self.path}"] += 1
        if self.path == "/login":
            self._answer(200, {"data": {"token": "tok"}})
        elif self.path == "/orders":
            Service.next_id += 1
            where = "http://elsewhere.invalid" if Service.elsewhere else ""
            self._answer(202, {"queued": True}, {"Location": f"{where}/orders/{Service.next_id}"})
        elif self.path == "/rpc":
            Service.rpc_bodies.append(json.loads(body))
            self._answer(200, {"result": "ok"})
        else:
            self._answer(404, {})

    def do_GET(self) -> None:
        Service.seen[f"GET {self.path.rsplit('/', 1)[0] or self.path}"] += 1
        if self.path.startswith("/orders/"):
            Service.authorized.append(self.headers.get("Authorization", ""))
            self._answer(200, {"id": int(self.path.rsplit("/", 1)[1])})
        elif self.path == "/status":
            self._answer(200, {"state": "up"})  # no data.version: a capture miss
        else:
            self._answer(404, {})

    def do_HEAD(self) -> None:
        Service.seen[f"HEAD {self.path}"] += 1
        self._answer(200, {"ok": True}, {"ETag": '"v1"'})

    def do_OPTIONS(self) -> None:
        Service.seen[f"OPTIONS {self.path}"] += 1
        self._answer(204, None, {"Allow": "GET, POST, OPTIONS"})


@pytest.fixture
def service() -> Iterator[str]:
    Service.seen = Counter()
    Service.rpc_bodies = []
    Service.authorized = []
    Service.elsewhere = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


EXPERIMENT = """
name: described
load:
  stages: [{duration: 3s, users: 2, spawn_rate: 10}]
  client_timeout: 2s
  workload:
    setup:
      - {method: POST, path: /login, json: {user: u}, capture: {token: data.token}}
    requests:
      - method: POST
        path: /orders
        json: {item: 1}
        expect: [202]
        headers: {Authorization: "Bearer {token}"}
        capture: {order_url: "header:Location"}
        write: {id_field: "header:Location", read_back: "{id}"}
      - {path: "{order_url}", name: order, headers: {Authorization: "Bearer {token}"}}
      - method: POST
        path: /rpc
        body: '{{"jsonrpc":"2.0","method":"ping","params":["{seq}"]}}'
        content_type: application/json
      - {method: HEAD, path: /health, capture: {etag: "header:ETag"}}
      - {method: OPTIONS, path: /orders, expect: [204]}
      - {path: /status, capture: {version: data.version}}
"""


def _plan(target: str) -> LoadPlan:
    experiment = parse_experiment(textwrap.dedent(EXPERIMENT), file="described.yaml")
    return plan_from_experiment(experiment, target, workers=1)


def _run(plan: LoadPlan, run_dir: Path) -> LoadRecorder:
    with LoadEngine(plan, workers=1, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        t0 = time.time() + 0.5
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=1, endpoints=plan.endpoints())
        deadline = time.monotonic() + plan.duration + 20
        try:
            while engine.running and time.monotonic() < deadline:
                recorder.consume(engine.poll(0.5))
            recorder.consume(engine.poll(0))
        finally:
            recorder.close()
    return recorder


def test_a_service_described_with_paths_headers_braces_head_and_options(
    service: str, tmp_path: Path
) -> None:
    """Every part reaches the service as described, and the capture miss is counted."""
    recorder = _run(_plan(service), tmp_path)
    assert Service.seen["POST /login"] == 1  # the setup, once for the worker
    assert Service.seen["POST /orders"] > 0
    assert Service.seen["GET /orders"] > 0  # followed the Location
    assert set(Service.authorized) == {"Bearer tok"}
    assert Service.seen["HEAD /health"] > 0 and Service.seen["OPTIONS /orders"] > 0
    assert Service.rpc_bodies and all(
        b["jsonrpc"] == "2.0" and b["method"] == "ping"  # type: ignore[index]
        for b in Service.rpc_bodies
    )
    load = json.loads((tmp_path / "load.json").read_text())
    assert load["capture_missed"] == Service.seen["GET /status"] > 0
    assert load["capture_errors"] == ["GET /status: no field 'data.version' in the answer"]
    # HEAD and OPTIONS answered as expected; the /status requests count as OK all the same.
    data = LoadData.read(tmp_path)
    for endpoint in ("HEAD /health", "OPTIONS /orders", "GET /status", "order"):
        _, counts, _ = data.window(endpoint, data.seconds)
        assert counts["ok"] == data.total_requests(endpoint) > 0, endpoint
    assert recorder.capture_missed == load["capture_missed"]
    writes = read_writes(tmp_path)
    assert writes and all(str(w.id).startswith("/orders/") for w in writes)
    experiment = parse_experiment(textwrap.dedent(EXPERIMENT), file="described.yaml")
    asked: list[str] = []

    def get(path: str) -> tuple[int, object]:
        asked.append(path)
        return 200, {}

    read_back(experiment, writes, [], get, target=service)
    assert asked and all(path.startswith(f"{service}/orders/") for path in asked)


def test_a_location_off_the_target_is_refused_and_never_followed(
    service: str, tmp_path: Path
) -> None:
    """A 202 whose Location names another host stops the load: LoadRefused, exit 2."""
    Service.elsewhere = True
    started = time.monotonic()
    with pytest.raises(LoadRefused) as info:
        _run(_plan(service), tmp_path)
    assert info.value.exit_code == EXIT_INVALID
    assert "elsewhere.invalid" in str(info.value)
    assert "leads off the target" in str(info.value)
    assert time.monotonic() - started < 20
    assert Service.seen["GET /orders"] == 0
