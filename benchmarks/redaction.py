"""How fast the redaction pass is over saved traces: MB/s on a 1 MB OTLP JSON document.

    .venv/bin/python benchmarks/redaction.py [--size-mb 1] [--repeat 15] [--traces DIR] [--no-write]

Builds an OTLP JSON document shaped like Jaeger's ``/api/v3/traces/{id}`` answer for the
shop (gateway server and client spans with http.url / url.full / http.target, orders'
pool and database spans, an exception event, a link) until it reaches ``--size-mb``; one
span in ten carries a token in its query string and an Authorization header attribute.
Times, over ``--repeat`` rounds (median reported, machine noise being what it is):
``redact_otlp`` on the parsed document; the whole file path (``json.loads``,
``redact_otlp``, ``json.dumps``); ``redact_text`` over the raw JSON text; each with the
default rules and with three literal secret values. Checks that no secret survives and
that a second pass changes nothing. ``--traces`` also times the file path over a real run's
``traces/`` directory and counts the files redaction changed (with no secret in the run,
any change is a false positive). Writes the "Redaction" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _runs import machine, write_section

from resilience.redact import Redactor

SECRETS = ("s3cr3t-query-token", "hunter2-db-password", "bearer-abcdef123456")


def _attr(key: str, value: str | int | float | bool) -> dict[str, object]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _spans(i: int) -> list[dict[str, object]]:
    trace_id = f"{i:032x}"
    secret = i % 10 == 0
    query = f"?page={i % 7}&token={SECRETS[0]}" if secret else f"?page={i % 7}&limit=20"
    base = {"traceId": trace_id, "flags": 256, "status": {}}
    server = {
        **base,
        "spanId": f"{i:08x}00000001",
        "parentSpanId": f"{i:08x}000000ff",
        "name": "GET /catalog/items",
        "kind": 2,
        "startTimeUnixNano": str(1795618897501082396 + i * 1000),
        "endTimeUnixNano": str(1795618897501082396 + i * 1000 + 800_000),
        "attributes": [
            _attr("http.request.method", "GET"),
            _attr("url.scheme", "http"),
            _attr("url.full", f"http://127.0.0.1:28400/catalog/items{query}"),
            _attr("http.target", f"/catalog/items{query}"),
            _attr("http.route", "/catalog/items"),
            _attr("server.address", "127.0.0.1"),
            _attr("server.port", 28400),
            _attr("user_agent.original", "python-requests/2.32 resilience-load/0.1"),
            _attr("http.response.status_code", 200),
            *(
                [_attr("http.request.header.authorization", f"Bearer {SECRETS[2]}")]
                if secret
                else []
            ),
        ],
    }
    client = {
        **base,
        "spanId": f"{i:08x}00000002",
        "parentSpanId": f"{i:08x}00000001",
        "name": "GET",
        "kind": 3,
        "startTimeUnixNano": str(1795618897502082396 + i * 1000),
        "endTimeUnixNano": str(1795618897502082396 + i * 1000 + 500_000),
        "attributes": [
            _attr("http.request.method", "GET"),
            _attr("http.url", f"http://127.0.0.1:28402/items{query}"),
            _attr("net.peer.name", "127.0.0.1"),
            _attr("net.peer.port", 28402),
            _attr("http.status_code", 200),
        ],
        "links": [{"traceId": trace_id, "spanId": f"{i:08x}00000003", "attributes": []}],
    }
    database = {
        **base,
        "spanId": f"{i:08x}00000003",
        "parentSpanId": f"{i:08x}00000002",
        "name": "SELECT shop",
        "kind": 3,
        "startTimeUnixNano": str(1795618897503082396 + i * 1000),
        "endTimeUnixNano": str(1795618897503082396 + i * 1000 + 250_000),
        "attributes": [
            _attr("db.system", "postgresql"),
            _attr("db.name", "shop"),
            _attr(
                "db.statement", "SELECT id, name, price FROM items ORDER BY id LIMIT $1 OFFSET $2"
            ),
            _attr("db.user", "resilience"),
            _attr("pool.wait_seconds", 0.25),
            _attr("pool.in_use", 2),
        ],
        "events": [
            {
                "timeUnixNano": str(1795618897503182396 + i * 1000),
                "name": "exception",
                "attributes": [
                    _attr("exception.type", "asyncpg.exceptions.ConnectionDoesNotExistError"),
                    _attr(
                        "exception.message",
                        f"connection to postgres://resilience:{SECRETS[1]}@127.0.0.1:28432/shop lost"
                        if secret
                        else "connection was closed in the middle of operation",
                    ),
                    _attr("exception.escaped", False),
                ],
            }
        ],
    }
    return [server, client, database]


def _resource(service: str, spans: list[dict[str, object]]) -> dict[str, object]:
    return {
        "resource": {
            "attributes": [
                _attr("service.name", service),
                _attr("service.instance.id", "ea75e702-e275-4a8c-8917-f5dad0238123"),
                _attr("telemetry.sdk.language", "python"),
                _attr("telemetry.sdk.version", "1.45.1"),
            ]
        },
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation"}, "spans": spans}],
    }


def document(size: int) -> dict[str, object]:
    gateway: list[dict[str, object]] = []
    orders: list[dict[str, object]] = []
    doc = {
        "result": {"resourceSpans": [_resource("gateway", gateway), _resource("orders", orders)]}
    }
    i = 0
    while True:
        for _ in range(50):
            server, client, database = _spans(i)
            gateway += [server, client]
            orders.append(database)
            i += 1
        if len(json.dumps(doc, separators=(",", ":"))) >= size:
            return doc


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of ``action``: the work is single-threaded and CPU-bound, and on a
    shared machine wall time also counts the other processes' turns."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def real_run(traces: Path, repeat: int) -> str:
    files = sorted(p for p in traces.glob("*.json") if p.name != "index.json")
    texts = [p.read_text(encoding="utf-8") for p in files]
    size = sum(len(t.encode()) for t in texts) / 1e6
    redactor = Redactor(SECRETS)

    def one_pass() -> int:
        changed = 0
        for text in texts:
            doc = json.loads(text)
            out = redactor.redact_otlp(doc)
            json.dumps(out, separators=(",", ":"))
            changed += out != doc
        return changed

    changed = one_pass()
    seconds = median_seconds(one_pass, repeat)
    return (
        f"A real run's traces ({traces.parent.name}): {len(files)} files, {size:.2f} MB, "
        f"loads + redact_otlp + dumps in {seconds:.2f} CPU-s ({size / seconds:.1f} MB/s); "
        f"{changed} file(s) changed by redaction (the run had no secret: 0 means no false "
        "positive)."
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--traces", type=Path, help="a run's traces/ directory to time too")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    doc = document(int(args.size_mb * 1_000_000))
    raw = json.dumps(doc, separators=(",", ":"))
    mb = len(raw.encode()) / 1e6
    rows = []
    for label, redactor in (("rules only", Redactor()), ("3 secret values", Redactor(SECRETS))):
        out = redactor.redact_otlp(doc)
        dumped = json.dumps(out, separators=(",", ":"))
        leaked = [s for s in SECRETS if s in dumped]
        assert not leaked, f"{label}: {leaked} survived"
        assert redactor.redact_otlp(out) == out, "a second pass changed the document"
        assert redactor.redact_text(redactor.redact_text(raw)) == redactor.redact_text(raw)
        walk = median_seconds(lambda r=redactor: r.redact_otlp(doc), args.repeat)
        whole = median_seconds(
            lambda r=redactor: json.dumps(r.redact_otlp(json.loads(raw)), separators=(",", ":")),
            args.repeat,
        )
        text = median_seconds(lambda r=redactor: r.redact_text(raw), args.repeat)
        rows.append((label, mb / walk, mb / whole, mb / text))

    table = "\n".join(
        f"| {label} | {walk:.1f} | {whole:.1f} | {text:.1f} |" for label, walk, whole, text in rows
    )
    real = ""
    if args.traces is not None:
        real = "\n\n" + real_run(args.traces, args.repeat)
    spans = raw.count('"spanId"') - raw.count('"links"')  # each link names a span too
    body = f"""`benchmarks/redaction.py`, {machine()}: an OTLP JSON document of {mb:.2f} MB
({spans} spans; one request in ten with a query token, an Authorization attribute and a
database URL with a password in an exception event), median of {args.repeat} rounds, MB of JSON
text per CPU-second (process time; wall time on this shared machine swung by half).

| redactor | redact_otlp (parsed) | loads + redact_otlp + dumps | redact_text (raw JSON) |
| --- | ---: | ---: | ---: |
{table}

Reading it: parsing and dumping cost about as much as redacting; most strings (ids,
numbers, names) fail the first cheap regular expression and come back untouched, and each
distinct string is redacted once per document.{real}"""
    print(body)
    if not args.no_write:
        write_section("Redaction", body)


if __name__ == "__main__":
    main()
