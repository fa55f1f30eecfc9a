"""The console's HTTP server: one page, a JSON API and a Server-Sent-Events stream.

Standard library only (``http.server.ThreadingHTTPServer``): the session's process stays
plain threads like the orchestrator, and a dozen routes need no framework (see
docs/architecture.md). It listens on 127.0.0.1 only, on a free port.

Every request needs the session's token: ``Authorization: Bearer <token>`` (the terminal
commands), the ``gameday_token`` cookie (set when the page is opened with ``?token=``), or
``?token=`` itself; anything else answers 401, pages and API alike. The Host header must
name this server (no DNS rebinding). Requests that change state (POST) must also come
from the console's own origin: a browser always sends ``Origin`` with them and it must be
this server's; a request without ``Origin`` is accepted only with the Authorization
header, which a cross-site page cannot set.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from resilience.errors import ResilienceError
from resilience.experiment.model import FaultAction
from resilience.gameday.faults import FaultRefused
from resilience.gameday.state import StateError
from resilience.vocabulary import JSONValue

if TYPE_CHECKING:
    from resilience.gameday.session import Session

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
COOKIE = "gameday_token"
MAX_BODY = 64 * 1024
LIVE_EVERY = 1.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STATIC = {
    "/": ("console.html", "text/html; charset=utf-8"),
    "/static/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/static/console.css": ("console.css", "text/css; charset=utf-8"),
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _static(name: str) -> bytes:
    return resources.files("resilience.gameday").joinpath("static", name).read_bytes()


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConsoleServer:
    """Serves one session's console until ``stop()``."""

    def __init__(self, session: Session, token: str, *, port: int = 0) -> None:
        self.session = session
        self.token = token
        app = self

        class Handler(_Handler):
            console = app

        self.httpd = ThreadingHTTPServer((HOST, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self.closing = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/?token={self.token}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="gameday-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # -- the API ---------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Callable[[dict[str, JSONValue], list[str]], object]]:
        s = self.session
        return {
            ("GET", "/api/state"): lambda _b, _p: s.status(),
            ("GET", "/api/live"): lambda _b, _p: s.live_view(),
            ("GET", "/api/catalog"): lambda _b, _p: s.catalogue(),
            ("POST", "/api/join"): lambda b, _p: s.join(_str(b, "name"), _str(b, "role")),
            ("POST", "/api/notes"): lambda b, _p: s.note(
                _str(b, "kind", "note"), _str(b, "text"), _str(b, "author", "")
            ),
            ("POST", "/api/faults"): lambda b, _p: {"ids": self._inject(b)},
            ("POST", "/api/faults/*/heal"): lambda _b, p: s.heal(_int(p[0], "fault id")),
            ("POST", "/api/heal-all"): lambda _b, _p: s.heal(None),
            ("POST", "/api/load"): lambda b, _p: s.set_load(
                users=_opt_int(b, "users"),
                spawn_rate=_opt_num(b, "spawn_rate"),
                rps=_opt_num(b, "rps"),
            ),
            ("POST", "/api/halts"): lambda b, _p: s.add_halt(b),
            ("POST", "/api/steps/next"): lambda _b, _p: s.step("next"),
            ("POST", "/api/steps/done"): lambda _b, _p: s.step("done"),
            ("POST", "/api/steps/*/start"): lambda _b, p: s.step("start", _int(p[0], "step")),
            ("POST", "/api/steps/*/skip"): lambda _b, p: s.step("skip", _int(p[0], "step")),
            ("POST", "/api/end"): lambda b, _p: self._end(b),
        }

    def _inject(self, body: dict[str, JSONValue]) -> list[int]:
        by = str(body.get("by") or "")
        if body.get("name"):
            ids: list[int] = self.session.inject(name=str(body["name"]), by=by)
            return ids
        raw = {
            k: body[k]
            for k in ("proxy", "type", "attributes", "stream", "toxicity", "duration")
            if body.get(k) is not None
        }
        try:
            action = FaultAction.model_validate(raw, strict=False)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"invalid fault: {exc}") from None
        result: list[int] = self.session.inject(action=action, by=by)
        return result

    def _end(self, body: dict[str, JSONValue]) -> dict[str, JSONValue]:
        who = str(body.get("by") or "the console")
        self.session.request_end(f"ended by {who}")
        # Wait for the end to be written so the caller can open the report at once.
        wait = _opt_num(body, "wait")
        if not self.session.finished.wait(timeout=60.0 if wait is None else wait):
            return {"ending": True}
        result = self.session.result
        if result is None:
            return {"ended": True}
        return {
            "ended": True,
            "dir": str(result.session_dir),
            "status": result.status,
            "reports": [str(p) for p in result.report_files],
        }


def _str(body: dict[str, JSONValue], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key!r} must be a string")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(HTTPStatus.NOT_FOUND, f"no {what} {text!r}") from None


def _opt_num(body: dict[str, JSONValue], key: str) -> float | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key!r} must be a number")
    try:
        return float(value)
    except ValueError:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key!r} must be a number") from None


