"""Request templates: placeholders in paths, JSON bodies and headers, and weighted choice.

Placeholders are ``{uuid}`` (a random UUID4), ``{int:A:B}`` (a uniform integer in
[A, B]), ``{choice:a|b|c}`` (one of the options), ``{seq}`` (the user's request counter,
1, 2, ...) and ``{name}`` for a variable captured from an earlier response; the grammar is
the experiment loader's (braces are for placeholders only). Templates are compiled once
per plan; rendering a request is a loop over pre-split parts. A JSON string that is exactly one ``{int:..}``, ``{seq}`` or
captured-variable placeholder keeps the value's type (``"{int:1:50}"`` renders as the number
37, a captured id as it was in the response); in any other position values are text.
Nothing here imports gevent: the worker and the unit tests share it.
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import quote, urlencode, urljoin, urlsplit

from resilience.experiment.captures import MISSING, CaptureSource, parse_capture
from resilience.experiment.placeholders import parse_template
from resilience.vocabulary import JSONValue

if TYPE_CHECKING:
    from resilience.load.plan import RequestPlan


@dataclass
class UserState:
    """What one (virtual) user carries between requests: its counter and captured variables."""

    rng: random.Random
    seq: int = 0
    variables: dict[str, JSONValue] = field(default_factory=dict)
    captured: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.captured = frozenset(self.variables)

    def capture(self, name: str, value: JSONValue) -> None:
        self.variables[name] = value
        if name not in self.captured:
            self.captured = self.captured | {name}


class _Part(Protocol):
    def __call__(self, state: UserState) -> JSONValue: ...


@dataclass(frozen=True)
class _Literal:
    text: str

    def __call__(self, state: UserState) -> str:
        return self.text


@dataclass(frozen=True)
class _Variable:
    name: str

    def __call__(self, state: UserState) -> JSONValue:
        return state.variables[self.name]


class _Uuid:
    def __call__(self, state: UserState) -> str:
        return str(uuid.UUID(int=state.rng.getrandbits(128), version=4))


class _Seq:
    def __call__(self, state: UserState) -> int:
        return state.seq


@dataclass(frozen=True)
class _IntRange:
    low: int
    high: int

    def __call__(self, state: UserState) -> int:
        return state.rng.randint(self.low, self.high)


@dataclass(frozen=True)
class _Choice:
    options: tuple[str, ...]

    def __call__(self, state: UserState) -> str:
        return state.rng.choice(self.options)


@dataclass(frozen=True)
class Template:
    """A string with placeholders, split into parts; ``render`` joins them."""

    source: str
    parts: tuple[_Part, ...]
    needs: frozenset[str]
    typed: bool  # exactly one typed placeholder: keep the value's type in JSON

    def render(self, state: UserState) -> str:
        if len(self.parts) == 1:
            return str(self.parts[0](state))
        return "".join(str(part(state)) for part in self.parts)

    def render_value(self, state: UserState) -> JSONValue:
        """For JSON bodies: the value itself when the template is one typed placeholder."""
        if self.typed:
            return self.parts[0](state)
        return self.render(state)

    @functools.cached_property
    def constant(self) -> bool:
        return all(isinstance(p, _Literal) for p in self.parts)

    @functools.cached_property
    def literal(self) -> str:
        """A constant template's text (``{{`` already a ``{``), rendered once."""
        return "".join(p.text for p in self.parts if isinstance(p, _Literal))


def compile_template(text: str) -> Template:
    """Split ``text`` into literal and placeholder parts; ValueError on a malformed one.

    The grammar is the experiment file's (``resilience.experiment.placeholders``), so a
    plan renders exactly what the loader validated.
    """
    parts: list[_Part] = []
    needs: set[str] = set()
    typed_kinds = 0
    for part in parse_template(text).parts:
        if isinstance(part, str):
            parts.append(_Literal(part))
        elif part.kind == "uuid":
            parts.append(_Uuid())
        elif part.kind == "seq":
            parts.append(_Seq())
            typed_kinds += 1
        elif part.kind == "int":
            parts.append(_IntRange(part.low, part.high))
            typed_kinds += 1
        elif part.kind == "choice":
            parts.append(_Choice(part.options))
        else:
            parts.append(_Variable(part.name))
            needs.add(part.name)
            typed_kinds += 1
    if not parts:
        parts.append(_Literal(""))
    typed = len(parts) == 1 and typed_kinds == 1
    return Template(text, tuple(parts), frozenset(needs), typed)


