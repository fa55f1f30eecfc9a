"""The console server's gate: the token on every page and call, Origin on changes, 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resilience.gameday.server import ConsoleServer
from resilience.gameday.state import SessionState
from resilience.vocabulary import FakeClock

TOKEN = "t0ken-for-tests"


class FakePlan:
    max_duration = 5.0


class FakeSession:
    """Just enough of a Session for the server: notes are recorded."""

    def __init__(self) -> None:
        self.plan = FakePlan()
        self.state = SessionState(FakeClock())
        self.finished = threading.Event()
        self.notes: list[tuple[str, str]] = []

    def status(self) -> dict[str, Any]:
        return {"name": "fake", **self.state.snapshot()}

    def live_view(self) -> dict[str, Any]:
        return {"t": 0.0}

    def catalogue(self) -> dict[str, Any]:
        return {"named": {}, "proxies": [], "types": {}}

    def note(self, kind: str, text: str, author: str) -> dict[str, Any]:
        self.notes.append((kind, text))
        return self.state.add_note(kind, text, author).__dict__


@pytest.fixture
def server() -> Iterator[tuple[ConsoleServer, FakeSession]]:
    session = FakeSession()
    srv = ConsoleServer(session, TOKEN)
    srv.start()
    yield srv, session
    session.state.end()
    srv.stop()


def get(srv: ConsoleServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{srv.base_url}{path}", timeout=5.0, **kwargs)


def post(srv: ConsoleServer, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{srv.base_url}{path}",
        headers=headers,
        timeout=5.0,
        json={"kind": "note", "text": "hi"},
        **kwargs,
    )


def test_it_listens_on_loopback_only(server: tuple[ConsoleServer, FakeSession]) -> None:
    """The socket is bound to 127.0.0.1, on a port the system chose."""
    srv, _ = server
    host, port = srv.httpd.server_address[:2]
    assert host == "127.0.0.1" and port == srv.port > 0


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/static/console.js",
        "/static/console.css",
        "/api/state",
        "/api/events",
        "/api/catalog",
        "/nope",
    ],
)
def test_without_the_token_everything_is_401(
    server: tuple[ConsoleServer, FakeSession], path: str
) -> None:
    """Pages, static files, the API and the event stream all answer 401 without the token."""
    srv, _ = server
    assert get(srv, path).status_code == 401
    assert get(srv, path + "?token=wrong").status_code == 401
    assert get(srv, path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_page_with_the_token_sets_a_strict_cookie(
    server: tuple[ConsoleServer, FakeSession],
) -> None:
    """Opening the URL with ?token= serves the page and a HttpOnly SameSite=Strict cookie
    that then opens the API; the page has a CSP that allows only its own files."""
    srv, _ = server
    page = get(srv, f"/?token={TOKEN}")
    assert page.status_code == 200 and "<title>resilience game day</title>" in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "script-src 'self'" in page.headers["content-security-policy"]
    api = get(srv, "/api/state", cookies={"gameday_token": TOKEN})
    assert api.status_code == 200 and api.json()["name"] == "fake"


def test_state_changes_need_the_console_origin(server: tuple[ConsoleServer, FakeSession]) -> None:
    """A POST with the cookie needs Origin = the console; another origin or none is 403;
    the terminal's Bearer token needs no Origin."""
    srv, session = server
    cookie = {"Cookie": f"gameday_token={TOKEN}"}
    assert post(srv, "/api/notes", {**cookie, "Origin": "http://evil.example"}).status_code == 403
    assert post(srv, "/api/notes", {**cookie, "Origin": "http://127.0.0.1:1"}).status_code == 403
    assert post(srv, "/api/notes", cookie).status_code == 403
    assert session.notes == []
    assert post(srv, "/api/notes", {**cookie, "Origin": srv.base_url}).status_code == 200
    assert post(srv, "/api/notes", {"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert post(srv, "/api/notes", {"Origin": srv.base_url}).status_code == 401
    assert len(session.notes) == 2


def test_a_foreign_host_header_is_refused(server: tuple[ConsoleServer, FakeSession]) -> None:
    """A request naming another host (DNS rebinding) is refused even with the token."""
    srv, _ = server
    response = get(
        srv, "/api/state", headers={"Authorization": f"Bearer {TOKEN}", "Host": "attacker.example"}
    )
    assert response.status_code == 403


def test_bad_requests_are_400_with_a_reason(server: tuple[ConsoleServer, FakeSession]) -> None:
    """A note of an unknown kind or a body that is not JSON answers 400 and says why."""
    srv, _ = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = httpx.post(
        f"{srv.base_url}/api/notes", headers=auth, json={"kind": "rumour", "text": "x"}, timeout=5.0
    )
    assert bad.status_code == 400 and "kind must be one of" in bad.json()["error"]
    junk = httpx.post(
        f"{srv.base_url}/api/notes",
        headers={**auth, "Content-Type": "application/json"},
        content=b"{",
        timeout=5.0,
    )
    assert junk.status_code == 400 and "not JSON" in junk.json()["error"]


def test_the_event_stream_sends_state_and_live(server: tuple[ConsoleServer, FakeSession]) -> None:
    """/api/events streams a state event, then live numbers, as Server-Sent Events."""
    srv, _session = server
    seen: list[str] = []
    with httpx.stream(
        "GET",
        f"{srv.base_url}/api/events",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5.0,
    ) as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
            if {"state", "live"} <= set(seen):
                break
    assert seen[:2] == ["state", "live"]
