"""Reading Prometheus: instant and range PromQL queries and scrape-target health, typed.

``PrometheusSource`` is the interface the rest of the toolkit depends on; ``HttpPrometheusSource``
talks to a real server over its HTTP API (``/api/v1/query``, ``/api/v1/query_range``,
``/api/v1/targets``) with httpx and a timeout on every call (``FakePrometheusSource`` in
``resilience.testing.observe_fakes`` returns canned series for unit tests). Every failure arrives as an ``ObserveError`` naming
the query and the endpoint: ``PrometheusUnavailable`` when the server cannot be reached or
does not answer in time (callers stop asking), ``PrometheusQueryError`` when it answered and
refused (Prometheus's own ``errorType``/``error`` are quoted). Values keep Prometheus's
special floats: ``NaN`` (e.g. ``0/0``) and ``±Inf`` (e.g. ``histogram_quantile`` past the
last bucket) arrive as Python floats, never as errors. Why httpx rather than
prometheus-api-client: see docs/observe.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from resilience.errors import ObserveError

logger = logging.getLogger(__name__)

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

    def to_json(self) -> dict[str, Any]:
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


class HttpPrometheusSource:
    """A real Prometheus over its HTTP API.

    ``timeout`` bounds every call (connect, read, write, pool), so a server that accepts and
    never answers costs at most ``timeout`` seconds per call. Pass ``transport`` (e.g.
    ``httpx.MockTransport``) to test without a server.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            # Prometheus is local: a proxy from the environment would only get in the way.
            trust_env=False,
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

    def ready(self) -> bool:
        """True when ``/-/ready`` answers 200 within the timeout."""
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str, at: float | None = None) -> list[Series]:
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = _fmt_time(at)
        data = self._get("/api/v1/query", params, promql)
        return parse_result(data, query=promql, endpoint=self.base_url)

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[Series]:
        if end < start:
            raise ValueError(f"range query end {end} is before start {start}")
        if step <= 0:
            raise ValueError(f"range query step must be positive, got {step}")
        params = {
            "query": promql,
            "start": _fmt_time(start),
            "end": _fmt_time(end),
            "step": f"{step:g}",
        }
        data = self._get("/api/v1/query_range", params, promql)
        return parse_result(data, query=promql, endpoint=self.base_url)

    def targets(self) -> list[Target]:
        data = self._get("/api/v1/targets", {"state": "active"}, None)
        return parse_targets(data)

    def _get(self, path: str, params: Mapping[str, str], query: str | None) -> Any:
        what = f"query {query!r}" if query is not None else path
        url = f"{self.base_url}{path}"
        try:
            response = self._client.get(path, params=params)
        except httpx.TimeoutException as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} did not answer {what} within {self.timeout:g}s "
                f"({type(exc).__name__})",
                endpoint=url,
                query=query,
            ) from exc
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(
                f"cannot reach Prometheus at {self.base_url} for {what}: {exc}",
                endpoint=url,
                query=query,
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            snippet = response.text[:200]
            if response.status_code >= 500 or response.status_code == 404:
                # Not Prometheus's API answering (a proxy, another server on the port).
                raise PrometheusUnavailable(
                    f"Prometheus at {self.base_url} answered {what} with HTTP "
                    f"{response.status_code} and no API body: {snippet!r}",
                    endpoint=url,
                    query=query,
                )
            raise PrometheusQueryError(
                f"Prometheus at {self.base_url} answered {what} with HTTP "
                f"{response.status_code} and a body that is not its API JSON: {snippet!r}",
                endpoint=url,
                query=query,
            )
        if body.get("status") != "success":
            error_type = str(body.get("errorType", "unknown"))
            error = str(body.get("error", "no message"))
            raise PrometheusQueryError(
                f"Prometheus at {self.base_url} refused {what} "
                f"(HTTP {response.status_code}, {error_type}): {error}",
                endpoint=url,
                query=query,
                error_type=error_type,
            )
        for warning in body.get("warnings", []) or []:
            logger.warning("Prometheus warned about %s: %s", what, warning)
        return body.get("data")


def parse_result(data: Any, *, query: str = "", endpoint: str = "") -> list[Series]:
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


def _point(raw: Sequence[Any]) -> Point:
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
