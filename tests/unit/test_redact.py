"""Unit tests for resilience.redact: the rules by name and by shape, literal secret values,
JSON and OTLP documents, the logging filter and the file-mode policy."""

from __future__ import annotations

import ast
import copy
import html
import io
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilience.redact as redact_module
from resilience.errors import ExperimentError
from resilience.observe import parse_otlp_json
from resilience.redact import (
    DEFAULT_RUN_UMASK,
    MARKER,
    MIN_SECRET_LENGTH,
    RUN_UMASK_ENV,
    RedactingFilter,
    Redactor,
    is_secret_name,
    parse_umask,
    private_files,
    run_umask,
    tighten_tree,
)

RECORDED = Path(__file__).parent / "data" / "jaeger_orders_trace.json"
PLAIN = Redactor()

# ------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "api_key",
        "apikey",
        "API-KEY",
        "access_key",
        "AWS_SECRET_ACCESS_KEY",
        "private_key",
        "privateKey",
        "password",
        "DB_PASSWD",
        "passphrase",
        "client_secret",
        "refresh_token",
        "X-Auth-Token",
        "auth",
        "basic_auth",
        "proxyAuth",
        "X-Auth",
        "oauth",
        "credentials",
        "session",
        "JSESSIONID",
        "PHPSESSID",
        "X-Amz-Signature",
        "http.request.header.authorization",
        "db.password",
    ],
)
def test_secret_names(name: str) -> None:
    """Names of headers, keys and parameters that hold credentials are recognised."""
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "author",
        "authority",
        "authentication_method",
        "key",
        "pass",
        "passed",
        "bypass",
        "pwd",
        "status",
        "http.url",
        "url.full",
        "trace_id",
        "monkey",
        "keyboard",
        "Accept",
        "X-Request-Id",
        "server.port",
    ],
)
def test_ordinary_names(name: str) -> None:
    """Names that merely look close (author, key, passed) are not secret."""
    assert not is_secret_name(name)


# ------------------------------------------------------------------------------ text rules

