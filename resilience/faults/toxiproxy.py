"""A small typed client for the Toxiproxy v2 HTTP API, and the interface its fake shares.

Everything the toolkit does to Toxiproxy goes through ``ToxiproxyApi``: the real
``ToxiproxyClient`` (sync httpx, a timeout on every call, a bounded retry on transport
errors and 5xx answers, because deleting a toxic can stall under load) and the in-memory
``FakeToxiproxy`` in ``resilience.testing.toxiproxy_fake`` for unit tests. Toxiproxy silently ignores
attribute keys it does not know, so toxics are checked here against ``TOXIC_ATTRIBUTES``
before anything is sent; every failure arrives as a ``ToxiproxyError`` (a ``FaultError``)
naming the endpoint and the action.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, cast

import httpx

from resilience.errors import FaultError
from resilience.tls import system_tls

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")

TOXIC_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}
"""The toxic types we use and the attribute names Toxiproxy v2.12 reads for each (all integers)."""

DEFAULT_URL = "http://127.0.0.1:8474"


class ToxiproxyError(FaultError):
    """Toxiproxy refused or failed a call; ``status`` is the HTTP status (None: no answer)."""

    def __init__(
        self, message: str, *, action: str, endpoint: str, status: int | None = None
    ) -> None:
        self.action = action
        self.endpoint = endpoint
        self.status = status
        super().__init__(message)


class ToxiproxyNotFound(ToxiproxyError):
    """The proxy or toxic does not exist (404)."""


class ToxiproxyConflict(ToxiproxyError):
    """The proxy or toxic already exists (409)."""


@dataclass(frozen=True)
class Toxic:
    """One toxic on one proxy's stream; attributes as Toxiproxy stores them (integers)."""

    name: str
    type: str
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class Proxy:
    """A Toxiproxy proxy and the toxics it carries right now."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()


def check_toxic(toxic: Toxic) -> None:
    """Refuse a toxic Toxiproxy would accept but not apply as meant (unknown keys, bad values)."""
    where = f"toxic {toxic.name!r}"
    if not toxic.name:
        raise FaultError("a toxic needs a name (Toxiproxy would invent '<type>_<stream>')")
    known = TOXIC_ATTRIBUTES.get(toxic.type)
    if known is None:
        raise FaultError(
            f"{where}: unknown toxic type {toxic.type!r} (expected one of "
            f"{', '.join(sorted(TOXIC_ATTRIBUTES))})"
        )
    if toxic.stream not in STREAMS:
        raise FaultError(f"{where}: stream must be upstream or downstream, got {toxic.stream!r}")
    if isinstance(toxic.toxicity, bool) or not 0.0 <= toxic.toxicity <= 1.0:
        raise FaultError(f"{where}: toxicity must be between 0 and 1, got {toxic.toxicity!r}")
    check_attributes(toxic.type, toxic.attributes, where=where)


def check_attributes(toxic_type: str, attributes: Mapping[str, object], *, where: str) -> None:
    """Every key known for the type, every value a non-negative integer (what Go decodes)."""
    known = TOXIC_ATTRIBUTES.get(toxic_type, ())
    for key, value in attributes.items():
        if key not in known:
            raise FaultError(
                f"{where}: unknown attribute {key!r} for a {toxic_type} toxic "
                f"(Toxiproxy would silently ignore it; known: {', '.join(known)})"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultError(
                f"{where}: attribute {key!r} must be an integer, "
                f"got {value!r} that is a {type(value).__name__}"
            )
        if value < 0:
            raise FaultError(f"{where}: attribute {key!r} must be >= 0, got {value}")


class ToxiproxyApi(Protocol):
    """What the fault timeline and the sweeper need from Toxiproxy."""

    def version(self) -> str: ...

    def proxies(self) -> dict[str, Proxy]: ...

    def proxy(self, name: str) -> Proxy: ...

    def create_proxy(
        self, name: str, listen: str, upstream: str, *, enabled: bool = True
    ) -> Proxy: ...

    def ensure_proxy(
        self, name: str, listen: str, upstream: str, *, enabled: bool = True
    ) -> Proxy: ...

    def set_enabled(self, name: str, enabled: bool) -> Proxy: ...

    def delete_proxy(self, name: str) -> bool: ...

    def toxics(self, proxy: str) -> list[Toxic]: ...

    def add_toxic(self, proxy: str, toxic: Toxic) -> Toxic: ...

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
        toxic_type: str | None = None,
    ) -> Toxic: ...

    def remove_toxic(self, proxy: str, name: str) -> bool: ...

    def reset(self) -> None: ...


def _parse_toxic(raw: object) -> Toxic:
    if not isinstance(raw, dict):
        raise ValueError(f"a toxic must be a JSON object, got {type(raw).__name__}")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise ValueError("toxic attributes must be a JSON object")
    stream = raw.get("stream", "downstream")
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return Toxic(
        name=str(raw["name"]),
        type=str(raw["type"]),
        stream=cast(Stream, stream),
        toxicity=float(raw.get("toxicity", 1.0)),
        attributes={str(k): int(v) for k, v in attributes.items()},
    )


def _parse_proxy(raw: object) -> Proxy:
    if not isinstance(raw, dict):
        raise ValueError(f"a proxy must be a JSON object, got {type(raw).__name__}")
    toxics = raw.get("toxics") or []
    if not isinstance(toxics, list):
        raise ValueError("proxy toxics must be a JSON array")
    return Proxy(
        name=str(raw["name"]),
        listen=str(raw["listen"]),
        upstream=str(raw["upstream"]),
        enabled=bool(raw["enabled"]),
        toxics=tuple(_parse_toxic(t) for t in toxics),
    )


class ToxiproxyClient:
    """The real ``ToxiproxyApi`` over httpx: timeouts on every call, bounded retries.

    A retried POST may find that its first attempt did land (409 on the second try); the
    methods that create things then read back what exists and accept it when it matches.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 3.0,
        connect_timeout: float = 1.0,
        retries: int = 2,
        backoff: float = 0.1,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            verify=system_tls(),
            # Toxiproxy answers 403 to user agents that look like browsers.
            headers={"User-Agent": "resilience-toxiproxy-client"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.base_url!r})"

    # -- transport ---------------------------------------------------------------------

    def _call(
        self, method: str, path: str, action: str, *, body: object = None
    ) -> tuple[httpx.Response, int]:
        """One logical call: the response of the last attempt and how many attempts it took.

        Retries transport errors and 5xx answers; 4xx answers are final and returned.
        """
        endpoint = f"{method} {self.base_url}{path}"
        attempts = self.retries + 1
        last_error = ""
        status: int | None = None
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                status = None
            else:
                if response.status_code < 500:
                    return response, attempt
                last_error = f"HTTP {response.status_code} {_error_text(response)}"
                status = response.status_code
            if attempt < attempts:
                logger.warning(
                    "Toxiproxy %s (%s) failed on attempt %d/%d: %s; retrying",
                    endpoint,
                    action,
                    attempt,
                    attempts,
                    last_error,
                )
                self._sleep(self.backoff * attempt)
        raise ToxiproxyError(
            f"Toxiproxy could not {action}: {endpoint} failed after {attempts} attempt(s): "
            f"{last_error}",
            action=action,
            endpoint=endpoint,
            status=status,
        )

    def _json(
        self,
        method: str,
        path: str,
        action: str,
        *,
        body: object = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[object, int]:
        response, attempts = self._call(method, path, action, body=body)
        _raise_for_status(response, action, ok)
        if response.status_code == 204:
            return None, attempts
        try:
            return response.json(), attempts
        except ValueError as exc:
            raise ToxiproxyError(
                f"Toxiproxy could not {action}: {_endpoint(response)} answered with "
                f"something that is not JSON: {response.text[:200]!r}",
                action=action,
                endpoint=_endpoint(response),
                status=response.status_code,
            ) from exc

    def _parsed(self, parse: Callable[[object], _T], data: object, action: str, path: str) -> _T:
        try:
            return parse(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ToxiproxyError(
                f"Toxiproxy could not {action}: unexpected answer from {path}: {exc!r}",
                action=action,
                endpoint=f"{self.base_url}{path}",
            ) from exc

    # -- API ---------------------------------------------------------------------------

    def version(self) -> str:
        data, _ = self._json("GET", "/version", "report its version")
        if isinstance(data, dict) and "version" in data:
            return str(data["version"])
        return str(data)

    def proxies(self) -> dict[str, Proxy]:
        action = "list proxies"
        data, _ = self._json("GET", "/proxies", action)
        if not isinstance(data, dict):
            raise ToxiproxyError(
                f"Toxiproxy could not {action}: expected a JSON object, got {data!r}"[:300],
                action=action,
                endpoint=f"GET {self.base_url}/proxies",
            )
        return {
            name: self._parsed(_parse_proxy, raw, action, "/proxies") for name, raw in data.items()
        }

    def proxy(self, name: str) -> Proxy:
        path = f"/proxies/{name}"
        action = f"show proxy {name!r}"
        data, _ = self._json("GET", path, action)
        return self._parsed(_parse_proxy, data, action, path)

    def create_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> Proxy:
        action = f"create proxy {name!r} ({listen} -> {upstream})"
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        response, attempts = self._call("POST", "/proxies", action, body=body)
        if response.status_code == 409 and attempts > 1:
            # Our first attempt may have landed before its answer was lost.
            existing = self.proxy(name)
            if (existing.listen, existing.upstream) == (listen, upstream):
                return existing
        _raise_for_status(response, action, (200, 201))
        return self._parsed(_parse_proxy, response.json(), action, "/proxies")

    def ensure_proxy(self, name: str, listen: str, upstream: str, *, enabled: bool = True) -> Proxy:
        """Make the proxy exist as described; leave its toxics alone. Idempotent."""
        try:
            current = self.proxy(name)
        except ToxiproxyNotFound:
            try:
                return self.create_proxy(name, listen, upstream, enabled=enabled)
            except ToxiproxyConflict:
                current = self.proxy(name)  # created by someone else meanwhile
        if (current.listen, current.upstream, current.enabled) == (listen, upstream, enabled):
            return current
        path = f"/proxies/{name}"
        action = f"update proxy {name!r} to {listen} -> {upstream}, enabled={enabled}"
        body = {"listen": listen, "upstream": upstream, "enabled": enabled}
        data, _ = self._json("PATCH", path, action, body=body)
        return self._parsed(_parse_proxy, data, action, path)

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        path = f"/proxies/{name}"
        action = f"{'enable' if enabled else 'disable'} proxy {name!r}"
        data, _ = self._json("PATCH", path, action, body={"enabled": enabled})
        return self._parsed(_parse_proxy, data, action, path)

    def delete_proxy(self, name: str) -> bool:
        """Delete a proxy; False if it was already gone."""
        response, _ = self._call("DELETE", f"/proxies/{name}", f"delete proxy {name!r}")
        if response.status_code == 404:
            return False
        _raise_for_status(response, f"delete proxy {name!r}", (200, 204))
        return True

    def toxics(self, proxy: str) -> list[Toxic]:
        path = f"/proxies/{proxy}/toxics"
        action = f"list the toxics of proxy {proxy!r}"
        data, _ = self._json("GET", path, action)
        if not isinstance(data, list):
            raise ToxiproxyError(
                f"Toxiproxy could not {action}: expected a JSON array from {path}",
                action=action,
                endpoint=f"GET {self.base_url}{path}",
            )
        return [self._parsed(_parse_toxic, raw, action, path) for raw in data]

    def toxic(self, proxy: str, name: str) -> Toxic:
        path = f"/proxies/{proxy}/toxics/{name}"
        action = f"show toxic {name!r} on proxy {proxy!r}"
        data, _ = self._json("GET", path, action)
        return self._parsed(_parse_toxic, data, action, path)

    def add_toxic(self, proxy: str, toxic: Toxic) -> Toxic:
        check_toxic(toxic)
        path = f"/proxies/{proxy}/toxics"
        action = f"add {toxic.type} toxic {toxic.name!r} to proxy {proxy!r}"
        response, attempts = self._call("POST", path, action, body=toxic.to_json())
        if response.status_code == 409 and attempts > 1:
            existing = self.toxic(proxy, toxic.name)
            if existing.type == toxic.type and existing.stream == toxic.stream:
                return existing
        # Toxiproxy answers 200 here (not 201); accept both in case a version changes it.
        _raise_for_status(response, action, (200, 201))
        return self._parsed(_parse_toxic, response.json(), action, path)

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
        toxic_type: str | None = None,
    ) -> Toxic:
        """Change some attributes and/or the toxicity; attributes not given keep their values.

        ``toxic_type`` lets the attribute names be checked without reading the toxic first.
        An update also re-draws, on every live connection, whether the toxic applies to it
        (``toxicity``), which the ``flaky`` fault relies on.
        """
        where = f"toxic {name!r} on proxy {proxy!r}"
        if attributes:
            kind = toxic_type or self.toxic(proxy, name).type
            check_attributes(kind, attributes, where=where)
        if toxicity is not None and (isinstance(toxicity, bool) or not 0.0 <= toxicity <= 1.0):
            raise FaultError(f"{where}: toxicity must be between 0 and 1, got {toxicity!r}")
        body: dict[str, object] = {}
        if attributes:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"/proxies/{proxy}/toxics/{name}"
        action = f"update {where}"
        data, _ = self._json("PATCH", path, action, body=body)
        return self._parsed(_parse_toxic, data, action, path)

    def remove_toxic(self, proxy: str, name: str) -> bool:
        """Remove a toxic; False if it was already gone (a 404 is success for a heal)."""
        action = f"remove toxic {name!r} from proxy {proxy!r}"
        response, _ = self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", action)
        if response.status_code == 404:
            return False
        _raise_for_status(response, action, (200, 204))
        return True

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (all of them, not only ours)."""
        response, _ = self._call("POST", "/reset", "reset all proxies")
        _raise_for_status(response, "reset all proxies", (200, 204))


def _endpoint(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url}"


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return response.text.strip()[:200]


def _raise_for_status(response: httpx.Response, action: str, ok: tuple[int, ...]) -> None:
    status = response.status_code
    if status in ok:
        return
    endpoint = _endpoint(response)
    message = f"Toxiproxy could not {action}: {endpoint} answered {status}: {_error_text(response)}"
    error_class: type[ToxiproxyError] = ToxiproxyError
    if status == 404:
        error_class = ToxiproxyNotFound
    elif status == 409:
        error_class = ToxiproxyConflict
    raise error_class(message, action=action, endpoint=endpoint, status=status)
