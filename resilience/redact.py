"""Keeping secrets out of what a run leaves behind: one redaction pass, private file modes.

A run directory is evidence that people attach to tickets and pass around, so it must not
carry the credentials the experiment used: a password in the target URL, a bearer token in
a header, a token in a query string that the target's spans record as ``http.url``. Every
writer of the run directory (journal, reports, trace files, Prometheus series, the logs of
the parent and of the load workers) applies the same ``Redactor``, so the rules live here,
at the bottom of the package graph: this module imports nothing from resilience but the
errors. Redaction is by rule, not by allowlist, because most of what a run writes (numbers,
ids, endpoint names, ordinary URLs) must survive byte for byte; a secret is replaced by
``***`` (``MARKER``) and everything around it is kept. Every method is idempotent, so a
writer may redact what an earlier writer already redacted. The second half sets file modes:
run directories 0700 and files 0600 by default (``RESILIENCE_RUN_UMASK`` overrides), because
a run directory under a shared home or /tmp is otherwise readable by every local user.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeAlias, overload
from urllib.parse import quote, quote_plus, unquote_plus

from resilience.errors import ExperimentError

__all__ = [
    "DEFAULT_RUN_UMASK",
    "MARKER",
    "MIN_SECRET_LENGTH",
    "RUN_UMASK_ENV",
    "JSONValue",
    "RedactingFilter",
    "Redactor",
    "is_secret_name",
    "parse_umask",
    "private_files",
    "run_umask",
    "tighten_tree",
]

MARKER: Final = "***"
"""What a redacted value is replaced with, everywhere (text, URLs, headers, JSON, spans)."""

MIN_SECRET_LENGTH: Final = 4
"""Literal secret values shorter than this are not masked on their own: masking "80" or
"abc" everywhere would corrupt ports, numbers and words. Rules by name still apply."""

JSONValue: TypeAlias = "dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None"
Keep: TypeAlias = Callable[[str, bool], bool]
"""``keep(text, secret)``: True for a string ``redact_json`` should write as it is."""

# ------------------------------------------------------------------------------- names

# Substrings that make a name secret wherever they occur in it (case-insensitive). The
# list follows Sentry's scrubber denylist, with the spellings headers and env vars use.
_SECRET_WORDS = (
    r"pass(?:word|wd|phrase)|secret|token|credential|api[-_.]?key|access[-_.]?key"
    r"|private[-_.]?key|cookie|authorization|session|sessid|signature"
)
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
# "auth" only as a word of its own (auth, basic_auth, proxyAuth, X-Auth): as a substring
# it would take "author", "authority" and "authentication_method" too.
_AUTH_WORDS = frozenset({"auth", "authn", "authz", "oauth", "oauth2"})
_NAME_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# A key such as "GET /orders?token=abc" (an endpoint) is not a name: its value is data.
_NOT_A_NAME = re.compile(r"[/?=&#@\"'<>{}()\[\],;\t\r\n]")


@functools.lru_cache(maxsize=4096)  # names repeat (every span has http.url): a pure memo
def is_secret_name(name: str) -> bool:
    """True when a header, key, parameter or attribute called ``name`` holds a secret.

    Secret: names containing password, passwd, passphrase, secret, token, credential,
    api-key / api_key / apikey, access_key, private_key, cookie, authorization, session,
    sessid or signature (any case, any separator), and names with the word auth (auth,
    basic_auth, X-Auth, proxyAuth, authn, authz, oauth). Not secret: author, authority,
    key, pass, pwd, and strings that are not names (with / ? = & # @ quotes or brackets:
    "GET /x?token=abc" is an endpoint; its own secret is masked as text)."""
    if _NOT_A_NAME.search(name):
        return False
    if _SECRET_NAME.search(name):
        return True
    if "auth" not in name.lower():
        return False
    return any(word.lower() in _AUTH_WORDS for word in _NAME_WORDS.split(name))


# ------------------------------------------------------------------------------ text rules

# Cheap first look, on the lower-cased string: one that matches none of these is returned
# untouched, which keeps redaction of whole trace files fast (most strings are ids, numbers
# and plain words). Case-insensitive matching in `re` costs about eight times as much.
_TRIGGER = re.compile(rf"{_SECRET_WORDS}|auth|bearer|basic|://[^\s/?#@]*@")
# Where a secret-looking name may be, in the lower-cased string.
_NAME_CORE = re.compile(rf"{_SECRET_WORDS}|auth")

# scheme://user:password@ -> scheme://user:***@ (the user is kept: it is useful and seldom
# secret). The password runs to the last "@" of the authority, so "p@ss" is taken whole.
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_AUTHORITY = re.compile(r"(?P<user>[^\s/?#@:\"'<>]*:)(?P<password>[^\s/?#\"'<>]+)@")
# A credential (RFC 7235 token68) is not followed by more "=" or a quote: that would be an
# auth-param of a challenge, as in WWW-Authenticate: Bearer realm="shop".
_BEARER = re.compile(
    r"(?P<head>\bbearer[ \t]+)(?P<credential>[A-Za-z0-9\-._~+/]+=*)(?![A-Za-z0-9\-._~+/=\"])",
    re.I,
)
# "Basic" is also an English word: only a credential that decodes to user:password counts.
_BASIC = re.compile(
    r"(?P<head>\bbasic[ \t]+)(?P<credential>[A-Za-z0-9+/]+=*)(?![A-Za-z0-9+/=\"])", re.I
)

# A pair is a name, the same quote (or none) on both sides of it, a separator, a value. The
# quotes are those of JSON, Python reprs, HTML attributes (escaped) and JSON inside JSON.
_QUOTES = ('\\"', "\\'", "&quot;", "&#34;", "&#x27;", "&#39;", '"', "'")
_SEP = re.compile(r"[ \t]*[=:][ \t]*")
_QUOTED_BODY = {
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"(?:[^'\\\n]|\\.)*'"),
}
# Where an unquoted value ends: after "=" or a quoted name's ":" (a JSON number) at the
# first delimiter of a query string, a cookie, a log line or a JSON object; after an
# unquoted name's ": " (a header or YAML line) at the end of the line or a closing bracket.
_WORD_VALUE_END = re.compile(r"[\s&;,\"'<>)\]}|]")
_LINE_VALUE_END = re.compile(r"[\r\n\"'<>|\]}]")


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "_.-"


def _lower(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (U+0130) lower to two: keep offsets aligned with ASCII lowering.
    return "".join(c.lower() if c.isascii() else c for c in text)


def _redact_userinfo(text: str) -> str:
    """scheme://user:password@ -> scheme://user:***@ for every URL in ``text``."""
    parts: list[str] = []
    kept = 0
    at = text.find("://")
    while at >= 0:
        first = at
        while first > 0 and text[first - 1] in _SCHEME_CHARS:
            first -= 1
        while first < at and not text[first].isalpha():  # a scheme starts with a letter
            first += 1
        authority = _AUTHORITY.match(text, at + 3) if first < at else None
        if authority is not None:
            parts.append(text[kept : authority.start("password")])
            parts.append(MARKER)
            kept = authority.end("password")
            at = text.find("://", authority.end())
        else:
            at = text.find("://", at + 3)
    if not parts:
        return text
    parts.append(text[kept:])
    return "".join(parts)


