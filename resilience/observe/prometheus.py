"""Reading Prometheus: instant and range PromQL queries and scrape-target health, typed.

``PrometheusSource`` is the interface the rest of the toolkit depends on;
``HttpPrometheusSource`` talks to a real server (the stack's, or the user's own behind
headers, basic or bearer auth, TLS and an HTTP proxy) through prometheus-api-client, the
client users of Prometheus know, configured so that one call is one request: no retries
(its default ``Retry`` would multiply the timeout by four and eat Prometheus's 503 reason),
a (connect, read) timeout on every call, and Prometheus's own ``timeout`` parameter so the
server stops evaluating too. ``FakePrometheusSource`` in ``resilience.testing.observe_fakes``
returns canned series for unit tests. Every failure arrives as an ``ObserveError`` naming
the query and the endpoint: ``PrometheusUnavailable`` when the server cannot be reached,
does not answer in time or refuses our credentials (callers stop asking),
``PrometheusQueryError`` when it answered and refused the query (Prometheus's own
``errorType``/``error`` are quoted, parsed back out of the package's exception). Values keep
Prometheus's special floats: ``NaN`` (e.g. ``0/0``) and ``±Inf`` (e.g. ``histogram_quantile``
past the last bucket) arrive as Python floats, never as errors. Where the package falls
short and what we do about it: docs/observe.md.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import BaseAdapter
from urllib3.util.retry import Retry

from resilience.errors import ObserveError
from resilience.observe.connection import Connection
from resilience.vocabulary import JSONValue

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_TIMEOUT_S = 5.0

Point = tuple[float, float]
"""(unix time in seconds, value)."""


class PrometheusUnavailable(ObserveError):
    """Prometheus could not be reached or did not answer within the timeout."""

    def __init__(self, message: str, *, endpoint: str, query: str | None = None) -> None:
        self.endpoint = endpoint
        self.query = query
        super().__init__(message)


class PrometheusQueryError(ObserveError):
    """Prometheus answered but refused or failed the query (bad PromQL, timeout, ...)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        query: str | None = None,
        error_type: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.query = query
        self.error_type = error_type
        super().__init__(message)


