"""OTLP JSON to the span model and back: the one place that knows the wire shape.

Accepted shapes (all carry the same OTLP ``TracesData``):
- Jaeger v2 ``GET /api/v3/traces/{id}``: ``{"result": {"resourceSpans": [...]}}``,
  ids in hex, ``kind`` and ``status.code`` as integers, 64-bit integers as strings;
- Tempo ``GET /api/v2/traces/{id}``: ``{"trace": {"resourceSpans": [...]}}``, and the
  older ``/api/traces/{id}``: ``{"batches": [...]}``, where ids may be base64;
- a bare ``{"resourceSpans": [...]}``, what ``to_otlp_json`` writes.
Enum values may also be names (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``); the
pre-1.0 ``instrumentationLibrarySpans`` key is read like ``scopeSpans``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from resilience.errors import ObserveError
from resilience.observe.spans import (
    AttrValue,
    Span,
    SpanEvent,
    SpanKind,
    StatusCode,
    Trace,
)
from resilience.vocabulary import JSONValue

_KINDS: tuple[SpanKind, ...] = (
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
)
_STATUS: tuple[StatusCode, ...] = ("unset", "ok", "error")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_E = TypeVar("_E", bound=str)


def unwrap(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The list of ResourceSpans inside any accepted wrapper."""
    body: Any = data
    for key in ("result", "trace"):
        if isinstance(body, Mapping) and isinstance(body.get(key), Mapping):
            body = body[key]
    if not isinstance(body, Mapping):
        raise ObserveError("OTLP JSON: expected an object with resourceSpans")
    resource_spans = body.get("resourceSpans", body.get("batches"))
    if resource_spans is None:
        return []
    if not isinstance(resource_spans, list):
        raise ObserveError("OTLP JSON: resourceSpans is not a list")
    return resource_spans


def parse_otlp_json(data: Mapping[str, Any], trace_id: str | None = None) -> Trace | None:
    """Build a ``Trace`` from OTLP JSON; ``None`` when it holds no span (of ``trace_id``).

    ``raw`` on the result is the unwrapped ``{"resourceSpans": [...]}``.
    """
    try:
        wanted = normalize_id(trace_id, 16) if trace_id else None
    except ValueError as exc:
        raise ObserveError(f"OTLP JSON: {exc}") from exc
    resource_spans = unwrap(data)
    spans: list[Span] = []
    try:
        for rs in resource_spans:
            resource_attrs = _attributes(rs.get("resource", {}).get("attributes", []))
            service = str(resource_attrs.get("service.name") or "unknown_service")
            for scope in rs.get("scopeSpans", rs.get("instrumentationLibrarySpans", [])) or []:
                for raw in scope.get("spans", []) or []:
                    span = _span(raw, service)
                    if wanted is None or span.trace_id == wanted:
                        spans.append(span)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ObserveError(f"OTLP JSON: malformed span data: {exc!r}") from exc
    if not spans:
        return None
    ids = {s.trace_id for s in spans}
    if wanted is None and len(ids) > 1:
        raise ObserveError(f"OTLP JSON holds {len(ids)} traces; name the one wanted")
    return Trace(
        trace_id=wanted or spans[0].trace_id,
        spans=tuple(spans),
        raw={"resourceSpans": resource_spans},
    )


def to_otlp_json(trace: Trace) -> dict[str, JSONValue]:
    """OTLP JSON (``{"resourceSpans": [...]}``) for a trace: one resource per service."""
    by_service: dict[str, list[Span]] = {}
    for span in trace.spans:
        by_service.setdefault(span.service, []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _kvs({"service.name": service})},
                "scopeSpans": [
                    {"scope": {"name": "resilience"}, "spans": [_dump(s) for s in spans]}
                ],
            }
            for service, spans in by_service.items()
        ]
    }


def normalize_id(value: str, size: int) -> str:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex, from hex or base64."""
    text = value.strip()
    if len(text) == size * 2 and _HEX.match(text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == size:
        return raw.hex()
    if _HEX.match(text) and len(text) <= size * 2:
        # Some encoders drop leading zeros.
        return text.lower().rjust(size * 2, "0")
    raise ValueError(f"not a {size}-byte id in hex or base64: {value!r}")


def _span(raw: Mapping[str, Any], service: str) -> Span:
    parent = raw.get("parentSpanId") or None
    status = raw.get("status") or {}
    return Span(
        trace_id=normalize_id(str(raw["traceId"]), 16),
        span_id=normalize_id(str(raw["spanId"]), 8),
        parent_id=normalize_id(str(parent), 8) if parent else None,
        service=service,
        name=str(raw.get("name", "")),
        kind=_enum(raw.get("kind", 0), _KINDS, "SPAN_KIND_"),
        start_ns=int(raw.get("startTimeUnixNano", 0)),
        end_ns=int(raw.get("endTimeUnixNano", 0)),
        status_code=_enum(status.get("code", 0), _STATUS, "STATUS_CODE_"),
        status_message=str(status.get("message", "") or ""),
        attributes=_attributes(raw.get("attributes", [])),
        events=tuple(
            SpanEvent(
                name=str(e.get("name", "")),
                time_ns=int(e.get("timeUnixNano", 0)),
                attributes=_attributes(e.get("attributes", [])),
            )
            for e in raw.get("events", []) or []
        ),
    )


def _enum(value: object, names: Sequence[_E], prefix: str) -> _E:
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        text = value.removeprefix(prefix).lower()
        for name in names:
            if name == text:
                return name
        if text.isdigit() and int(text) < len(names):
            return names[int(text)]
    return names[0]


def _attributes(items: Sequence[Mapping[str, Any]] | None) -> dict[str, AttrValue]:
    return {str(kv["key"]): _value(kv.get("value", {})) for kv in items or []}


def _value(v: Mapping[str, Any]) -> AttrValue:  # noqa: PLR0911 (a dispatch on the OTLP value kind)
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_value(x) for x in (v["arrayValue"] or {}).get("values", []) or []]
    if "kvlistValue" in v:
        return _attributes((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return str(v["bytesValue"])
    return None


def _kvs(attributes: Mapping[str, AttrValue]) -> list[JSONValue]:
    return [{"key": k, "value": _any(v)} for k, v in attributes.items()]


def _any(v: AttrValue) -> dict[str, JSONValue]:  # noqa: PLR0911 (a dispatch on the attribute's type)
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_any(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": _kvs(v)}}
    if v is None:
        return {}
    return {"stringValue": str(v)}


def _dump(span: Span) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": _KINDS.index(span.kind),
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": _kvs(span.attributes),
        "events": [
            {"timeUnixNano": str(e.time_ns), "name": e.name, "attributes": _kvs(e.attributes)}
            for e in span.events
        ],
        "status": {"code": _STATUS.index(span.status_code), "message": span.status_message},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    return out
