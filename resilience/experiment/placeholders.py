"""Placeholders in request paths and JSON bodies: parsed and checked once, rendered per request.

``{uuid}`` a random UUID4, ``{int:A:B}`` a uniform integer in [A, B], ``{choice:a|b|c}`` one
of the options, ``{seq}`` the user's own counter (1, 2, 3, ...), and ``{name}`` a variable
captured from an earlier response. ``{{`` and ``}}`` are a literal ``{`` and ``}`` (as in
Python's format strings), so a raw JSON body or a GraphQL query can be written; any other
brace is for placeholders only (a stray or unbalanced one is an error, so a typo cannot
silently become literal text). In a JSON body a
string that is exactly one placeholder takes the placeholder's own type (``"{int:1:50}"``
renders as the number 17, a captured number stays a number); anywhere else the rendered
text is spliced into the string.
"""

from __future__ import annotations

import functools
import random
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from resilience.experiment._problems import KeyPath, ValueProblem, describe

PlaceholderKind = Literal["uuid", "seq", "int", "choice", "var"]
_BUILTIN_KINDS: Final[dict[str, PlaceholderKind]] = {"uuid": "uuid", "seq": "seq"}
BUILTIN_NAMES: Final = frozenset(_BUILTIN_KINDS)
IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT_RANGE = re.compile(r"^int:\s*(-?[0-9]{1,18})\s*:\s*(-?[0-9]{1,18})\s*$")
EXPECTED: Final = "placeholders {uuid}, {seq}, {int:A:B}, {choice:a|b} or {captured_variable}"


class MissingVariable(LookupError):
    """A template uses a captured variable that this user has not captured yet."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"variable {{{name}}} has not been captured yet")


@dataclass(frozen=True)
class Placeholder:
    """One ``{...}``: its kind and arguments."""

    kind: PlaceholderKind
    text: str
    low: int = 0
    high: int = 0
    options: tuple[str, ...] = ()
    name: str = ""

    def value(self, variables: Mapping[str, object], rng: random.Random, seq: int) -> object:
        """The placeholder's value in its own type (int for int/seq, any for variables)."""
        if self.kind == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if self.kind == "seq":
            return seq
        if self.kind == "int":
            return rng.randint(self.low, self.high)
        if self.kind == "choice":
            return rng.choice(self.options)
        if self.name not in variables:
            raise MissingVariable(self.name)
        return variables[self.name]


def _placeholder(inner: str, source: str) -> Placeholder:
    text = inner.strip()
    builtin = _BUILTIN_KINDS.get(text)
    if builtin is not None:
        return Placeholder(kind=builtin, text=inner)
    if text.startswith("int:"):
        match = _INT_RANGE.match(text)
        if match is None:
            raise ValueProblem(
                "{int:A:B} with whole numbers A and B", describe(source), message="bad placeholder"
            )
        low, high = int(match.group(1)), int(match.group(2))
        if low > high:
            raise ValueProblem(
                "{int:A:B} with A not above B", describe(source), message="bad placeholder"
            )
        return Placeholder(kind="int", text=inner, low=low, high=high)
    if text.startswith("choice:"):
        options = tuple(text[len("choice:") :].split("|"))
        if not all(options):
            raise ValueProblem(
                "{choice:a|b|c} with non-empty options", describe(source), message="bad placeholder"
            )
        return Placeholder(kind="choice", text=inner, options=options)
    if IDENTIFIER.match(text):
        return Placeholder(kind="var", text=inner, name=text)
    raise ValueProblem(
        EXPECTED, f"{{{inner}}} in {describe(source)}", message="unknown placeholder"
    )


@dataclass(frozen=True)
class Template:
    """A string split into literal text and placeholders."""

    source: str
    parts: tuple[str | Placeholder, ...] = field(default=())

    @classmethod
    def parse(cls, source: str) -> Template:
        """Split ``source``; raise ``ValueProblem`` on a bad or unbalanced placeholder."""
        parts: list[str | Placeholder] = []
        literal: list[str] = []
        i = 0
        n = len(source)
        while i < n:
            char = source[i]
            if char in "{}" and source.startswith(char * 2, i):
                literal.append(char)  # {{ and }}: the brace itself
                i += 2
                continue
            if char == "}":
                raise ValueProblem(
                    "'}' only to close a placeholder (}} for a literal })",
                    describe(source),
                    message="unbalanced brace",
                )
            if char == "{":
                end = source.find("}", i + 1)
                nested = source.find("{", i + 1)
                if end == -1 or (nested != -1 and nested < end):
                    raise ValueProblem(
                        "'{' to open a placeholder closed by '}' ({{ for a literal {)",
                        describe(source),
                        message="unbalanced brace",
                    )
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(_placeholder(source[i + 1 : end], source))
                i = end + 1
                continue
            literal.append(char)
            i += 1
        if literal:
            parts.append("".join(literal))
        return cls(source=source, parts=tuple(parts))

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def variables(self) -> frozenset[str]:
        """Names of captured variables this template uses."""
        return frozenset(p.name for p in self.placeholders if p.kind == "var")

    @property
    def is_static(self) -> bool:
        return not self.placeholders

    def render(self, variables: Mapping[str, object], rng: random.Random, seq: int) -> str:
        """The string with every placeholder replaced by its text."""
        return "".join(
            part if isinstance(part, str) else str(part.value(variables, rng, seq))
            for part in self.parts
        )

    def render_value(self, variables: Mapping[str, object], rng: random.Random, seq: int) -> object:
        """Like ``render``, but a lone placeholder keeps its own type (for JSON bodies)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Placeholder):
            return self.parts[0].value(variables, rng, seq)
        return self.render(variables, rng, seq)


@functools.lru_cache(maxsize=4096)
def parse_template(source: str) -> Template:
    """``Template.parse`` with a cache: templates repeat on every request."""
    return Template.parse(source)


def iter_json_strings(value: object, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """Every string value inside a JSON body template, with its path (keys are not templated)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_json_strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_json_strings(item, (*path, index))


def render_json(
    template: object, variables: Mapping[str, object], rng: random.Random, seq: int
) -> object:
    """A JSON body with its placeholders rendered (see the module docstring for types)."""
    if isinstance(template, str):
        return parse_template(template).render_value(variables, rng, seq)
    if isinstance(template, dict):
        return {key: render_json(item, variables, rng, seq) for key, item in template.items()}
    if isinstance(template, list):
        return [render_json(item, variables, rng, seq) for item in template]
    return template