def _compile_json(value: JSONValue, needs: set[str]) -> Callable[[UserState], JSONValue]:
    if isinstance(value, str):
        template = compile_template(value)
        needs.update(template.needs)
        if template.constant:
            text = template.literal
            return lambda state: text
        return template.render_value
    if isinstance(value, dict):
        items = [(str(k), _compile_json(v, needs)) for k, v in value.items()]
        return lambda state: {k: render(state) for k, render in items}
    if isinstance(value, list):
        renders = [_compile_json(v, needs) for v in value]
        return lambda state: [render(state) for render in renders]
    return lambda state: value


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_RAW_CONTENT_TYPE = "text/plain; charset=utf-8"


def _form_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _compile_form(form: Mapping[str, object], needs: set[str]) -> Callable[[UserState], str]:
    """A form body: each string value a template, booleans as true/false (sent as UTF-8)."""
    fields: list[tuple[str, Template]] = []
    for key, value in form.items():
        template = compile_template(value if isinstance(value, str) else "")
        if not isinstance(value, str):
            template = Template(
                str(value), (_Literal(str(_form_value(value))),), frozenset(), False
            )
        needs.update(template.needs)
        fields.append((key, template))
    return lambda state: urlencode([(k, template.render(state)) for k, template in fields])


def _compile_raw(body: str, needs: set[str]) -> Callable[[UserState], str]:
    template = compile_template(body)
    needs.update(template.needs)
    if template.constant:
        text = template.literal
        return lambda state: text
    return template.render


@dataclass(frozen=True)
class Rendered:
    """One request ready to send: ``json`` (an object to encode) or ``content`` (bytes) or
    neither; ``headers`` carry the content type of a form or raw body."""

    method: str
    path: str
    headers: dict[str, str]
    json: JSONValue = None
    content: str | None = None
    """A form or raw body (sent UTF-8 encoded)."""


@dataclass(frozen=True)
class RequestTemplate:
    """A compiled request: render path, body and headers for one user."""

    index: int
    name: str
    method: str
    path: Template
    body: Callable[[UserState], JSONValue] | None
    headers: tuple[tuple[str, Template], ...]
    needs: frozenset[str]
    content: Callable[[UserState], str] | None = None
    """A form or raw body (``body`` is the JSON one); at most one of them is set."""
    content_type: str | None = None
    origin: TargetOrigin | None = None
    """Set when the path starts with a captured URL (``{order_url}/items``): where it may go."""

    def render(self, state: UserState) -> Rendered:
        """Path, headers and body for one request (the caller counts ``state.seq``).
        A request with nothing to fill in is rendered once: callers only read it."""
        fixed = self.fixed
        if fixed is not None:
            return fixed
        headers = self.render_headers(state)
        content = None
        if self.content is not None:
            content = self.content(state)
            if self.content_type and not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = self.content_type
        return Rendered(
            self.method,
            self.render_path(state),
            headers,
            json=self.body(state) if self.body is not None else None,
            content=content,
        )

    @functools.cached_property
    def fixed(self) -> Rendered | None:
        """The request itself when no part of it varies (no placeholder, no body)."""
        if self.body is not None or self.content is not None or not self.path.constant:
            return None
        if not all(value.constant for _, value in self.headers):
            return None
        headers = {name: value.literal for name, value in self.headers}
        return Rendered(self.method, self.path.literal, headers)

    def render_path(self, state: UserState) -> str:
        """The path (or, for a captured URL, the absolute URL); ``OffTarget`` when a
        captured URL leads off the target's host."""
        if self.path.constant:
            return self.path.literal
        # Captured values may hold characters that do not belong in a URL path.
        if not self.path.needs:
            return self.path.render(state)
        parts = self.path.parts
        head = ""
        if self.origin is not None:  # the first part is the captured URL, sent as it is
            head, parts = self.origin.resolve(str(parts[0](state))), parts[1:]
        return head + "".join(
            quote(str(part(state)), safe="") if isinstance(part, _Variable) else str(part(state))
            for part in parts
        )

    def render_headers(self, state: UserState) -> dict[str, str]:
        return {name: value.render(state) for name, value in self.headers}


