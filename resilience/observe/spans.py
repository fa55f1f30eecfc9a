"""The span model: one trace's spans and the questions detectors ask of them.

``Span`` and ``Trace`` are plain, immutable values built from OTLP JSON (``otlp.py``), so
they are the same whether a trace came from Jaeger, Tempo or a run directory. A ``Trace``
answers: its root and tree (``root``, ``parent``, ``children``), which services it
crossed, its critical path (the chain of last-finishing children), error and timeout
spans, *waits* on shared resources, and *server gaps*: an HTTP client span whose server
span is missing or starts late, the trace of a request that queued before the callee
could take it (DESIGN.md, "How findings are decided").

Waits are attribute-driven (``WaitRule``): by default a span is a wait when it carries
``resilience.wait.kind`` (the kind of resource: ``pool``, ``worker``, ``lock``, ...; the
resource named by ``resilience.wait.resource``), which any target can set, or when it has
the shop's pool attributes (``pool.size``; the pool named by ``pool``), which the shop puts
on its ``pool.acquire`` spans. ``dependency_footprint`` reduces traces to what each endpoint touched
(services, peer addresses, database systems) so "does endpoint X touch the postgres
proxy?" is a set lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeAlias

SpanKind = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
StatusCode = Literal["unset", "ok", "error"]

AttrValue: TypeAlias = "str | int | float | bool | list[AttrValue] | dict[str, AttrValue] | None"

WAIT_KIND = "resilience.wait.kind"
"""Span attribute marking a wait on a shared resource; its value names the kind."""
WAIT_RESOURCE = "resilience.wait.resource"
"""Span attribute naming the resource waited for (optional)."""

# Attribute names across OpenTelemetry semantic-convention versions (new first).
_METHOD_KEYS = ("http.request.method", "http.method")
_ROUTE_KEYS = ("http.route",)
_PATH_KEYS = ("url.path", "http.target")
_STATUS_KEYS = ("http.response.status_code", "http.status_code")
_PEER_HOST_KEYS = ("server.address", "net.peer.name", "network.peer.address", "net.sock.peer.addr")
_PEER_PORT_KEYS = ("server.port", "net.peer.port", "network.peer.port", "net.sock.peer.port")
_DB_KEYS = ("db.system.name", "db.system")

_TIMEOUT_PATTERN = re.compile(r"time[ _-]?out|timed out|deadline", re.IGNORECASE)
_POOL_FULL_PATTERN = re.compile(
    r"exhaust|pool (is )?full|limit (of \d+ )?(reached|exceeded)|overflow|"
    r"no (free|available|idle) connection|too many (connections|clients)",
    re.IGNORECASE,
)
"""Error texts of a pool (or a server's connection limit) that had nothing to give."""


@dataclass(frozen=True)
class SpanEvent:
    """A timestamped event inside a span (e.g. an ``exception``)."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One span; times in nanoseconds since the epoch, ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status_code: StatusCode = "unset"
    status_message: str = ""
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    def __hash__(self) -> int:
        # Attributes are dicts; a span is identified by its ids (usable in sets and keys).
        return hash((self.trace_id, self.span_id))

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def duration_s(self) -> float:
        return self.duration_ns / 1e9

    @property
    def is_error(self) -> bool:
        return self.status_code == "error"

    def attr(self, *keys: str) -> AttrValue:
        """The first of ``keys`` present in the attributes, else ``None``."""
        for key in keys:
            if key in self.attributes:
                return self.attributes[key]
        return None

    @property
    def http_method(self) -> str | None:
        value = self.attr(*_METHOD_KEYS)
        return str(value) if value is not None else None

    @property
    def http_route(self) -> str | None:
        value = self.attr(*_ROUTE_KEYS) or self.attr(*_PATH_KEYS)
        return str(value) if value is not None else None

    @property
    def http_status(self) -> int | None:
        value = self.attr(*_STATUS_KEYS)
        return _as_int(value)

    @property
    def db_system(self) -> str | None:
        value = self.attr(*_DB_KEYS)
        return str(value) if value is not None else None

    @property
    def peer(self) -> tuple[str, int | None] | None:
        """(host, port) this span talked to, from server.* / net.peer.* attributes."""
        host = self.attr(*_PEER_HOST_KEYS)
        if host is None:
            return None
        return str(host), _as_int(self.attr(*_PEER_PORT_KEYS))

    @property
    def peer_address(self) -> str | None:
        """``host:port`` (or ``host``) of ``peer``."""
        peer = self.peer
        if peer is None:
            return None
        host, port = peer
        return host if port is None else f"{host}:{port}"

    @property
    def is_timeout(self) -> bool:
        """An error span whose status or exception says it timed out."""
        if not self.is_error:
            return False
        texts = [self.status_message]
        for event in self.events:
            if event.name == "exception":
                texts.extend(
                    str(event.attributes.get(k, ""))
                    for k in ("exception.type", "exception.message")
                )
        texts.append(str(self.attributes.get("error.type", "")))
        return any(_TIMEOUT_PATTERN.search(t) for t in texts if t)


@dataclass(frozen=True)
class WaitRule:
    """Which spans are waits: those carrying ``attribute``.

    The kind of resource is ``kind`` or, when ``kind`` is ``None``, the attribute's value;
    the resource's name comes from ``resource_attribute``.
    """

    attribute: str
    kind: str | None = None
    resource_attribute: str | None = None

    def match(self, span: Span) -> Wait | None:
        value = span.attributes.get(self.attribute)
        if value is None:
            return None
        resource = span.attributes.get(self.resource_attribute) if self.resource_attribute else None
        return Wait(
            span,
            self.kind if self.kind is not None else str(value),
            str(resource) if resource is not None else None,
        )


DEFAULT_WAIT_RULES: tuple[WaitRule, ...] = (
    WaitRule(WAIT_KIND, resource_attribute=WAIT_RESOURCE),
    # The shop's pool.acquire spans (resilience/shop/pools.py).
    WaitRule("pool.size", kind="pool", resource_attribute="pool"),
)


@dataclass(frozen=True)
class Wait:
    """A span that waited on a shared resource (see ``WAIT_KIND``)."""

    span: Span
    kind: str
    resource: str | None

    @property
    def duration_s(self) -> float:
        return self.span.duration_s

    @property
    def failed(self) -> bool:
        """The wait ended in an error (e.g. a pool acquire timeout)."""
        return self.span.is_error

    @property
    def gave_up(self) -> bool:
        """The wait failed because the resource had nothing to give: it timed out, its
        error says the pool was full or at a limit, or the span shows every connection in
        use (``pool.in_use`` at ``pool.size``). A wait that failed at once for another
        reason (the dependency refused a new connection) is the dependency's failure, not
        the pool's exhaustion."""
        span = self.span
        if not span.is_error:
            return False
        if span.is_timeout:
            return True
        in_use, size = span.attributes.get("pool.in_use"), span.attributes.get("pool.size")
        if isinstance(in_use, int | float) and isinstance(size, int | float) and 0 < size <= in_use:
            return True
        texts = [span.status_message, str(span.attributes.get("error.type", ""))]
        for event in span.events:
            if event.name == "exception":
                texts.extend(
                    str(event.attributes.get(k, ""))
                    for k in ("exception.type", "exception.message")
                )
        return any(_POOL_FULL_PATTERN.search(t) for t in texts if t)


GapKind = Literal["missing", "late"]


@dataclass(frozen=True)
class ServerGap:
    """An HTTP client span whose callee's server span is missing or started late.

    ``delay_s`` is server start minus client start (``None`` when missing).
    """

    client: Span
    server: Span | None
    kind: GapKind
    delay_s: float | None

    @property
    def peer(self) -> str | None:
        return self.client.peer_address


@dataclass(frozen=True)
class Trace:
    """A trace: its id and spans (any order). ``raw`` keeps the OTLP JSON it came from."""

    trace_id: str
    spans: tuple[Span, ...]
    raw: Mapping[str, object] | None = field(default=None, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash(self.trace_id)

    @cached_property
    def _by_id(self) -> dict[str, Span]:
        return {s.span_id: s for s in self.spans}

    @cached_property
    def _children(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for s in sorted(self.spans, key=lambda s: (s.start_ns, s.span_id)):
            if s.parent_id is not None:
                out.setdefault(s.parent_id, []).append(s)
        return out

    def span(self, span_id: str) -> Span | None:
        return self._by_id.get(span_id)

    def parent(self, span: Span) -> Span | None:
        return self._by_id.get(span.parent_id) if span.parent_id else None

    def children(self, span: Span) -> list[Span]:
        """Direct children, earliest first."""
        return list(self._children.get(span.span_id, []))

    def roots(self) -> list[Span]:
        """Spans without a parent in this trace (a complete trace has exactly one)."""
        return sorted(
            (s for s in self.spans if s.parent_id is None or s.parent_id not in self._by_id),
            key=lambda s: s.start_ns,
        )

    def root(self) -> Span | None:
        """The span without a parent; if spans are missing, the earliest orphan."""
        true_roots = [s for s in self.roots() if s.parent_id is None]
        if true_roots:
            return true_roots[0]
        orphans = self.roots()
        return orphans[0] if orphans else None

    @property
    def is_complete(self) -> bool:
        """Every parent is present but one: the root's parent may be remote.

        The load engine sends a ``traceparent`` of its own and exports no span for it, so
        a complete trace of a request it sent has one root whose parent is not stored.
        """
        return len(self.roots()) == 1

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.spans), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def duration_s(self) -> float:
        return self.duration_ns / 1e9

    def services(self) -> set[str]:
        return {s.service for s in self.spans}

    def spans_by_service(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for s in sorted(self.spans, key=lambda s: s.start_ns):
            out.setdefault(s.service, []).append(s)
        return out

    def longest_span_per_service(self) -> dict[str, Span]:
        return {
            service: max(spans, key=lambda s: s.duration_ns)
            for service, spans in self.spans_by_service().items()
        }

    def critical_path(self) -> list[Span]:
        """Root first, then at each level the child that finished last (within its parent).

        An approximation of Jaeger's critical path: it follows the one child that kept the
        parent open the longest; children that outlive their parent (fire-and-forget) are
        skipped unless nothing else is there.
        """
        path: list[Span] = []
        current = self.root()
        seen: set[str] = set()
        while current is not None and current.span_id not in seen:
            path.append(current)
            seen.add(current.span_id)
            children = self.children(current)
            if not children:
                break
            inside = [c for c in children if c.end_ns <= current.end_ns] or children
            current = max(inside, key=lambda c: (c.end_ns, c.duration_ns))
        return path

    def error_spans(self) -> list[Span]:
        return sorted((s for s in self.spans if s.is_error), key=lambda s: s.start_ns)

    def timeout_spans(self) -> list[Span]:
        return [s for s in self.error_spans() if s.is_timeout]

    def waits(
        self, min_duration_s: float = 0.0, rules: Sequence[WaitRule] = DEFAULT_WAIT_RULES
    ) -> list[Wait]:
        """Spans that waited on a shared resource (first matching rule), earliest first."""
        out: list[Wait] = []
        for s in sorted(self.spans, key=lambda s: s.start_ns):
            if s.duration_s < min_duration_s:
                continue
            wait = next((w for w in (r.match(s) for r in rules) if w is not None), None)
            if wait is not None:
                out.append(wait)
        return out

    def server_gaps(self, late_after_s: float = 0.1) -> list[ServerGap]:
        """HTTP client spans whose server span is missing or starts ``late_after_s`` late.

        Only client spans with an HTTP method and no database system are considered: a
        database or an uninstrumented service never has a server span to miss. Right
        after a request a missing span may still be in flight to the backend; fetch
        traces with a settle time before reading "missing" as evidence.
        """
        gaps: list[ServerGap] = []
        for client in sorted(self.spans, key=lambda s: s.start_ns):
            if client.kind != "client" or client.http_method is None or client.db_system:
                continue
            servers = [c for c in self.children(client) if c.kind == "server"]
            if not servers:
                gaps.append(ServerGap(client, None, "missing", None))
                continue
            server = servers[0]
            delay = (server.start_ns - client.start_ns) / 1e9
            if delay > late_after_s:
                gaps.append(ServerGap(client, server, "late", delay))
        return gaps

    def endpoint(self) -> str | None:
        """``"METHOD route"`` of the root span (e.g. ``GET /catalog/items``), else its name."""
        root = self.root()
        if root is None:
            return None
        method, route = root.http_method, root.http_route
        if method and route:
            return f"{method} {route}"
        return root.name

    def touched(self) -> set[str]:
        """What this trace touched, as tagged strings (see ``dependency_footprint``)."""
        out: set[str] = set()
        for s in self.spans:
            out.add(f"service:{s.service}")
            db = s.db_system
            if db:
                out.add(f"db:{db}")
            if s.kind in ("client", "producer") or db:
                address = s.peer_address
                if address:
                    out.add(f"peer:{address}")
        return out


def dependency_footprint(
    traces: Iterable[Trace], endpoints: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """For each endpoint, the union of what its traces touched.

    The endpoint of a trace is ``endpoints[trace_id]`` (the load engine's name for the
    request) when given, else the root span's ``METHOD route``. Members are tagged strings:
    ``service:<name>``, ``peer:<host>:<port>`` (addresses client spans called, e.g. the
    Toxiproxy listen address of a proxy) and ``db:<system>`` (``db:postgresql``).
    """
    footprint: dict[str, set[str]] = {}
    for trace in traces:
        endpoint = (endpoints or {}).get(trace.trace_id) or trace.endpoint() or "unknown"
        footprint.setdefault(endpoint, set()).update(trace.touched())
    return footprint


def touches(
    footprint: Mapping[str, set[str]],
    endpoint: str,
    *,
    address: str | None = None,
    service: str | None = None,
    db: str | None = None,
) -> bool:
    """Whether ``endpoint``'s footprint includes the address, service or db system given."""
    members = footprint.get(endpoint, set())
    wanted = [
        f"peer:{address}" if address else None,
        f"service:{service}" if service else None,
        f"db:{db}" if db else None,
    ]
    return any(w in members for w in wanted if w)


def endpoints_touching(footprint: Mapping[str, set[str]], member: str) -> set[str]:
    """Endpoints whose footprint holds ``member`` (e.g. ``"peer:127.0.0.1:25432"``)."""
    return {endpoint for endpoint, members in footprint.items() if member in members}


def _as_int(value: AttrValue) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