TEXT_CASES = [
    # URL user-info: the password goes, the user stays.
    (
        "postgres://bob:hunter2@127.0.0.1:5432/shop",
        "postgres://bob:***@127.0.0.1:5432/shop",
    ),
    ("target http://u:p@ss@127.0.0.1:8000/ down", "target http://u:***@127.0.0.1:8000/ down"),
    ("https://token:x-oauth@github.com/", "https://token:***@github.com/"),
    ("http://bob@127.0.0.1/", "http://bob@127.0.0.1/"),
    # Query strings and fragments, in URLs or on their own.
    (
        "GET http://127.0.0.1/x?page=2&token=abc&limit=5",
        "GET http://127.0.0.1/x?page=2&token=***&limit=5",
    ),
    ("/orders?access_token=abc", "/orders?access_token=***"),
    ("http://h/#access_token=abc&state=1", "http://h/#access_token=***&state=1"),
    ('<a href="/x?a=1&amp;api_key=abc">', '<a href="/x?a=1&amp;api_key=***">'),
    ("token=abc&x=1", "token=***&x=1"),
    # Authorization schemes.
    ("Authorization: Bearer abc.def-ghi", "Authorization: ***"),
    ("sent Bearer eyJhbGciOi.x-y_z to it", "sent Bearer *** to it"),
    ("Basic dXNlcjpwYXNz", "Basic ***"),
    ("Basic load profile", "Basic load profile"),
    ("basic QUJD", "basic QUJD"),  # decodes to "ABC": no user:password
    ('WWW-Authenticate: Bearer realm="shop", error="invalid_token"', None),
    ("Bearer abc==, next", "Bearer ***, next"),
    # name=value and name: value pairs.
    ("login user=bob password=hunter2 retries=3", "login user=bob password=*** retries=3"),
    ("X-Api-Key: abc123", "X-Api-Key: ***"),
    ("Cookie: a=1; b=2", "Cookie: ***"),
    ("session=abc;path=/", "session=***;path=/"),
    ("password: hunter2 # old", "password: ***"),
    ("| token: abc | 3 |", "| token: *** | 3 |"),
    ("{password: abc}", "{password: ***}"),
    # Quoted: JSON, Python reprs, JSON inside JSON, HTML-escaped quotes.
    (
        '{"password": "x", "n": 1, "token":5}',
        '{"password": "***", "n": 1, "token":"***"}',
    ),
    (
        "{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': '*/*'}",
        "{'Authorization': '***', 'Accept': '*/*'}",
    ),
    ('{\\"secret\\": \\"abc\\"}', '{\\"secret\\": \\"***\\"}'),
    ("password=&quot;abc&quot; x", "password=&quot;***&quot; x"),
    ('"token": "a \\" b", "n": 1', '"token": "***", "n": 1'),
    ('"token": "unterminated\nnext', '"token": "***\nnext'),
    # Left alone: no value, nested structure, look-alikes, ordinary text and URLs.
    ("password=", "password="),
    ("?token=&page=2", "?token=&page=2"),
    ('{"auth": {"user": "bob"}}', '{"auth": {"user": "bob"}}'),
    ("author: Bob; authority=x", "author: Bob; authority=x"),
    ("    return await self.send(request, auth=auth, token=self._token)", None),
    ("the auth:service at 12:30:00", "the auth:service at 12:30:00"),
    (
        "http://127.0.0.1:8080/catalog/items?page=2&limit=10#top",
        "http://127.0.0.1:8080/catalog/items?page=2&limit=10#top",
    ),
    ("trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7", None),
    ('rate(http_requests_total{job="orders"}[30s]) > 0.5', None),
    ("2026-11-25T10:00:00.123Z p95=0.500 errors=3", None),
    # U+0130 lower-cases to two characters: offsets must still line up.
    ("\u0130stanbul TOKEN=abc", "\u0130stanbul TOKEN=***"),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_text_rules(text: str, expected: str | None) -> None:
    """Each text rule masks exactly the secret and keeps every other character."""
    assert PLAIN.redact_text(text) == (text if expected is None else expected)


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_text_rules_are_idempotent(text: str, expected: str | None) -> None:
    """Redacting already-redacted text changes nothing."""
    once = PLAIN.redact_text(text)
    assert PLAIN.redact_text(once) == once


def test_literal_values_in_every_spelling() -> None:
    """A literal secret is masked plain, HTML-escaped, URL-quoted and JSON-escaped."""
    secret = 'p@ss "word" <&>'
    redactor = Redactor([secret])
    spellings = [
        secret,
        html.escape(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
    ]
    for spelling in spellings:
        assert redactor.redact_text(f"before {spelling} after") == "before *** after", spelling


def test_literal_values_masked_anywhere_and_case_sensitively() -> None:
    """A literal secret is masked inside words and URLs; other casings are not the secret."""
    redactor = Redactor(["hunter2-db"])
    assert redactor.redact_text("xhunter2-dby") == "x***y"
    assert redactor.redact_text("http://h/hunter2-db/x") == "http://h/***/x"
    assert redactor.redact_text("HUNTER2-DB") == "HUNTER2-DB"
    assert Redactor(["\u00c4rger-1"]).redact_text("\u0130 \u00c4rger-1") == "\u0130 ***"


def test_short_and_star_only_values_are_not_masked_literally() -> None:
    """Values shorter than MIN_SECRET_LENGTH or made of '*' are skipped, and counted."""
    redactor = Redactor(["80", "a" * (MIN_SECRET_LENGTH - 1), "****", "", "long-enough"])
    assert redactor.redact_text("port 80, aaa, ****") == "port 80, aaa, ****"
    assert redactor.secret_count == 1
    assert redactor.skipped_count == 3  # "" is not a value at all


def test_redactor_is_immutable_and_never_shows_its_values() -> None:
    """A Redactor cannot be changed, its repr hides the values, with_secrets makes a new one."""
    base = Redactor(["first-secret"])
    with pytest.raises(AttributeError):
        base._secrets = frozenset()  # type: ignore[misc]  # the point of the test
    assert "first-secret" not in repr(base)
    more = base.with_secrets(["second-secret"])
    assert base.redact_text("second-secret") == "second-secret"
    assert more.redact_text("first-secret second-secret") == "*** ***"
    copied = pickle.loads(pickle.dumps(more))
    assert copied.redact_text("first-secret second-secret") == "*** ***"


# ------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:pw@h/p?token=abc&page=2#x", "https://u:***@h/p?token=***&page=2#x"),
        ("http://h/?api%5Fkey=abc&x=1", "http://h/?api%5Fkey=***&x=1"),
        ("http://h/?Password=a%20b;sid=1", "http://h/?Password=***;sid=1"),
        ("/orders?token=abc", "/orders?token=***"),
        ("http://h/cb#id_token=abc", "http://h/cb#id_token=***"),
        ("http://h/?token", "http://h/?token"),
        ("http://h/?token=", "http://h/?token="),
        ("http://h/token/abc?q=1", "http://h/token/abc?q=1"),
        ("http://127.0.0.1:8080/items?page=2&limit=10#top", None),
        ("postgresql://postgres@127.0.0.1:5432/shop", None),
    ],
)
def test_url_rules(url: str, expected: str | None) -> None:
    """URLs lose the user-info password and secret parameters; nothing else is rewritten."""
    assert PLAIN.redact_url(url) == (url if expected is None else expected)