def compile_request_templates(
    requests: Sequence[RequestPlan], target: str | None = None
) -> list[RequestTemplate]:
    """Compile each request once; ``target`` (the base URL) bounds where a path that
    starts with a captured URL may go (without it, only to an absolute path)."""
    origin = TargetOrigin.of(target)
    compiled: list[RequestTemplate] = []
    for index, request in enumerate(requests):
        needs: set[str] = set()
        path = compile_template(request.path)
        needs.update(path.needs)
        url_head = request.path.startswith("{") and isinstance(path.parts[0], _Variable)
        body = None
        content: Callable[[UserState], str] | None = None
        content_type = None
        if request.json_body is not None:
            body = _compile_json(request.json_body, needs)
        elif request.form is not None:
            content, content_type = _compile_form(request.form, needs), FORM_CONTENT_TYPE
        elif request.body is not None:
            content = _compile_raw(request.body, needs)
            content_type = request.content_type or DEFAULT_RAW_CONTENT_TYPE
        headers = []
        for key, value in request.headers.items():
            template = compile_template(value)
            needs.update(template.needs)
            headers.append((key, template))
        compiled.append(
            RequestTemplate(
                index=index,
                name=request.name,
                method=request.method,
                path=path,
                body=body,
                headers=tuple(headers),
                needs=frozenset(needs),
                content=content,
                content_type=content_type,
                origin=origin if url_head else None,
            )
        )
    return compiled


class OffTarget(Exception):
    """A captured URL leads off the target's host: it is never sent (the run stops, exit 2)."""


@dataclass(frozen=True)
class TargetOrigin:
    """The target's scheme, host and port: a captured URL (a ``Location``) is resolved
    against the target's base URL and must come back to the same origin. Traffic never
    goes to a host the user did not list, whatever the service answers."""

    base: str
    origin: tuple[str, str, int] | None

    @classmethod
    def of(cls, target: str | None) -> TargetOrigin:
        if not target:
            return cls("", None)
        return cls(target, _origin(target))

    def resolve(self, reference: str) -> str:
        """The absolute URL of ``reference`` (a URL, or a path on the target)."""
        if self.origin is None:
            if reference.startswith("/") and not reference.startswith("//"):
                return reference
            raise OffTarget(f"{reference!r} is not a path, and no target to compare it with")
        absolute = urljoin(self.base, reference)
        if _origin(absolute) != self.origin:
            scheme, host, port = self.origin
            raise OffTarget(
                f"the captured URL {reference!r} leads off the target "
                f"({scheme}://{host}:{port}): not sent"
            )
        return absolute


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


# -- steps (on_start, setup) ----------------------------------------------------------------


class Answer(NamedTuple):
    """What a step's send returns: the status, the body as JSON (None when it is not JSON)
    and a lookup of response headers by lower-case name."""

    status: int
    body: JSONValue
    header: Callable[[str], str | None] = lambda name: None


Send = Callable[[Rendered], Answer]
"""Send one rendered request and return its ``Answer``. May raise."""


@dataclass(frozen=True)
class StepFailure:
    """Why a list of steps stopped: the step and what went wrong."""

    step: str
    reason: str

    def __str__(self) -> str:
        return f"{self.step}: {self.reason}"


Captures = tuple[tuple[str, CaptureSource], ...]