def _value_end(text: str, start: int, sep: str, name_quote: str) -> tuple[int, str, str] | None:
    """Where the value starting at ``start`` ends, and the quotes to put around the marker.

    None when there is no value to hide (empty, or a nested {..}/[..] structure whose own
    pairs are redacted one by one, or a "name:value" without a space that is a URL's
    user-info or a time, not a pair)."""
    for quote_ in _QUOTES:
        if text.startswith(quote_, start):
            body = start + len(quote_)
            line_end = text.find("\n", body)
            line_end = len(text) if line_end < 0 else line_end
            if len(quote_) > 1:  # \" or an HTML entity: no escapes inside
                close = text.find(quote_, body, line_end)
                found_end = -1 if close < 0 else close + len(quote_)
            else:
                closed = _QUOTED_BODY[quote_].match(text, body)
                found_end = -1 if closed is None else closed.end()
            if found_end < 0:  # unterminated: hide the rest of the line
                return line_end, quote_, ""
            return found_end, quote_, quote_
    if start >= len(text) or text[start] in "{[":
        return None
    if "=" in sep or name_quote:
        found = _WORD_VALUE_END.search(text, start)
        end = found.start() if found else len(text)
    else:
        if not sep.endswith((" ", "\t")):
            return None
        found = _LINE_VALUE_END.search(text, start)
        end = found.start() if found else len(text)
        while end > start and text[end - 1] in " \t,;":
            end -= 1
    if end == start:
        return None
    # Quoted like its name, so that a JSON value ("token": 123) stays valid JSON.
    return end, name_quote, name_quote