# ------------------------------------------------------------------------------ headers


def test_headers() -> None:
    """Secret headers become ***; the others are scanned as text; names and order stay."""
    headers = {
        "Authorization": "Bearer abc",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Cookie": "a=b",
        "Set-Cookie": "s=1; HttpOnly",
        "X-Api-Key": "k-123",
        "X-Session-Id": "s-9",
        "X-Request-Id": "abc-123",
        "Referer": "http://h/?token=1",
        "Accept": "*/*",
        "X-Empty-Token": "",
    }
    assert PLAIN.redact_headers(headers) == {
        "Authorization": MARKER,
        "Proxy-Authorization": MARKER,
        "Cookie": MARKER,
        "Set-Cookie": MARKER,
        "X-Api-Key": MARKER,
        "X-Session-Id": MARKER,
        "X-Request-Id": "abc-123",
        "Referer": "http://h/?token=***",
        "Accept": "*/*",
        "X-Empty-Token": "",
    }
    assert list(PLAIN.redact_headers(headers)) == list(headers)


# ------------------------------------------------------------------------------ JSON


def test_json_rules() -> None:
    """Secret keys lose their values, strings are scanned, everything else is kept."""
    data = {
        "password": "x",
        "count": 3,
        "ratio": 0.25,
        "passed": True,
        "nested": {"api_key": 5, "url": "http://u:p@h/x?token=abc&page=1"},
        "token": None,
        "auth": False,
        "secret": "",
        "credentials": {"user": "bob", "id": 3, "ok": True},
        "headers": [["Authorization", "Bearer abc"]],
        "pair": ("a", 1),
        "GET /x?token=abc": 1,
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "tags": [{"key": "db.password", "type": "string", "value": "x"}],
        "when": Path("/tmp/run"),
    }
    original = copy.deepcopy(data)
    assert PLAIN.redact_json(data) == {
        "password": MARKER,
        "count": 3,
        "ratio": 0.25,
        "passed": True,
        "nested": {"api_key": MARKER, "url": "http://u:***@h/x?token=***&page=1"},
        "token": None,
        "auth": False,
        "secret": "",
        "credentials": {"user": MARKER, "id": MARKER, "ok": True},
        "headers": [["Authorization", "Bearer ***"]],
        "pair": ["a", 1],
        "GET /x?token=***": 1,
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "tags": [{"key": "db.password", "type": "string", "value": MARKER}],
        "when": "/tmp/run",
    }
    assert data == original


def test_json_keep_spares_the_strings_the_caller_vouches_for() -> None:
    """``keep(text, secret)`` sees whether the value sits under a secret name, and a kept
    string is written as it is; the others are masked as usual."""
    seen: list[tuple[str, bool]] = []

    def keep(text: str, secret: bool) -> bool:
        seen.append((text, secret))
        return text.startswith("${")

    data = {"password": "${env:PW}", "token": "raw", "url": "${x} http://u:p@h/", "n": "p@h"}
    assert PLAIN.redact_json(data, keep=keep) == {
        "password": "${env:PW}",
        "token": MARKER,
        "url": "${x} http://u:p@h/",
        "n": "p@h",
    }
    assert ("${env:PW}", True) in seen and ("${x} http://u:p@h/", False) in seen