def compile_captures(capture: Mapping[str, str]) -> Captures:
    """A request's captures, parsed once (the loader validated them)."""
    return tuple((variable, parse_capture(source)) for variable, source in capture.items())


def capture_into(
    state: UserState,
    captures: Captures,
    body: JSONValue,
    header: Callable[[str], str | None] | None = None,
) -> list[str]:
    """Read each capture from the answer into ``state``; what was missing, described
    (``field 'data.id'``, ``header Location``)."""
    missing = []
    for variable, source in captures:
        value = source.read(body, header)
        if value is MISSING:
            missing.append(source.describe())
        else:
            state.capture(variable, value)  # type: ignore[arg-type]  # JSON or a header's text
    return missing


@dataclass(frozen=True)
class Steps:
    """Compiled setup or on_start steps, run in order by ``run``."""

    templates: tuple[RequestTemplate, ...]
    plans: tuple[RequestPlan, ...]
    captures: tuple[Captures, ...] = ()

    @classmethod
    def compile(cls, plans: Sequence[RequestPlan], target: str | None = None) -> Steps:
        return cls(
            tuple(compile_request_templates(plans, target)),
            tuple(plans),
            tuple(compile_captures(plan.capture) for plan in plans),
        )

    def __bool__(self) -> bool:
        return bool(self.templates)

    def run(self, state: UserState, send: Send) -> StepFailure | None:
        """Each step in turn; the first failure (an error, an unexpected status, a value
        to capture missing from the answer) stops the list and is returned. A captured
        URL off the target's host raises ``OffTarget``: that is no failure to retry."""
        for template, plan, captures in zip(self.templates, self.plans, self.captures, strict=True):
            missing_vars = sorted(template.needs - state.captured)
            if missing_vars:
                return StepFailure(plan.name, f"needs {', '.join(missing_vars)}, not captured")
            state.seq += 1
            rendered = template.render(state)
            try:
                status, data, header = send(rendered)
            except Exception as exc:  # a step's failure is reported, whatever it was
                return StepFailure(plan.name, f"{type(exc).__name__}: {exc}")
            if not plan.expects(status):
                return StepFailure(plan.name, f"HTTP {status}" if status else "no answer")
            missing = capture_into(state, captures, data, header)
            if missing:
                return StepFailure(
                    plan.name, f"the answer has no {' and no '.join(missing)} to capture"
                )
        return None


def decode_json(raw: bytes | str | None) -> JSONValue:
    """A response body as JSON, or None when it is not JSON."""
    if not raw:
        return None
    try:
        value: JSONValue = json.loads(raw)
    except ValueError:
        return None
    return value


class WeightedChooser:
    """Weighted random choice among the requests whose variables a user has captured.

    The table of eligible requests depends only on which variables are captured, so it is
    built once per distinct set and reused.
    """

    def __init__(self, weights: Sequence[int], needs: Sequence[frozenset[str]]) -> None:
        if len(weights) != len(needs):
            raise ValueError("one weight per request")
        self._weights = list(weights)
        self._needs = list(needs)
        self._tables: dict[frozenset[str], tuple[list[int], list[int]]] = {}

    def _table(self, captured: frozenset[str]) -> tuple[list[int], list[int]]:
        table = self._tables.get(captured)
        if table is None:
            eligible = [i for i, need in enumerate(self._needs) if need <= captured]
            cumulative = list(accumulate(self._weights[i] for i in eligible))
            table = (eligible, cumulative)
            self._tables[captured] = table
        return table

    def eligible(self, captured: Iterable[str]) -> list[int]:
        return list(self._table(frozenset(captured))[0])

    def choose(self, rng: random.Random, captured: frozenset[str]) -> int | None:
        """An index, or None when no request can be sent with what is captured."""
        eligible, cumulative = self._table(captured)
        if len(eligible) <= 1:
            return eligible[0] if eligible else None
        pick = rng.random() * cumulative[-1]
        return eligible[bisect_right(cumulative, pick)]