@dataclass(frozen=True)
class Series:
    """One time series: its labels and its points in time order.

    An instant query gives one point per series; a scalar result is a series without labels.
    """

    labels: Mapping[str, str]
    points: Sequence[Point]

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")

    def values(self) -> list[float]:
        return [v for _, v in self.points]

    def finite_points(self) -> list[Point]:
        """Points with a number in them: NaN (no data, 0/0) left out; ±Inf kept."""
        return [(t, v) for t, v in self.points if not math.isnan(v)]

    def label_text(self) -> str:
        """``{a="1", b="2"}`` without ``__name__``; ``{}`` for a scalar."""
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()) if k != "__name__")
        return "{" + inner + "}"

    def to_json(self) -> dict[str, JSONValue]:
        return {"labels": dict(self.labels), "points": [[t, _encode(v)] for t, v in self.points]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Series:
        return cls(
            labels=dict(data.get("labels", {})),
            points=[(float(t), _decode(v)) for t, v in data.get("points", [])],
        )


TargetHealth = Literal["up", "down", "unknown"]


@dataclass(frozen=True)
class Target:
    """A scrape target as Prometheus sees it."""

    job: str
    instance: str
    scrape_url: str
    health: TargetHealth
    last_error: str = ""
    last_scrape: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.health == "up"


class PrometheusSource(Protocol):
    """What observers need from Prometheus (structural: the real client and fakes match it).

    Times are unix seconds (floats). ``query`` evaluates at ``at`` (default: the server's
    now); ``query_range`` evaluates at ``start, start + step, ...`` up to ``end``.
    ``endpoint`` names the server in messages.
    """

    @property
    def endpoint(self) -> str: ...

    def query(self, promql: str, at: float | None = None) -> list[Series]: ...

    def query_range(
        self, promql: str, start: float, end: float, step: float = 1.0
    ) -> list[Series]: ...

    def targets(self) -> list[Target]: ...


def no_retries() -> Retry:
    """One call, one request. ``read=False`` re-raises a read timeout as requests'
    ``ReadTimeout``; status retries are off, so a 503 keeps its body."""
    return Retry(total=0, connect=0, read=False, redirect=0, status=0, other=0,
                 raise_on_status=False)  # fmt: skip


_STATUS_BODY = re.compile(r"^HTTP Status Code (\d+) \((b'.*'|b\".*\")\)$", re.S)


class HttpPrometheusSource:
    """A real Prometheus, through prometheus-api-client.

    ``timeout`` (default: the connection's) is the connect and the read timeout of every
    call and is sent as Prometheus's ``timeout`` parameter; with no retries a server that
    accepts and never answers costs one timeout per call. ``adapter`` (a requests transport
    adapter) replaces the network in unit tests, like httpx's ``MockTransport``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float | None = None,
        connection: Connection | None = None,
        adapter: BaseAdapter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.connection = connection or Connection()
        self.timeout = timeout if timeout is not None else self.connection.timeout
        session = requests.Session()
        session.trust_env = False  # see resilience/observe/connection.py
        session.verify = self.connection.requests_verify()
        session.cert = self.connection.requests_cert()
        session.hooks["response"].append(_log_warnings)
        # The package annotates its optional arguments as plain ``dict``/``tuple``/``int``
        # (None is their default) and passes ``timeout`` to requests, which takes a
        # (connect, read) pair: its annotations are narrower than what it accepts.
        options: dict[str, Any] = {
            "headers": self.connection.all_headers() or None,
            "auth": self.connection.basic,
            "proxy": self.connection.proxies() or None,
            "timeout": (self.timeout, self.timeout),
        }
        self._client = PrometheusConnect(
            self.base_url, retry=no_retries(), session=session, **options
        )
        if adapter is not None:
            session.mount(self.base_url, adapter)
        if not self.connection.verify:
            # The user turned checking off for this host (tls.verify: false): say it once
            # here instead of urllib3's warning on every query.
            host = urlsplit(self.base_url).hostname or ""
            logger.warning("TLS certificates of Prometheus at %s are not checked", self.base_url)
            warnings.filterwarnings(
                "ignore",
                message=f"Unverified HTTPS request is being made to host '{re.escape(host)}'",
                category=urllib3.exceptions.InsecureRequestWarning,
            )

    @property
    def endpoint(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpPrometheusSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(self) -> None:
        """Raise unless the query API answers (credentials, TLS and path prefix included)."""
        self.query("1")

    def ready(self) -> bool:
        """True when the query API answers within the timeout; never raises."""
        try:
            self.check()
        except ObserveError:
            return False
        return True

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        params = {"timeout": self._server_timeout()}
        if at is not None:
            params["time"] = _fmt_time(at)
        result = self._call(
            "/api/v1/query", promql, lambda: self._client.custom_query(promql, params=params)
        )
        return self._series(result, promql)

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        if end < start:
            raise ValueError(f"range query end {end} is before start {start}")
        if step <= 0:
            raise ValueError(f"range query step must be positive, got {step}")
        # The package rounds start and end to whole seconds; its params win over its own
        # keys, so the exact times go there.
        params = {
            "start": _fmt_time(start),
            "end": _fmt_time(end),
            "timeout": self._server_timeout(),
        }
        result = self._call(
            "/api/v1/query_range",
            promql,
            lambda: self._client.custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC),
                step=f"{step:g}",
                params=params,
            ),
        )
        return self._series(result, promql)

    def targets(self) -> list[Target]:
        data = self._call("/api/v1/targets", None, lambda: self._client.get_targets("active"))
        return parse_targets(data)

    def _server_timeout(self) -> str:
        return f"{self.timeout:g}s"

    def _series(self, result: object, promql: str) -> list[Series]:
        # The package returns data.result without its resultType: a scalar or string is a
        # [time, "value"] pair, a vector or matrix a list of objects.
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            kind = "scalar"
        elif isinstance(result, list) and any(
            isinstance(item, dict) and "values" in item for item in result
        ):
            kind = "matrix"
        else:
            kind = "vector"
        return parse_result(
            {"resultType": kind, "result": result}, query=promql, endpoint=self.base_url
        )

    def _call(self, path: str, query: str | None, call: Callable[[], _T]) -> _T:
        what = f"query {query!r}" if query is not None else path
        url = f"{self.base_url}{path}"
        try:
            return call()
        except PrometheusApiClientException as exc:
            raise self._answered(str(exc), what, url, query) from exc
        except (requests.exceptions.JSONDecodeError, KeyError, TypeError) as exc:
            raise PrometheusQueryError(
                f"Prometheus at {self.base_url} answered {what} with a body that is not its "
                f"API JSON ({type(exc).__name__}: {exc})",
                endpoint=url,
                query=query,
            ) from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            if _timed_out(exc):
                message = (
                    f"Prometheus at {self.base_url} did not answer {what} within "
                    f"{self.timeout:g}s ({type(exc).__name__})"
                )
            else:
                message = f"cannot reach Prometheus at {self.base_url} for {what}: {exc}"
            raise PrometheusUnavailable(message, endpoint=url, query=query) from exc

    def _answered(self, text: str, what: str, url: str, query: str | None) -> ObserveError:
        """Our error for a non-200 answer, from the package's "HTTP Status Code N (b'...')"."""
        status, body = _status_and_body(text)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("status") == "error":
            error_type = str(doc.get("errorType", "unknown"))
            return PrometheusQueryError(
                f"Prometheus at {self.base_url} refused {what} "
                f"(HTTP {status}, {error_type}): {doc.get('error', 'no message')}",
                endpoint=url,
                query=query,
                error_type=error_type,
            )
        snippet = body[:200]
        if status in (401, 403):
            return PrometheusUnavailable(
                f"Prometheus at {self.base_url} refused our credentials for {what} "
                f"(HTTP {status}): check the headers and auth given for it",
                endpoint=url,
                query=query,
            )
        if status >= 500 or status == 404:
            # Not Prometheus's API answering (a proxy, another server on the port).
            return PrometheusUnavailable(
                f"Prometheus at {self.base_url} answered {what} with HTTP {status} and no "
                f"API body: {snippet!r}",
                endpoint=url,
                query=query,
            )
        return PrometheusQueryError(
            f"Prometheus at {self.base_url} answered {what} with HTTP {status} and a body "
            f"that is not its API JSON: {snippet!r}",
            endpoint=url,
            query=query,
        )


def _status_and_body(text: str) -> tuple[int, str]:
    match = _STATUS_BODY.match(text)
    if match is None:
        return 0, text
    try:
        raw = ast.literal_eval(match.group(2))
    except (ValueError, SyntaxError):
        return int(match.group(1)), match.group(2)
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return int(match.group(1)), body


def _timed_out(exc: BaseException) -> bool:
    """A timeout, not a refusal (urllib3's NewConnectionError subclasses its timeout)."""
    reason: object = exc
    if isinstance(exc, requests.exceptions.RequestException) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(
        exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError
    ) or isinstance(reason, urllib3.exceptions.TimeoutError)


def _log_warnings(response: requests.Response, *args: object, **kwargs: object) -> None:
    """The package drops Prometheus's ``warnings``; log them from the response."""
    if b'"warnings"' not in response.content:
        return
    try:
        warnings = response.json().get("warnings") or []
    except (ValueError, AttributeError):
        return
    for warning in warnings:
        logger.warning("Prometheus warned about %s: %s", response.url, warning)


def parse_result(data: object, *, query: str = "", endpoint: str = "") -> list[Series]:
    """Turn the ``data`` object of a query answer into series (vector, matrix or scalar)."""
    if not isinstance(data, dict):
        raise PrometheusQueryError(
            f"Prometheus answer to {query!r} has no data object", endpoint=endpoint, query=query
        )
    kind = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "vector":
            return [
                Series(labels=dict(item.get("metric", {})), points=[_point(item["value"])])
                for item in result or []
            ]
        if kind == "matrix":
            return [
                Series(
                    labels=dict(item.get("metric", {})),
                    points=[_point(p) for p in item.get("values", [])],
                )
                for item in result or []
            ]
        if kind == "scalar":
            return [Series(labels={}, points=[_point(result)])]
        if kind == "string":
            # Only useful when the string is a number; anything else is not a measurement.
            return [Series(labels={}, points=[_point(result)])]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PrometheusQueryError(
            f"Prometheus answer to {query!r} has an unexpected {kind} shape: {exc}",
            endpoint=endpoint,
            query=query,
        ) from exc
    raise PrometheusQueryError(
        f"Prometheus answer to {query!r} has unknown result type {kind!r}",
        endpoint=endpoint,
        query=query,
    )


def parse_targets(data: Any) -> list[Target]:
    """Active targets from the ``data`` object of ``/api/v1/targets``."""
    targets: list[Target] = []
    for item in (data or {}).get("activeTargets", []) or []:
        labels = dict(item.get("labels", {}))
        health = item.get("health", "unknown")
        targets.append(
            Target(
                job=labels.get("job", item.get("scrapePool", "")),
                instance=labels.get("instance", ""),
                scrape_url=item.get("scrapeUrl", ""),
                health=health if health in ("up", "down") else "unknown",
                last_error=item.get("lastError", "") or "",
                last_scrape=item.get("lastScrape", "") or "",
                labels=labels,
            )
        )
    return targets


def _point(raw: Sequence[str | float]) -> Point:
    # Prometheus sends [<unix seconds>, "<value>"]; float() reads "NaN", "+Inf", "-Inf".
    return float(raw[0]), float(raw[1])


def _fmt_time(t: float) -> str:
    return f"{t:.3f}"


def _encode(v: float) -> float | str:
    # JSON has no NaN/Infinity: store them as Prometheus writes them.
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def _decode(v: float | str) -> float:
    return float(v)