def test_json_ids_are_never_cut_by_a_literal() -> None:
    """A literal secret that happens to occur inside a trace id leaves the id alone."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    redactor = Redactor(["77b34da6"])
    assert redactor.redact_json({"traceId": trace_id, "note": trace_id}) == {
        "traceId": trace_id,
        "note": "4bf92f35***a3ce929d0e0e4736",
    }


def _attribute(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def _hostile_trace() -> dict[str, Any]:
    """The recorded Jaeger answer with secrets added where instrumentations put them."""
    doc: dict[str, Any] = json.loads(RECORDED.read_text(encoding="utf-8"))
    resource_spans = doc["result"]["resourceSpans"]
    resource_spans[0]["resource"]["attributes"].append(
        _attribute("service.auth_token", {"stringValue": "resource-token"})
    )
    span = resource_spans[0]["scopeSpans"][0]["spans"][0]
    span["name"] = "GET /catalog/items?token=name-token"
    span["attributes"] += [
        _attribute("http.url", {"stringValue": "http://u:url-pass@127.0.0.1/x?token=q1&page=2"}),
        _attribute("url.full", {"stringValue": "http://127.0.0.1/x?api_key=q2"}),
        _attribute("http.target", {"stringValue": "/x?access_token=q3"}),
        _attribute("url.query", {"stringValue": "page=2&token=q4"}),
        _attribute(
            "http.request.header.authorization",
            {"arrayValue": {"values": [{"stringValue": "Bearer header-token"}]}},
        ),
        _attribute("http.request.header.cookie", {"stringValue": "sid=cookie-value"}),
        _attribute("session.count", {"intValue": "7"}),
        _attribute("feature.enabled", {"boolValue": True}),
        _attribute(
            "extra",
            {"kvlistValue": {"values": [_attribute("password", {"stringValue": "kv-pass"})]}},
        ),
    ]
    span["status"] = {"code": 2, "message": "failed: Authorization: Bearer status-token"}
    span["events"] = [
        {
            "timeUnixNano": "1795618897602082396",
            "name": "exception",
            "attributes": [
                _attribute(
                    "exception.message",
                    {"stringValue": "connect postgres://app:event-pass@127.0.0.1/shop failed"},
                )
            ],
        }
    ]
    span["links"] = [
        {
            "traceId": span["traceId"],
            "spanId": span["parentSpanId"],
            "attributes": [_attribute("link.secret", {"stringValue": "link-secret"})],
        }
    ]
    return doc


HOSTILE_VALUES = [
    "resource-token",
    "name-token",
    "url-pass",
    "q1",
    "q2",
    "q3",
    "q4",
    "header-token",
    "cookie-value",
    "kv-pass",
    "status-token",
    "event-pass",
    "link-secret",
]


def test_otlp_document_loses_every_secret_and_stays_valid() -> None:
    """Span, event, link, resource and nested attributes are masked; the trace still parses."""
    doc = _hostile_trace()
    redacted = PLAIN.redact_otlp(doc)
    text = json.dumps(redacted)
    assert [v for v in HOSTILE_VALUES if f"={v}" in text or f'"{v}"' in text or v in text] == []
    before = parse_otlp_json(doc)
    after = parse_otlp_json(redacted)
    assert before is not None and after is not None
    assert [s.span_id for s in after.spans] == [s.span_id for s in before.spans]
    span = next(s for s in after.spans if s.span_id == "2d26f7607df81270")
    assert span.attributes["http.url"] == "http://u:***@127.0.0.1/x?token=***&page=2"
    assert span.attributes["url.query"] == "page=2&token=***"
    assert span.attributes["http.request.header.authorization"] == MARKER
    assert span.attributes["session.count"] == MARKER
    assert span.attributes["feature.enabled"] is True
    assert span.attributes["server.port"] == 28401
    assert span.name == "GET /catalog/items?token=***"


def test_otlp_numbers_and_ids_survive_a_matching_literal() -> None:
    """A literal secret equal to a port or inside a trace id leaves intValue and ids intact."""
    doc = json.loads(RECORDED.read_text(encoding="utf-8"))
    redactor = Redactor(["28401", "6b06f851"])
    assert redactor.redact_otlp(doc) == doc


def test_otlp_without_secrets_is_unchanged() -> None:
    """The recorded trace, which holds no secret, comes back equal (with and without wrapper)."""
    doc = json.loads(RECORDED.read_text(encoding="utf-8"))
    assert PLAIN.redact_otlp(doc) == doc
    assert PLAIN.redact_otlp(doc["result"]) == doc["result"]


def test_a_whole_sample_run_directory_is_left_unchanged(tmp_path: Path) -> None:
    """Every file of a secret-free run (journal, series, traces, HTML, Markdown, JUnit) stays
    byte for byte the same under redact_text, and its JSON under redact_json."""
    from resilience.report import write_reports
    from resilience.testing.sample_run import write_sample_run

    run_dir = tmp_path / "run"
    write_reports(run_dir, write_sample_run(run_dir))
    checked = 0
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        assert PLAIN.redact_text(text) == text, path.name
        if path.suffix == ".json":
            data = json.loads(text)
            assert PLAIN.redact_json(data) == data, path.name
        checked += 1
    assert checked >= 8


# ------------------------------------------------------------------------------ properties

# Text built from the pieces the rules react to, so that the properties exercise them.
_PIECES = st.sampled_from(
    [
        "token=",
        "password: ",
        '"secret": ',
        "'auth': ",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "http://",
        "u:p@h",
        "?",
        "&",
        "&amp;",
        "&quot;",
        '"',
        "'",
        "\\",
        '\\"',
        "=",
        ":",
        " ",
        "\n",
        "*",
        MARKER,
        "{",
        "}",
        ",",
    ]
)
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=14).map("".join)
_SECRET = st.text(min_size=MIN_SECRET_LENGTH, max_size=12).filter(lambda s: bool(s.strip("*")))


def _json(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        strings,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
        ),
        max_leaves=20,
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@settings(max_examples=300)
@given(text=_TEXT, secret=_SECRET)
def test_redact_text_is_idempotent(text: str, secret: str) -> None:
    """redact_text(redact_text(x)) == redact_text(x), for text full of near-secrets."""
    redactor = Redactor([secret])
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once


@settings(max_examples=200)
@given(text=_TEXT)
def test_redact_url_is_idempotent(text: str) -> None:
    """redact_url(redact_url(x)) == redact_url(x)."""
    once = PLAIN.redact_url("http://h/p?" + text)
    assert PLAIN.redact_url(once) == once


@settings(max_examples=200)
@given(data=_json(_TEXT))
def test_redact_json_is_idempotent(data: Any) -> None:
    """redact_json(redact_json(x)) == redact_json(x) for any JSON structure."""
    once = PLAIN.redact_json(data)
    assert PLAIN.redact_json(once) == once


@settings(max_examples=300)
@given(payload=st.data(), secret=_SECRET)
def test_a_literal_secret_never_survives_in_json(payload: st.DataObject, secret: str) -> None:
    """A secret value embedded anywhere (keys, strings, at any offset) is in no output string."""
    carrying = st.builds(lambda a, b: a + secret + b, _TEXT, _TEXT)
    strings = st.one_of(_TEXT, carrying)
    data = payload.draw(_json(strings))
    planted = [data, {payload.draw(carrying): payload.draw(carrying)}]
    redacted = Redactor([secret]).redact_json(planted)
    assert [s for s in _strings(redacted) if secret in s] == []


@settings(max_examples=300)
@given(before=_TEXT, after=_TEXT, secret=_SECRET)
def test_a_literal_secret_never_survives_in_html_text(before: str, after: str, secret: str) -> None:
    """In escaped HTML, neither the secret nor its escaped spelling survives."""
    text = html.escape(before + secret + after)
    redacted = Redactor([secret]).redact_text(text)
    assert html.escape(secret) not in redacted
    assert secret not in redacted


# Characters that can start none of the rules: every secret word has an e, k, w, h or b,
# userinfo needs "@", and the Kelvin sign lower-cases to "k".
_HARMLESS = st.text(st.characters(blacklist_characters="eEkKwWhHbB@\u212a"), max_size=20)


@settings(max_examples=300)
@given(data=_json(_HARMLESS))
def test_non_secret_json_round_trips_unchanged(data: Any) -> None:
    """JSON with no secret in it comes back equal, numbers, ids and unicode included."""
    redactor = Redactor(["kkkk-never-present"])
    assert redactor.redact_json(data) == data
    assert json.dumps(redactor.redact_json(data)) == json.dumps(data)


# ------------------------------------------------------------------------------ logging


@contextmanager
def captured(redactor: Redactor) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("resilience.test_redact")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_filter_masks_message_and_args() -> None:
    """Secrets in the message template and in %-args are masked before formatting."""
    with captured(Redactor(["env-secret-value"])) as (logger, stream):
        logger.info("connecting to %s as %s", "postgres://u:pw1@h/db", "env-secret-value")
        logger.info("headers %r", {"Authorization": "Bearer tok-zq"})
        logger.info("%(url)s", {"url": "http://h/?token=abc-zq"})
        logger.warning("password=inline-one")
    out = stream.getvalue()
    for value in ("pw1", "env-secret-value", "tok-zq", "abc-zq", "inline-one"):
        assert value not in out, value
    assert "postgres://u:***@h/db as ***" in out
    assert "{'Authorization': '***'}" in out
    assert "http://h/?token=***" in out


def test_filter_masks_exceptions_and_keeps_every_record() -> None:
    """A traceback's text is masked; the record is kept, without exc_info to re-render."""
    records: list[logging.LogRecord] = []
    with captured(PLAIN) as (logger, stream):
        grab = logging.Handler()
        grab.emit = records.append  # type: ignore[method-assign]  # a recording handler
        grab.addFilter(RedactingFilter(PLAIN))
        logger.addHandler(grab)
        try:
            raise ValueError("cannot reach http://u:exc-pass@h/ with token=exc-token")
        except ValueError:
            logger.exception("failed")
        logger.removeHandler(grab)
    out = stream.getvalue()
    assert "exc-pass" not in out and "exc-token" not in out
    assert "ValueError: cannot reach http://u:***@h/ with token=***" in out
    assert len(records) == 1
    assert records[0].exc_info is None and records[0].args is None


