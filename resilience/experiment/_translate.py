"""Pydantic validation errors turned into ``Problem`` objects at real key paths.

Pydantic's ``loc`` mixes keys of the input with names of union branches and validator
wrappers; the raw document tells them apart (a ``loc`` item that is not a key or index of
the data at that point is a branch name). Messages are rewritten to say what was expected
and what was found, unknown keys get a "did you mean", and the several errors one union
produces for one value collapse into one problem.
"""

from __future__ import annotations

import difflib
import types
from typing import Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from resilience.experiment._problems import (
    CrossFieldError,
    KeyPath,
    Problem,
    ValueProblem,
    describe,
)

_TYPE_NAMES = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}


def _match_loc(loc: tuple[int | str, ...], data: object) -> tuple[KeyPath, list[int | str]]:
    """The part of ``loc`` that addresses the data, and the unmatched rest."""
    path: list[str | int] = []
    rest: list[int | str] = []
    current = data
    for item in loc:
        found, child = _at(current, item)
        if found:
            path.append(item)
            current = child
        else:
            rest.append(item)
    return tuple(path), rest


def _at(data: object, item: int | str) -> tuple[bool, object]:
    """Whether ``item`` is a key or index of ``data``, and the value there."""
    if isinstance(data, dict) and isinstance(item, str) and item in data:
        return True, data[item]
    if (
        isinstance(data, list)
        and isinstance(item, int)
        and not isinstance(item, bool)
        and 0 <= item < len(data)
    ):
        return True, data[item]
    return False, None


def _unwrap(annotation: object) -> list[object]:
    """The alternatives of an annotation, with Annotated and Optional peeled off."""
    origin = get_origin(annotation)
    if origin is not None and str(origin) == "typing.Annotated":
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [alt for arg in get_args(annotation) for alt in _unwrap(arg)]
    if hasattr(annotation, "__metadata__") and hasattr(annotation, "__origin__"):
        return _unwrap(annotation.__origin__)
    return [annotation]


def _child(annotation: object, key: str | int) -> object:
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel) and isinstance(key, str):
            for name, info in alt.model_fields.items():
                if key in (name, info.alias):
                    return info.annotation
        origin = get_origin(alt)
        if origin is list and isinstance(key, int):
            return get_args(alt)[0]
        if origin is dict and isinstance(key, str):
            return get_args(alt)[1]
    return None


def allowed_keys(root: type[BaseModel], path: KeyPath) -> list[str]:
    """Keys the model at ``path`` accepts (aliases where they exist)."""
    annotation: object = root
    for key in path:
        annotation = _child(annotation, key)
        if annotation is None:
            return []
    keys: list[str] = []
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            keys.extend(info.alias or name for name, info in alt.model_fields.items())
    return keys


def _literal_expected(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    expected = str(ctx.get("expected", "")).strip()
    return f"one of {expected}" if expected else error["msg"]


def _bound_expected(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
    for key, word in words.items():
        if key in ctx:
            return f"a number {word} {ctx[key]}"
    return error["msg"]


def _one(error: ErrorDetails, root: type[BaseModel], data: object) -> list[Problem]:  # noqa: PLR0911 (a dispatch on pydantic's error type)
    loc = tuple(error["loc"])
    path, rest = _match_loc(loc, data)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, CrossFieldError):
        return [p.at(path) for p in cause.problems]
    if isinstance(cause, ValueProblem):
        return [Problem(cause.message or "invalid value", cause.expected, cause.got, path)]
    if kind == "missing":
        key = str(rest[-1]) if rest else "?"
        return [
            Problem(
                f"missing required key {key!r}",
                expected=f"a value for {key!r}",
                got="no such key",
                path=(*path, key),
            )
        ]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = allowed_keys(root, path[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [
            Problem(
                f"unknown key {key!r}{hint}",
                expected=f"one of {', '.join(allowed)}" if allowed else "no such key",
                got=repr(key),
                path=path,
            )
        ]
    if "[key]" in rest:
        return [
            Problem(
                f"invalid key {describe(value)}",
                expected=_literal_expected(error) if kind == "literal_error" else error["msg"],
                got=describe(value),
                path=path,
            )
        ]
    if kind in ("literal_error", "enum"):
        return [Problem("invalid value", _literal_expected(error), describe(value), path)]
    if kind in _TYPE_NAMES:
        return [Problem("wrong type", _TYPE_NAMES[kind], describe(value), path)]
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return [Problem("value out of range", _bound_expected(error), describe(value), path)]
    if kind in ("too_short", "too_long"):
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        return [
            Problem(
                "wrong number of items",
                f"{word} {limit} item{'s' if limit != 1 else ''}",
                describe(value),
                path,
            )
        ]
    return [Problem("invalid value", error["msg"], describe(value), path)]


MAX_TRANSLATED = 1000
"""Pydantic errors examined one by one; beyond, they are counted (a generated file can make
a hundred thousand, and nobody reads past the first screen)."""


def translate(exc: ValidationError, root: type[BaseModel], data: object) -> list[Problem]:
    """Problems for the first ``MAX_TRANSLATED`` errors, one per key path (union alternatives
    merged); ``untranslated(exc)`` says how many were left."""
    by_path: dict[tuple[KeyPath, str], Problem] = {}
    order: list[tuple[KeyPath, str]] = []
    type_errors: dict[KeyPath, list[Problem]] = {}
    for error in exc.errors(include_url=False)[:MAX_TRANSLATED]:
        for problem in _one(error, root, data):
            if problem.message == "wrong type":
                type_errors.setdefault(problem.path, []).append(problem)
                continue
            key = (problem.path, problem.message + problem.expected)
            if key not in by_path:
                by_path[key] = problem
                order.append(key)
    problems = [by_path[k] for k in order]
    reported = {p.path for p in problems}
    for path, group in type_errors.items():
        if path in reported:
            continue
        expected = list(dict.fromkeys(p.expected for p in group))
        text = (
            expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
        )
        problems.append(Problem("wrong type", text, group[0].got, path))
    return problems


def untranslated(exc: ValidationError) -> int:
    """How many of the errors ``translate`` did not examine."""
    return max(0, exc.error_count() - MAX_TRANSLATED)