def _opt_int(body: dict[str, JSONValue], key: str) -> int | None:
    value = _opt_num(body, key)
    if value is None:
        return None
    if value != int(value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{key!r} must be a whole number")
    return int(value)


class _Handler(BaseHTTPRequestHandler):
    console: ConsoleServer
    server_version = "resilience-gameday"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("console %s: " + format, self.client_address[0], *args)

    # -- checks -----------------------------------------------------------------------

    def _allowed_origins(self) -> set[str]:
        port = self.console.port
        return {f"http://{HOST}:{port}", f"http://localhost:{port}"}

    def _token_ok(self) -> tuple[bool, bool]:
        """(token valid, came in the Authorization header)."""
        token = self.console.token
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return secrets.compare_digest(header[7:].strip(), token), True
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        if COOKIE in cookie and secrets.compare_digest(cookie[COOKIE].value, token):
            return True, False
        query = parse_qs(urlsplit(self.path).query).get("token", [])
        if query and secrets.compare_digest(query[0], token):
            return True, False
        return False, False

    def _check(self, method: str) -> None:
        host = self.headers.get("Host", "")
        if f"http://{host}" not in self._allowed_origins():
            raise ApiError(HTTPStatus.FORBIDDEN, f"unexpected Host header {host!r}")
        ok, by_header = self._token_ok()
        if not ok:
            raise ApiError(HTTPStatus.UNAUTHORIZED, "a valid session token is required")
        if method != "GET":
            origin = self.headers.get("Origin")
            if origin is None and not by_header:
                raise ApiError(HTTPStatus.FORBIDDEN, "state-changing requests need an Origin")
            if origin is not None and origin not in self._allowed_origins():
                raise ApiError(HTTPStatus.FORBIDDEN, f"cross-origin request from {origin!r}")

    # -- responses --------------------------------------------------------------------

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        extra = {"WWW-Authenticate": "Bearer"} if status == HTTPStatus.UNAUTHORIZED else None
        self._send(status, json.dumps({"error": message}).encode(), "application/json", extra)

    def _body(self) -> dict[str, JSONValue]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    # -- dispatch ---------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            self._check(method)
            if method == "GET" and path in STATIC:
                name, content_type = STATIC[path]
                extra = {}
                if path == "/":
                    extra["Set-Cookie"] = (
                        f"{COOKIE}={self.console.token}; HttpOnly; SameSite=Strict; Path=/"
                    )
                self._send(HTTPStatus.OK, _static(name), content_type, extra)
                return
            if method == "GET" and path == "/api/events":
                self._events()
                return
            handler, params = self._route(method, path)
            body = self._body() if method == "POST" else {}
            self._json(HTTPStatus.OK, handler(body, params))
        except ApiError as exc:
            self._error(exc.status, str(exc))
        except (StateError, FaultRefused) as exc:
            self._error(
                HTTPStatus.BAD_REQUEST if isinstance(exc, StateError) else HTTPStatus.CONFLICT,
                str(exc),
            )
        except ResilienceError as exc:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:
            logger.exception("console request %s %s failed", method, path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _route(
        self, method: str, path: str
    ) -> tuple[Callable[[dict[str, JSONValue], list[str]], object], list[str]]:
        parts = path.rstrip("/").split("/")
        for (m, pattern), handler in self.console.routes().items():
            want = pattern.split("/")
            if m != method or len(want) != len(parts):
                continue
            params = [p for w, p in zip(want, parts, strict=True) if w == "*"]
            if all(w in ("*", p) for w, p in zip(want, parts, strict=True)):
                return handler, params
        raise ApiError(HTTPStatus.NOT_FOUND, f"no {method} {path}")

    def _events(self) -> None:
        """Server-Sent Events: ``state`` at every change, ``live`` every second."""
        session = self.console.session
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        state = session.state
        version = -1
        next_live = 0.0
        bound = int(session.plan.max_duration / 0.2) + 100
        try:
            for _ in range(bound):
                if state is None or self.console.closing.is_set():
                    break
                current = state.wait_change(version, 0.5)
                if current != version:
                    version = current
                    self._event("state", session.status())
                if time.monotonic() >= next_live:
                    next_live = time.monotonic() + LIVE_EVERY
                    self._event("live", session.live_view())
                if state.ended:
                    self._event("ended", {"dir": str(session.dir)})
                    break
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    def _event(self, name: str, payload: object) -> None:
        data = json.dumps(payload, separators=(",", ":"))
        self.wfile.write(f"event: {name}\ndata: {data}\n\n".encode())
        self.wfile.flush()
