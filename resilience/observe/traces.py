"""Fetching traces by id: from Jaeger (API v3), from a run directory, or from a fake.

``TraceSource`` is the interface: ``get(trace_id) -> Trace | None``. ``JaegerTraceSource``
reads ``GET /api/v3/traces/{id}`` (OTLP JSON wrapped in ``{"result": ...}``; an unknown id
answers 404 ``{"error": {"httpCode": 404, "message": "No traces found"}}``) with a
timeout on every call; ``tempo_source`` points the same client at Tempo
(``/api/traces/{id}`` or ``/api/v2/traces/{id}``, asked for JSON), whose ``{"batches": ...}``
and ``{"trace": ...}`` wrappers the same parser reads. A ``Connection`` adds the user's
headers, credentials, TLS settings and proxy (httpx: no query client for Jaeger or Tempo
is in common use). ``collect_traces`` fetches many ids with
bounded concurrency, polls for traces Jaeger has not ingested yet (ingestion is
asynchronous) until a deadline and stops asking when the backend is unreachable. Saving
them into a run directory, and reading them back, is ``resilience.rundir.traces``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import httpx

from resilience.errors import ObserveError
from resilience.observe.connection import Connection
from resilience.observe.otlp import normalize_id, parse_otlp_json
from resilience.observe.spans import Trace

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
INDEX_FILE = "index.json"
JAEGER_PATH = "/api/v3/traces/{trace_id}"
TEMPO_PATHS = {"v1": "/api/traces/{trace_id}", "v2": "/api/v2/traces/{trace_id}"}


class TraceBackendUnavailable(ObserveError):
    """The trace backend could not be reached or did not answer within the timeout."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class TraceSource(Protocol):
    """Where traces come from. ``get`` returns ``None`` for an unknown id."""

    def get(self, trace_id: str) -> Trace | None: ...


