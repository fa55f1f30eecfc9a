"""The read-back of acknowledged writes through the target's auth: the workload's steps are
run once (a log-in), the read-back GETs carry the writing request's headers (or
``write.headers``) resolved with what the steps captured."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from resilience.experiment import Experiment, parse_experiment
from resilience.rundir.layout import RunDir
from resilience.rundir.readback import ReadBack
from resilience.runner.evidence import Sources, gather_readback, httpx_sender, readback_headers
from resilience.testing.analysis import fault_phases, write_ack

EXPERIMENT = """
name: auth-orders
target: {url: "http://127.0.0.1:9000"}
load:
  stages: [{duration: 30s, users: 2, spawn_rate: 2}]
  workload:
    on_start:
      - method: POST
        path: /login
        form: {username: shopper, password: s3cret}
        expect: [200]
        capture: {token: access_token}
    requests:
      - method: POST
        path: /orders
        json: {item_id: 1}
        headers: {Authorization: "Bearer {token}", X-Trace: "{uuid}"}
        expect: [201]
        write: {read_back: "/orders/{id}"}
"""


def experiment(text: str = EXPERIMENT) -> Experiment:
    return parse_experiment(textwrap.dedent(text), file="auth.yaml")


class AuthShop:
    """A login handing out one token, and order reads that need it (401 otherwise)."""

    def __init__(self, present: set[int], *, password: str = "s3cret") -> None:
        self.present = present
        self.password = password
        self.logins: list[dict[str, list[str]]] = []
        self.reads: list[str | None] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            form = parse_qs(request.content.decode())
            self.logins.append(form)
            if form.get("password") != [self.password]:
                return httpx.Response(401, json={"error": "InvalidCredentials"})
            return httpx.Response(200, json={"access_token": "T0K", "token_type": "bearer"})
        auth = request.headers.get("authorization")
        self.reads.append(auth)
        if auth != "Bearer T0K":
            return httpx.Response(401, json={"error": "Unauthorized"})
        order_id = int(request.url.path.rsplit("/", 1)[1])
        if order_id in self.present:
            return httpx.Response(200, json={"id": order_id})
        return httpx.Response(404, json={"error": "NotFound"})


def test_read_back_headers_come_from_the_writing_request_after_one_login() -> None:
    """The steps run once; Authorization renders with the captured token; {uuid} too."""
    shop = AuthShop(set())
    with httpx.Client(base_url="http://t", transport=httpx.MockTransport(shop.handler)) as http:
        headers, notes = readback_headers(experiment(), httpx_sender(http))
    assert len(shop.logins) == 1
    assert shop.logins[0] == {"username": ["shopper"], "password": ["s3cret"]}
    assert headers["POST /orders"]["Authorization"] == "Bearer T0K"
    assert len(headers["POST /orders"]["X-Trace"]) == 36
    assert notes == {}


def test_write_headers_replace_the_default() -> None:
    """write.headers are the read-back's headers (not the writing request's)."""
    text = EXPERIMENT.replace(
        'write: {read_back: "/orders/{id}"}',
        'write: {read_back: "/orders/{id}", headers: {Authorization: "Token {token}"}}',
    )
    shop = AuthShop(set())
    with httpx.Client(base_url="http://t", transport=httpx.MockTransport(shop.handler)) as http:
        headers, _ = readback_headers(experiment(text), httpx_sender(http))
    assert headers == {"POST /orders": {"Authorization": "Token T0K"}}


def test_a_failed_login_is_noted_and_the_header_left_out() -> None:
    """Wrong credentials: the note names the step and the status; no half-rendered header."""
    shop = AuthShop(set(), password="other")
    with httpx.Client(base_url="http://t", transport=httpx.MockTransport(shop.handler)) as http:
        headers, notes = readback_headers(experiment(), httpx_sender(http))
    assert "Authorization" not in headers["POST /orders"]
    assert notes["POST /orders"] == [
        "read back without the Authorization header: {token} not captured: the steps failed "
        "(POST /login: HTTP 401)"
    ]


def _gather(tmp_path: Path, shop: AuthShop, monkeypatch: Any) -> ReadBack:
    real_client = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(shop.handler), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    layout = RunDir(tmp_path)
    writes = [write_ack(i, "POST /orders", t=float(i)) for i in range(1, 11)]
    evidence = gather_readback(
        layout,
        experiment(),
        writes,
        fault_phases(end=30, fault=(10, 20)),
        Sources(prometheus=None, traces=None, target_url="http://127.0.0.1:9000"),
    )
    assert evidence.status == "gathered"
    readback = ReadBack.load(tmp_path)
    assert readback is not None
    return readback


def test_gather_reads_every_write_back_through_the_login(tmp_path: Path, monkeypatch: Any) -> None:
    """Every read-back GET carries the token: 8 present (200), 2 lost (404), none 401."""
    shop = AuthShop(set(range(1, 9)))
    readback = _gather(tmp_path, shop, monkeypatch)
    reads = readback.endpoints["POST /orders"].reads
    assert sorted(r.status for r in reads.values()) == [200] * 8 + [404] * 2
    assert set(shop.reads) == {"Bearer T0K"}
    assert len(shop.logins) == 1
    saved = json.loads((tmp_path / "readback.json").read_text())
    assert "T0K" not in json.dumps(saved)