def test_filter_survives_a_bad_format_string() -> None:
    """A record whose args do not fit its message is kept, masked, instead of raising."""
    args = ("http://u:pw9@h/",)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=t0k %d", args, None)
    assert RedactingFilter(PLAIN).filter(record)
    message = record.getMessage()
    assert "t0k" not in message and "pw9" not in message
    assert "http://u:***@h/" in message


# ------------------------------------------------------------------------------ file modes


def _umask_now() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def outer_umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_makes_0600_files_and_0700_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside the block files are 0600 and directories 0700; the old umask comes back."""
    monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    with outer_umask(0o022):
        with private_files() as mask:
            assert mask == DEFAULT_RUN_UMASK
            (tmp_path / "run").mkdir()
            (tmp_path / "run" / "logs").mkdir(parents=True)
            (tmp_path / "run" / "journal.json").write_text("{}")
            with (tmp_path / "run" / "logs" / "run.log").open("a") as log:
                log.write("x")
        assert _umask_now() == 0o022
        (tmp_path / "after.txt").write_text("x")
    assert _mode(tmp_path / "run") == 0o700
    assert _mode(tmp_path / "run" / "logs") == 0o700
    assert _mode(tmp_path / "run" / "journal.json") == 0o600
    assert _mode(tmp_path / "run" / "logs" / "run.log") == 0o600
    assert _mode(tmp_path / "after.txt") == 0o644


def test_private_files_reaches_child_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process started inside the block (a load worker) creates 0600 files too."""
    monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    target = tmp_path / "worker.log"
    with outer_umask(0o022), private_files():
        subprocess.run(
            [sys.executable, "-c", f"open({str(target)!r}, 'w').write('x')"],
            check=True,
            timeout=60,
        )
    assert _mode(target) == 0o600