def _redact_pairs(text: str) -> str:
    lowered = _lower(text)
    parts: list[str] = []
    kept = at = 0
    size = len(text)
    while True:
        core = _NAME_CORE.search(lowered, at)
        if core is None:
            break
        first, last = core.start(), core.end()
        while first > kept and _is_name_char(text[first - 1]):
            first -= 1
        while last < size and _is_name_char(text[last]):
            last += 1
        at = last
        if not is_secret_name(text[first:last]):
            continue
        quote_ = next(
            (q for q in _QUOTES if first >= len(q) and text.startswith(q, first - len(q))), ""
        )
        if quote_ and text.startswith(quote_, last):
            last += len(quote_)
        else:
            quote_ = ""
        sep = _SEP.match(text, last)
        if sep is None:
            continue
        found = _value_end(text, sep.end(), sep[0], quote_)
        if found is None:
            at = sep.end()
            continue
        end, opening, closing = found
        if not opening and _passes_itself(text[first:last], text[sep.end() : end]):
            at = end
            continue
        parts.append(text[kept : sep.end()])
        parts.append(f"{opening}{MARKER}{closing}")
        kept = at = end
    if not parts:
        return text
    parts.append(text[kept:])
    return "".join(parts)


def _passes_itself(name: str, value: str) -> bool:
    """``auth=auth`` or ``token=self._token``: a line of source code in a traceback (httpx's
    ``self.send(request, auth=auth)``), where the value names a variable, not a secret."""
    return value in (name, f"self.{name}", f"self._{name}")


