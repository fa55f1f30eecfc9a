"""How the experiment package describes what is wrong with an input, before it is an error.

Validators raise ``ValueProblem`` (a ``ValueError`` that pydantic carries through in its
error context) so that the loader can say exactly what was expected and what arrived;
model-wide checks raise ``CrossFieldError`` carrying several problems, each at its own
key path relative to the model that raised it. The loader turns ``Problem`` lists into one
``ExperimentError`` that names the file, line and key path of each.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from resilience.errors import ErrorDetail, ErrorLocation, ExperimentError

KeyPath = tuple[str | int, ...]

_MAX_GOT = 60
MAX_LISTED = 50
"""An error lists at most this many problems (a generated file can have thousands)."""
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def describe(value: object) -> str:  # noqa: PLR0911 (a dispatch on the value's type)
    """A short, readable account of a value for a 'got ...' clause."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, int):
        # str() of an integer with thousands of digits raises; describe it instead.
        if value.bit_length() > 100:
            return "a huge integer"
        return f"{value} (a number)"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"{value} (not a finite number)"
        return f"{value:g} (a number)"
    if isinstance(value, str):
        if value == "":
            return "an empty string"
        shown = value if len(value) <= _MAX_GOT else value[:_MAX_GOT] + "..."
        return repr(shown)
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:5])
        more = ", ..." if len(value) > 5 else ""
        return f"a mapping ({keys}{more})" if value else "an empty mapping"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, _dt.datetime | _dt.date):
        return f"a date/time {value.isoformat()} (quote it to make it a string)"
    if isinstance(value, bytes):
        return f"binary data ({len(value)} bytes)"
    return f"a {type(value).__name__}"


def format_path(path: KeyPath) -> str:
    """``("load", "stages", 0, "duration")`` → ``load.stages[0].duration``."""
    if len(path) > 16:
        # Absurdly deep paths (fuzzed or generated files) keep their two ends readable.
        return f"{format_path(path[:6])}...{format_path(path[-6:])}"
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]" if "'" not in part else f'["{part}"]'
    return out


class ValueProblem(ValueError):
    """A value is wrong: what was expected, what arrived, and optionally a hint."""

    def __init__(self, expected: str, got: str, *, message: str | None = None) -> None:
        self.expected = expected
        self.got = got
        self.message = message
        text = f"expected {expected}, got {got}"
        super().__init__(f"{message}: {text}" if message else text)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, at a key path, with what was expected and found."""

    message: str
    expected: str
    got: str
    path: KeyPath = ()
    line: int | None = None
    origin: str | None = None

    def at(self, prefix: KeyPath) -> Problem:
        return replace(self, path=prefix + self.path)

    def where(self) -> str:
        parts: list[str] = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.path:
            parts.append(f"at {format_path(self.path)}")
        where = ", ".join(parts)
        if self.origin:
            where = f"{where} ({self.origin})" if where else f"({self.origin})"
        return where

    def text(self) -> str:
        return f"{self.message} (expected {self.expected}, got {self.got})"

    def render(self) -> str:
        where = self.where()
        return f"{where}: {self.text()}" if where else self.text()


class CrossFieldError(ValueError):
    """Problems found by a model-wide check; paths are relative to the model that raised it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.render() for p in self.problems))


class InputProblems(Exception):
    """Raised inside the loader's stages (YAML, profiles, overrides) with what went wrong.

    ``context`` says under which conditions the problems arose ("with profile 'smoke'");
    ``omitted`` counts further problems that were found but not examined one by one.
    """

    def __init__(
        self, problems: Sequence[Problem], *, context: str | None = None, omitted: int = 0
    ) -> None:
        self.problems = list(problems)
        self.context = context
        self.omitted = omitted
        shown = "; ".join(p.render() for p in self.problems[:MAX_LISTED])
        super().__init__(shown + ("; ..." if len(self.problems) > MAX_LISTED else ""))


def raise_if(problems: Sequence[Problem]) -> None:
    if problems:
        raise CrossFieldError(problems)


def experiment_error(
    file: str | None,
    problems: Sequence[Problem],
    *,
    context: str | None = None,
    omitted: int = 0,
) -> ExperimentError:
    """One ExperimentError for a list of problems in one file (several are listed together).

    ``context`` (e.g. "with profile 'smoke'") says under which conditions they arose. At
    most ``MAX_LISTED`` are listed; ``omitted`` more are counted at the end.
    """
    if not problems:
        raise ValueError("experiment_error needs at least one problem")
    if len(problems) == 1 and not omitted:
        (p,) = problems
        origin = f" ({p.origin or context})" if p.origin or context else ""
        return ExperimentError(
            p.message + origin,
            location=ErrorLocation(
                file=file, line=p.line, path=format_path(p.path) if p.path else None
            ),
            expected=p.expected,
            got=p.got,
        )
    ordered = sorted(problems, key=_order)
    listed = [p.render() for p in ordered[:MAX_LISTED]]
    details = [_detail(file, p, context) for p in ordered[:MAX_LISTED]]
    more = len(ordered) - len(listed) + omitted
    if more:
        listed.append(f"... and {more} more")
        details.append(ErrorDetail(file=file, message=f"... and {more} more problems"))
    return ExperimentError(
        f"{len(ordered) + omitted} problems" + (f" {context}" if context else ""),
        location=ErrorLocation(file=file),
        problems=listed,
        details=details,
    )


def _detail(file: str | None, problem: Problem, context: str | None) -> ErrorDetail:
    origin = problem.origin or context
    return ErrorDetail(
        file=file,
        line=problem.line,
        path=format_path(problem.path) if problem.path else None,
        message=problem.message + (f" ({origin})" if origin else ""),
        expected=problem.expected,
        got=problem.got,
    )


def _order(problem: Problem) -> tuple[bool, int, tuple[tuple[int, int | str], ...]]:
    """By line, then key path (list indexes as numbers: [2] before [10])."""
    path = tuple((0, p) if isinstance(p, int) else (1, p) for p in problem.path)
    return (problem.line is None, problem.line or 0, path)


class Locator:
    """Gives a problem found after loading (``Experiment.check_target_flag``) its line in
    the file. Where a value was written is not what the experiment is: a locator equals
    any other and None (an experiment built without a file), and a pickled copy keeps
    none (its lines stay with the file)."""

    def __init__(self, locate: Callable[[Problem], Problem] | None = None) -> None:
        self._locate = locate

    def __call__(self, problem: Problem) -> Problem:
        return problem if self._locate is None else self._locate(problem)

    def __eq__(self, other: object) -> bool:
        if other is None or isinstance(other, Locator):
            return True
        return NotImplemented

    def __hash__(self) -> int:
        return hash(Locator)

    def __reduce__(self) -> tuple[type[Locator], tuple[()]]:
        return Locator, ()