def test_private_files_restores_the_umask_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the block still restores the previous umask."""
    monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    with outer_umask(0o022):
        with pytest.raises(RuntimeError), private_files():
            raise RuntimeError("boom")
        assert _umask_now() == 0o022


@pytest.mark.parametrize(
    ("enabled", "env", "modes"),
    [
        (False, None, (0o644, 0o755)),
        (True, "022", (0o644, 0o755)),
        (True, "0o027", (0o640, 0o750)),
        (True, "inherit", (0o644, 0o755)),
        (True, " 077 ", (0o600, 0o700)),
    ],
)
def test_private_files_overrides(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    enabled: bool,
    env: str | None,
    modes: tuple[int, int],
) -> None:
    """enabled=False and RESILIENCE_RUN_UMASK (a umask or 'inherit') override the policy."""
    if env is None:
        monkeypatch.delenv(RUN_UMASK_ENV, raising=False)
    else:
        monkeypatch.setenv(RUN_UMASK_ENV, env)
    with outer_umask(0o022), private_files(enabled):
        (tmp_path / "d").mkdir()
        (tmp_path / "f").write_text("x")
    assert (_mode(tmp_path / "f"), _mode(tmp_path / "d")) == modes


def test_private_files_explicit_umask_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit umask (a CLI option's value) takes precedence over the environment."""
    monkeypatch.setenv(RUN_UMASK_ENV, "022")
    with outer_umask(0o022), private_files(umask=0o077):
        (tmp_path / "f").write_text("x")
    assert _mode(tmp_path / "f") == 0o600