def _basic_credential(match: re.Match[str]) -> str:
    credential = match["credential"]
    if len(credential) % 4 == 0:
        try:
            decoded = base64.b64decode(credential, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if b":" in decoded:
            return match["head"] + MARKER
    return match[0]


def _literal_forms(value: str) -> set[str]:
    """The spellings a literal secret takes in what a run writes."""
    return {
        value,
        html.escape(value),
        html.escape(value, quote=False),
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


# ------------------------------------------------------------------------------ structures

# OTLP JSON's AnyValue: {"stringValue": ...} and its siblings. An attribute named like a
# secret gets {"stringValue": "***"}, which every OTLP reader accepts (an "intValue" of
# "***" would not parse).
_ANY_VALUE_KEYS = frozenset(
    {
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    }
)
# Keys whose values are identifiers, never secrets: left alone so that a literal secret can
# never cut into a trace id.
_ID_KEYS = frozenset(
    {
        "traceId",
        "spanId",
        "parentSpanId",
        "trace_id",
        "span_id",
        "parent_span_id",
        "traceID",
        "spanID",
    }
)
_FIXPOINT_ROUNDS = 8


class Redactor:
    """Replaces secrets with ``MARKER`` in text, URLs, headers, JSON data and OTLP spans.

    Immutable. ``Redactor()`` applies the rules by name and shape; ``Redactor(values)`` also
    masks each literal value (the values an experiment took from ``${env:NAME}``) wherever
    it appears, in its plain, HTML-escaped, URL-quoted and JSON-escaped spellings. Values
    shorter than ``MIN_SECRET_LENGTH`` or made only of ``*`` are not masked literally."""

    __slots__ = ("_given", "_literals", "_secrets")

    _given: frozenset[str]
    _secrets: frozenset[str]
    _literals: re.Pattern[str] | None

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        given = frozenset(s for s in secrets if s)
        kept = frozenset(s for s in given if len(s) >= MIN_SECRET_LENGTH and s.strip("*"))
        forms = sorted({f for s in kept for f in _literal_forms(s)}, key=lambda f: (-len(f), f))
        literals = "|".join(re.escape(f) for f in forms)
        object.__setattr__(self, "_given", given)
        object.__setattr__(self, "_secrets", kept)
        object.__setattr__(self, "_literals", re.compile(literals) if literals else None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Redactor is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Redactor is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[type[Redactor], tuple[tuple[str, ...]]]:
        return (Redactor, (tuple(sorted(self._given)),))

    def __repr__(self) -> str:
        # Never the values themselves: a repr ends up in logs.
        return f"Redactor({len(self._secrets)} secret value(s))"

    def with_secrets(self, values: Iterable[str]) -> Redactor:
        """A new redactor that masks ``values`` as well as this one's."""
        return Redactor(self._given | frozenset(values))

    @property
    def secret_count(self) -> int:
        """How many literal values are masked."""
        return len(self._secrets)

    @property
    def skipped_count(self) -> int:
        """How many given values were too short (or only ``*``) to mask literally."""
        return len(self._given) - len(self._secrets)

    # -- text -------------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        """Free text (a log line, HTML, Markdown, XML, YAML) with its secrets masked.

        Masks: the literal secret values; the password of ``scheme://user:password@``;
        ``Bearer <token>``; ``Basic <base64 of user:password>``; the value of every
        ``name=value`` and ``name: value`` pair whose name is secret (see
        ``is_secret_name``), quoted or not, including JSON, Python reprs and HTML-escaped
        quotes. Everything else is kept byte for byte."""
        if not self._worth_a_look(text):
            return text
        return self._fixpoint(text, self._text_once)

    def _worth_a_look(self, text: str) -> bool:
        # Literal values are looked for in the text as it is: lower-casing may change
        # non-ASCII letters, and a secret must never slip past the first look.
        return _TRIGGER.search(_lower(text)) is not None or (
            self._literals is not None and self._literals.search(text) is not None
        )

    def _text_once(self, text: str) -> str:
        if self._literals is not None:
            text = self._literals.sub(MARKER, text)
        if "@" in text:
            text = _redact_userinfo(text)
        lowered = _lower(text)
        if "bearer" in lowered:
            text = _BEARER.sub(lambda m: m["head"] + MARKER, text)
        if "basic" in lowered:
            text = _BASIC.sub(_basic_credential, text)
        return _redact_pairs(text)

    @staticmethod
    def _fixpoint(text: str, once: Callable[[str], str]) -> str:
        # One pass is enough for every realistic input; repeating until nothing changes
        # makes idempotence hold even when a mask completes a new match (a secret value
        # that contains "*", a pair that a URL rule just exposed).
        for _ in range(_FIXPOINT_ROUNDS):
            done = once(text)
            if done == text:
                return done
            text = done
        return text

    # -- URLs -------------------------------------------------------------------------

    def redact_url(self, url: str) -> str:
        """A URL with the user-info password and secret query/fragment parameters masked.

        ``https://u:pw@h/p?token=abc&page=2#x`` -> ``https://u:***@h/p?token=***&page=2#x``.
        Names are compared after percent-decoding; the rest is kept as written (no
        re-encoding, no reordering)."""
        if "%" not in url and not self._worth_a_look(url):
            return url
        return self._fixpoint(url, self._url_once)

    def _url_once(self, url: str) -> str:
        if self._literals is not None:
            url = self._literals.sub(MARKER, url)
        if "@" in url:
            url = _redact_userinfo(url)
        cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
        if cut < 0:
            return url
        return url[: cut + 1] + re.sub(r"[^&;#]+", _query_part, url[cut + 1 :])

    # -- headers ----------------------------------------------------------------------

    def redact_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with every secret-named header's value replaced by ``MARKER``.

        Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and any name
        ``is_secret_name`` accepts; other values go through ``redact_text`` (a Referer may
        carry a token). Names and order are kept."""
        return {
            name: (MARKER if value and is_secret_name(name) else self.redact_text(value))
            for name, value in headers.items()
        }

    # -- JSON -------------------------------------------------------------------------

    @overload
    def redact_json(
        self, value: Mapping[str, object], *, keep: Keep | None = None
    ) -> dict[str, JSONValue]: ...
    @overload
    def redact_json(self, value: str, *, keep: Keep | None = None) -> str: ...
    @overload
    def redact_json(self, value: object, *, keep: Keep | None = None) -> JSONValue: ...
    def redact_json(self, value: object, *, keep: Keep | None = None) -> JSONValue:
        """JSON-like data (dicts, lists, tuples, strings, numbers) with its secrets masked.

        A value under a secret-named key becomes ``MARKER`` (strings and numbers; inside a
        nested dict or list under such a key, every string and number); booleans, nulls
        and empty strings are kept. ``{"key": name, "value": v}`` objects (OTLP and Jaeger
        attributes) count ``name`` as the key. Every other string, keys included, goes
        through ``redact_text``. Keys that hold ids (traceId, spanId, ...) are kept as
        they are. Returns new containers (tuples become lists, keys become strings, other
        objects their redacted ``str()``); the input is not changed. Two keys that differ
        only in a secret merge into one.

        ``keep(text, secret)`` may spare string values the caller knows hold no secret
        (``secret``: the value sits under a secret-named key), such as the experiment
        copy's ``${env:NAME}`` references: a kept string is written as it is."""
        return _Walk(self.redact_text, keep).value(value, False)

    def redact_otlp(self, document: Mapping[str, object]) -> dict[str, JSONValue]:
        """An OTLP JSON document (as Jaeger's ``/api/v3/traces/{id}`` returns it, with or
        without its ``result`` wrapper) with its secrets masked; still valid OTLP.

        Span, event and link attributes, resource and scope attributes, span names and
        status messages are redacted: secret-named attributes (``http.request.header.
        authorization``) become ``{"stringValue": "***"}``, string values are scanned
        (``http.url``, ``url.full``, ``url.query``, ``http.target``, exception messages).
        Ids, timestamps and numeric values are never changed."""
        return _Walk(self.redact_text).mapping(document, False)


class _Walk:
    """One pass over a JSON-like structure. Strings repeat a lot in traces and journals
    ("GET", "127.0.0.1", attribute keys), so each distinct one is redacted once."""

    __slots__ = ("_keep", "_memo", "_redact")

    def __init__(self, redact: Callable[[str], str], keep: Keep | None = None) -> None:
        self._redact = redact
        self._keep = keep
        self._memo: dict[str, str] = {}

    def text(self, text: str) -> str:
        done = self._memo.get(text)
        if done is None:
            done = self._memo[text] = self._redact(text)
        return done

    def value(self, value: object, secret: bool) -> JSONValue:  # noqa: PLR0911 (a dispatch on the JSON value's type)
        if isinstance(value, str):
            if self._keep is not None and self._keep(value, secret):
                return value
            if secret and value:
                return MARKER
            return self.text(value)
        if type(value) is dict:  # the common cases first: the ABC check below is slow
            return self.mapping(value, secret)
        if type(value) is list:
            return [self.value(item, secret) for item in value]
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return MARKER if secret else value
        if isinstance(value, Mapping):
            return self.mapping(value, secret)
        if isinstance(value, list | tuple):
            return [self.value(item, secret) for item in value]
        # Not JSON data: the caller serialises it somehow; hand it back as text, masked.
        return self.text(str(value))

    def mapping(self, value: Mapping[str, object], secret: bool) -> dict[str, JSONValue]:
        named = value.get("key")
        if isinstance(named, str) and "value" in value:
            return self._attribute(value, named, secret)
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            # Judged by the redacted key, which is what a second pass sees (idempotence).
            shown = self.text(name)
            if name in _ID_KEYS and isinstance(item, str) and shown == name:
                # (A key that is itself a secret literal, e.g. "traceID", gets no exemption.)
                out[name] = item
                continue
            out[shown] = self.value(item, secret or is_secret_name(shown))
        return out

    def _attribute(
        self, value: Mapping[str, object], name: str, secret: bool
    ) -> dict[str, JSONValue]:
        hidden = secret or is_secret_name(self.text(name))
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            field = key if isinstance(key, str) else str(key)
            if field != "value":
                out[self.text(field)] = self.value(item, secret)
            elif isinstance(item, Mapping) and item.keys() <= _ANY_VALUE_KEYS:
                out[field] = self._any_value(item, hidden)
            else:
                out[field] = self.value(item, hidden)
        return out

    def _any_value(self, value: Mapping[str, object], hidden: bool) -> dict[str, JSONValue]:
        if hidden and any(k != "boolValue" and v not in (None, "") for k, v in value.items()):
            return {"stringValue": MARKER}
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            field = str(key)
            if field == "stringValue" and isinstance(item, str):
                out[field] = self.text(item)
            elif field in ("arrayValue", "kvlistValue") and isinstance(item, Mapping):
                out[field] = self.mapping(item, False)
            elif item is None or isinstance(item, str | int | float | bool):
                out[field] = item  # numbers, booleans and bytes exactly as they came
            else:
                out[field] = self.value(item, False)
        return out


def _query_part(match: re.Match[str]) -> str:
    part = match[0]
    name, eq, value = part.partition("=")
    if eq and value and is_secret_name(unquote_plus(name)):
        return f"{name}={MARKER}"
    return part


# ------------------------------------------------------------------------------ logging


class RedactingFilter(logging.Filter):
    """Masks secrets in every record that passes: its message, exception and stack text.

    The message is formatted once (``msg % args``), redacted, and stored back as ``msg``
    with ``args`` cleared, so no handler or formatter can re-insert an argument unmasked.
    An exception is rendered to ``exc_text`` (redacted) and ``exc_info`` cleared: a
    handler that renders tracebacks itself would otherwise print the raw message. Attach
    it to handlers (a logger's filters do not see records propagated from its children).
    The filter never drops a record."""

    def __init__(self, redactor: Redactor, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # msg % args failed: keep both, masked
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redactor.redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor.redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact_text(record.stack_info)
        return True


# ------------------------------------------------------------------------------ file modes

RUN_UMASK_ENV: Final = "RESILIENCE_RUN_UMASK"
"""Environment variable overriding the umask of a run: an octal umask (077, 022, 0o027)
or ``inherit`` to keep the process's own."""

DEFAULT_RUN_UMASK: Final = 0o077
"""Owner only: run directories 0700, files 0600."""

_UMASK_TEXT = re.compile(r"(?:0o)?([0-7]{1,4})", re.IGNORECASE)
_INHERIT = "inherit"


def parse_umask(text: str, *, source: str = RUN_UMASK_ENV) -> int | None:
    """The umask ``text`` names (``077``, ``0077``, ``0o022``), None for ``inherit``.

    Raises ExperimentError (exit 2) naming ``source`` for anything else."""
    value = text.strip()
    if value.lower() == _INHERIT:
        return None
    match = _UMASK_TEXT.fullmatch(value)
    if match is None or int(match[1], 8) > 0o777:
        raise ExperimentError(
            f"{source} is not a umask",
            expected="an octal umask such as 077 (owner only, the default), 027 or 022, "
            f"or '{_INHERIT}'",
            got=repr(text),
        )
    return int(match[1], 8)


def run_umask(environ: Mapping[str, str] | None = None) -> int | None:
    """The umask a run uses: ``RESILIENCE_RUN_UMASK`` when set, else 077; None = inherit."""
    env = os.environ if environ is None else environ
    value = env.get(RUN_UMASK_ENV, "")
    if not value.strip():
        return DEFAULT_RUN_UMASK
    return parse_umask(value)


@contextmanager
def private_files(enabled: bool = True, *, umask: int | None = None) -> Iterator[int | None]:
    """Within the block, files are created 0600 and directories 0700 (umask 077).

    ``umask`` overrides the policy; otherwise ``run_umask()`` decides (so
    ``RESILIENCE_RUN_UMASK=022`` restores world-readable runs and ``inherit`` leaves the
    process's umask alone). Yields the umask in force, None when unchanged. The previous
    umask is restored on every exit. A umask belongs to the whole process and is inherited
    by child processes started inside the block (the load workers' logs are private too):
    enter it once, from the main thread, around everything that writes the run directory,
    and not around starting the stack (PostgreSQL's files are read by another user)."""
    mask = (run_umask() if umask is None else umask) if enabled else None
    if mask is None:
        yield None
        return
    previous = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(previous)


def tighten_tree(root: Path, *, umask: int = DEFAULT_RUN_UMASK) -> None:
    """Remove the permission bits ``umask`` forbids from ``root`` and everything under it.

    Never adds a bit; does not follow symbolic links; a file that vanishes meanwhile (a
    writer's temporary file) is skipped. For a run directory made before ``private_files``
    was entered, or by an older version. Other OSErrors propagate."""
    paths: list[Path] = [root]
    if root.is_dir() and not root.is_symlink():
        for directory, dirnames, filenames in os.walk(root):
            base = Path(directory)
            paths.extend(base / name for name in dirnames)
            paths.extend(base / name for name in filenames)
    for path in paths:
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            if mode & umask:
                path.chmod(mode & ~umask)
        except FileNotFoundError:
            continue