class JaegerTraceSource:
    """Jaeger v2's query API (``/api/v3``), or Tempo's, over httpx; every call bounded by
    ``timeout`` (default: the connection's). ``health_path`` is what ``check`` asks."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        path_template: str = JAEGER_PATH,
        connection: Connection | None = None,
        health_path: str = "/api/v3/services",
        backend: str = "Jaeger",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        connection = connection or Connection()
        self.timeout = timeout if timeout is not None else connection.timeout
        self.path_template = path_template
        self.health_path = health_path
        self.backend = backend
        options = connection.httpx_options()
        options["headers"] = {"Accept": "application/json", **options["headers"]}
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            transport=transport,
            **options,
        )

    @property
    def endpoint(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JaegerTraceSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get(self, trace_id: str) -> Trace | None:
        try:
            tid = normalize_id(trace_id, 16)
        except ValueError as exc:
            raise ObserveError(f"cannot fetch trace: {exc}") from exc
        path = self.path_template.format(trace_id=tid)
        response = self._request(path, f"trace {tid}")
        if response.status_code == 404:
            return None
        body = self._json(response, f"trace {tid}")
        if response.status_code != 200:
            raise ObserveError(
                f"{self.base_url}{path} answered HTTP {response.status_code}: {_error_text(body)}"
            )
        if not isinstance(body, dict):
            raise ObserveError(f"{self.base_url}{path} answered JSON that is not an object")
        return parse_otlp_json(body, tid)

    def check(self) -> None:
        """Raise unless the backend answers its health path with 200 (``TraceBackendUnavailable``
        when it cannot be reached, ``ObserveError`` when it answers otherwise)."""
        response = self._request(self.health_path, "a health check")
        if response.status_code != 200:
            raise ObserveError(
                f"{self.backend} at {self.base_url}{self.health_path} answered HTTP "
                f"{response.status_code}: {response.text[:200]!r}"
                + (
                    " (check the headers and auth given for it)"
                    if response.status_code in (401, 403)
                    else ""
                )
            )

    def services(self) -> list[str]:
        """Services Jaeger has seen (``/api/v3/services``): a cheap health probe."""
        response = self._request("/api/v3/services", "services")
        body = self._json(response, "services")
        if response.status_code != 200 or not isinstance(body, dict):
            raise ObserveError(
                f"{self.base_url}/api/v3/services answered HTTP {response.status_code}: "
                f"{_error_text(body)}"
            )
        return [str(s) for s in body.get("services", []) or []]

    def _request(self, path: str, what: str) -> httpx.Response:
        try:
            return self._client.get(path)
        except httpx.TimeoutException as exc:
            raise TraceBackendUnavailable(
                f"{self.backend} at {self.base_url} did not answer for {what} within "
                f"{self.timeout:g}s "
                f"({type(exc).__name__})",
                endpoint=self.base_url + path,
            ) from exc
        except httpx.HTTPError as exc:
            raise TraceBackendUnavailable(
                f"cannot reach {self.backend} at {self.base_url} for {what}: {exc}",
                endpoint=self.base_url + path,
            ) from exc

    def _json(self, response: httpx.Response, what: str) -> object:
        try:
            return response.json()
        except ValueError:
            if response.status_code == 200:
                raise ObserveError(
                    f"{self.backend} at {self.base_url} answered {what} with a body that is not "
                    "JSON: "
                    f"{response.text[:200]!r}"
                ) from None
            return response.text[:200]


def tempo_source(
    base_url: str,
    *,
    api: str = "v1",
    timeout: float | None = None,
    connection: Connection | None = None,
    transport: httpx.BaseTransport | None = None,
) -> JaegerTraceSource:
    """A trace source on Tempo's query frontend: ``/api/traces/{id}`` (``v1``, every Tempo)
    or ``/api/v2/traces/{id}`` (``v2``); ``/api/echo`` is its health check."""
    return JaegerTraceSource(
        base_url,
        timeout=timeout,
        transport=transport,
        path_template=TEMPO_PATHS[api],
        connection=connection,
        health_path="/api/echo",
        backend="Tempo",
    )


def _error_text(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return str(body)[:200]


@dataclass
class TraceCollection:
    """What ``collect_traces`` got: traces by id, and why the others are missing."""

    traces: dict[str, Trace] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    partial: set[str] = field(default_factory=set)
    """Ids returned without a complete tree (no single root) when the settle time ran out."""

    @property
    def unavailable(self) -> bool:
        return any(r.startswith("not evaluated") for r in self.missing.values())


def collect_traces(  # noqa: PLR0915 (the fetch loop and its stop rules read best in one place)
    source: TraceSource,
    requests: Mapping[str, str | None] | Iterable[str],
    *,
    concurrency: int = 4,
    deadline_s: float = 30.0,
    poll_interval_s: float = 0.5,
    settle_s: float = 2.0,
    monotonic: Callable[[], float] = time.monotonic,
    require_spans: Mapping[str, str] | None = None,
) -> TraceCollection:
    """Fetch traces by id; never raises for backend trouble (saving them is the run
    directory's job: ``resilience.rundir.traces.save_collection``).

    ``requests`` maps trace id -> the endpoint the load engine recorded it for (or is
    just ids). An id not found yet is asked again every ``poll_interval_s`` until
    ``deadline_s`` after the start; a trace found without a complete tree is asked again
    for up to ``settle_s`` (spans of a request still arrive after its root). When the
    backend is unreachable every id left is "not evaluated" with the reason. The total
    time is bounded by ``deadline_s`` plus one call's timeout.

    ``require_spans`` maps trace id -> a span id the trace must hold to be complete (the
    load engine's own client span, exported just before): until it has arrived the trace
    counts as partial, so its root is not mistaken for the target's server span.
    """
    required = {normalize_id(k, 16): v.lower() for k, v in (require_spans or {}).items() if k and v}
    wanted: dict[str, str | None] = (
        dict(requests) if isinstance(requests, Mapping) else dict.fromkeys(requests)
    )
    ids: dict[str, str] = {}
    result = TraceCollection()
    for raw_id in wanted:
        try:
            ids[normalize_id(raw_id, 16)] = raw_id
        except ValueError as exc:
            result.missing[raw_id] = f"invalid trace id: {exc}"
    deadline = monotonic() + deadline_s
    stop = threading.Event()
    unavailable: list[str] = []
    lock = threading.Lock()

    def fetch(tid: str) -> None:
        partial_since: float | None = None
        attempts = 0
        while True:
            if stop.is_set():
                with lock:
                    result.missing[tid] = f"not evaluated: {unavailable[0]}"
                return
            attempts += 1
            try:
                trace = source.get(tid)
            except TraceBackendUnavailable as exc:
                with lock:
                    unavailable.append(str(exc))
                    result.missing[tid] = f"not evaluated: {exc}"
                stop.set()
                return
            except ObserveError as exc:
                with lock:
                    result.missing[tid] = f"fetch failed: {exc}"
                return
            now = monotonic()
            if trace is not None:
                if trace.is_complete and (tid not in required or trace.span(required[tid])):
                    with lock:
                        result.traces[tid] = trace
                    return
                partial_since = partial_since if partial_since is not None else now
                if now - partial_since >= settle_s or now >= deadline:
                    with lock:
                        result.traces[tid] = trace
                        result.partial.add(tid)
                    return
            elif now >= deadline:
                with lock:
                    result.missing[tid] = (
                        f"not found after {attempts} attempts in {deadline_s:g}s "
                        "(never exported, sampled out, or not ingested yet)"
                    )
                return
            # Event.wait rather than sleep: an unreachable backend ends every wait at once.
            stop.wait(poll_interval_s)

    if ids:
        with ThreadPoolExecutor(
            max_workers=max(1, min(concurrency, len(ids))), thread_name_prefix="traces"
        ) as pool:
            list(pool.map(fetch, ids))
    if unavailable:
        logger.warning("trace backend unavailable: %s", unavailable[0])
    return result