@pytest.mark.parametrize(
    ("text", "expected"),
    [("077", 0o077), ("0077", 0o077), ("0o022", 0o022), ("0O027", 0o027), ("inherit", None)],
)
def test_parse_umask(text: str, expected: int | None) -> None:
    """Octal umasks with or without 0 / 0o, and 'inherit', are accepted."""
    assert parse_umask(text) == expected


@pytest.mark.parametrize("text", ["abc", "999", "0o1000", "7777", "-1", "0x1f", "077 022"])
def test_parse_umask_rejects_with_a_located_message(text: str) -> None:
    """A bad value is an input error naming the variable, what was expected and what came."""
    with pytest.raises(ExperimentError) as caught:
        parse_umask(text)
    message = str(caught.value)
    assert RUN_UMASK_ENV in message and "077" in message and repr(text) in message
    assert caught.value.exit_code == 2


def test_run_umask_reads_the_environment() -> None:
    """Unset or blank means the default; a value is parsed."""
    assert run_umask({}) == DEFAULT_RUN_UMASK
    assert run_umask({RUN_UMASK_ENV: "  "}) == DEFAULT_RUN_UMASK
    assert run_umask({RUN_UMASK_ENV: "027"}) == 0o027


def test_tighten_tree(tmp_path: Path) -> None:
    """Existing files and dirs lose group/other bits, keep owner bits, links are not followed."""
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    run = tmp_path / "run"
    (run / "traces").mkdir(parents=True)
    (run / "journal.json").write_text("{}")
    (run / "traces" / "a.json").write_text("{}")
    script = run / "tool.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (run / "traces" / "a.json").chmod(0o444)
    (run / "link").symlink_to(outside)
    for directory in (run, run / "traces"):
        directory.chmod(0o755)
    (run / "journal.json").chmod(0o644)

    tighten_tree(run)

    assert _mode(run) == 0o700
    assert _mode(run / "traces") == 0o700
    assert _mode(run / "journal.json") == 0o600
    assert _mode(run / "traces" / "a.json") == 0o400  # never adds a bit
    assert _mode(script) == 0o700
    assert _mode(outside) == 0o644


def test_tighten_tree_on_a_single_file(tmp_path: Path) -> None:
    """A file given as the root is tightened on its own."""
    path = tmp_path / "report.html"
    path.write_text("x")
    path.chmod(0o664)
    tighten_tree(path, umask=0o027)
    assert _mode(path) == 0o640


# ------------------------------------------------------------------------------ boundaries


def test_module_imports_nothing_of_resilience_but_errors() -> None:
    """redact sits at the bottom of the package graph: every writer may import it."""
    tree = ast.parse(Path(redact_module.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert {m for m in imported if m.split(".")[0] == "resilience"} <= {"resilience.errors"}


def test_all_is_honest() -> None:
    """Every name in __all__ exists; every public name of the module is in __all__."""
    public = {
        name
        for name, value in vars(redact_module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", redact_module.__name__) == redact_module.__name__
        and not isinstance(value, type(redact_module))
    }
    assert set(redact_module.__all__) == public
    for name in redact_module.__all__:
        assert hasattr(redact_module, name)


def test_an_id_key_that_is_itself_the_secret_is_masked() -> None:
    """Hypothesis found it: the secret "traceID" planted as a key survived, because id keys
    were exempt before their own name was looked at."""
    redacted = Redactor(["traceID"]).redact_json({"traceID": "abc", "spanId": "0af7651916cd"})
    assert [s for s in _strings(redacted) if "traceID" in s] == []
    assert "0af7651916cd" in _strings(redacted)
