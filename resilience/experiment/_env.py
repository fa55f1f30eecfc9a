"""``${env:NAME}`` references in experiment strings, resolved from the environment at load time.

Any string value of the resolved document (after the profile and ``--set``) may hold one or
more ``${env:NAME}``; ``$${`` is a literal ``${``, and any other ``${`` is an error, so that
a mistyped reference cannot be sent as text. Mapping keys are never resolved, and neither
are the raw ``profiles`` (only the chosen profile matters, and it has been merged by now).

What came from the environment is remembered: the values themselves (``secrets``, for a
redaction pass to scrub) and, for each string that held a reference, its path, its text as
written and its value once validated, so that ``Experiment.to_yaml()`` can write the
reference back instead of the secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from resilience.experiment._problems import KeyPath, Problem, describe
from resilience.experiment._yaml import YAMLValue
from resilience.vocabulary import JSONValue

_TOKEN: Final = re.compile(r"\$\$\{|\$\{")
_REFERENCE: Final = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
EXPECTED: Final = "${env:NAME} with NAME set in the environment (write $${ for a literal ${)"


@dataclass(frozen=True)
class EnvReference:
    """A string that held references: where it is and how it was written."""

    path: KeyPath
    raw: str
    names: tuple[str, ...]


@dataclass
class EnvResolution:
    """The outcome of resolving one document: references, secrets and problems."""

    references: list[EnvReference] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)


def resolve_env(data: YAMLValue, environ: Mapping[str, str]) -> tuple[YAMLValue, EnvResolution]:
    """``data`` with every reference replaced (containers copied only where something
    changed, the input untouched), and what was resolved or wrong."""
    outcome = EnvResolution()
    if not isinstance(data, dict):
        return data, outcome
    resolved = {
        key: value if key == "profiles" else _walk(value, (key,), environ, outcome)
        for key, value in data.items()
    }
    return resolved, outcome


def _walk(
    value: YAMLValue, path: KeyPath, environ: Mapping[str, str], outcome: EnvResolution
) -> YAMLValue:
    if isinstance(value, str):
        return _string(value, path, environ, outcome) if "${" in value else value
    if isinstance(value, dict):
        items = {key: _walk(item, (*path, key), environ, outcome) for key, item in value.items()}
        changed = any(items[key] is not value[key] for key in value)
        return items if changed else value
    if isinstance(value, list):
        walked = [_walk(item, (*path, index), environ, outcome) for index, item in enumerate(value)]
        return walked if any(a is not b for a, b in zip(walked, value, strict=True)) else value
    return value


def _string(text: str, path: KeyPath, environ: Mapping[str, str], outcome: EnvResolution) -> str:
    parts: list[str] = []
    names: list[str] = []
    position = 0
    for token in _TOKEN.finditer(text):
        if token.start() < position:
            continue
        parts.append(text[position : token.start()])
        if token.group() == "$${":
            parts.append("${")
            position = token.end()
            continue
        reference = _REFERENCE.match(text, token.start())
        if reference is None:
            end = text.find("}", token.start())
            shown = text[token.start() : end + 1] if end != -1 else text[token.start() :]
            outcome.problems.append(
                Problem("not an environment reference", EXPECTED, describe(shown), path)
            )
            return text
        name = reference.group(1)
        if name not in environ:
            outcome.problems.append(
                Problem(
                    f"environment variable {name} is not set",
                    EXPECTED,
                    f"no {name} in the environment",
                    path,
                )
            )
            return text
        value = environ[name]
        parts.append(value)
        names.append(name)
        if value:
            outcome.secrets.add(value)
        position = reference.end()
    parts.append(text[position:])
    outcome.references.append(EnvReference(path, text, tuple(names)))
    return "".join(parts)


MIN_SCRUBBED: Final = 6
"""Secrets at least this long are blanked wherever an error message would quote them."""


def hide_secrets(problem: Problem, outcome: EnvResolution) -> Problem:
    """``problem`` without the environment's values in it: a value that held a reference is
    shown as written (``${env:NAME}``), and other quotes of a secret are blanked."""
    for reference in outcome.references:
        if reference.path == problem.path and reference.names:
            got = f"{describe(reference.raw)} (from the environment; its value is not shown)"
            return replace(problem, got=got)
    message, got = problem.message, problem.got
    for secret in sorted(outcome.secrets, key=len, reverse=True):
        if len(secret) >= MIN_SCRUBBED:
            message, got = message.replace(secret, "***"), got.replace(secret, "***")
    return replace(problem, message=message, got=got)


@dataclass(frozen=True)
class EnvRecord:
    """What a loaded experiment keeps of its references: the secrets, and for each string
    that held a reference (or a ``$${``) its path, its text as written, and its value as
    ``model_dump(mode="json")`` printed it after validation."""

    secrets: frozenset[str] = frozenset()
    written: tuple[tuple[KeyPath, str, JSONValue], ...] = ()

    def unresolve(self, dumped: dict[str, JSONValue]) -> dict[str, JSONValue]:
        """``dumped`` (a ``model_dump`` of the experiment) with each resolved string written
        as it was (``${env:NAME}``), where it still holds the value it was loaded with, and
        any other ``${`` escaped, so that the YAML loads back without the secrets in it."""
        # The raw profiles were never resolved: their references stay references.
        out: dict[str, JSONValue] = {
            key: item if key == "profiles" else _escape(item) for key, item in dumped.items()
        }
        for path, raw, value in self.written:
            found, current = _at(out, path)
            if found and current == value:
                _put(out, path, raw)
        return out


def record(references: list[EnvReference], secrets: set[str], dumped: JSONValue) -> EnvRecord:
    """The record for a validated experiment whose ``model_dump`` is ``dumped``."""
    written: list[tuple[KeyPath, str, JSONValue]] = []
    for reference in references:
        found, value = _at(dumped, reference.path)
        if found:
            written.append((reference.path, reference.raw, _escape(value)))
    return EnvRecord(frozenset(secrets), tuple(written))


def _at(data: JSONValue, path: KeyPath) -> tuple[bool, JSONValue]:
    """Whether ``path`` exists in ``data``, and the value there."""
    for part in path:
        found, data = _child(data, part)
        if not found:
            return False, None
    return True, data


def _child(data: JSONValue, part: str | int) -> tuple[bool, JSONValue]:
    if isinstance(data, dict):
        return (True, data[part]) if isinstance(part, str) and part in data else (False, None)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return True, data[part]
    return False, None


def _put(data: JSONValue, path: KeyPath, value: JSONValue) -> None:
    """Set an existing ``path`` of ``data`` (checked by ``_at``) to ``value``."""
    _, parent = _at(data, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[str(last)] = value
    elif isinstance(parent, list) and isinstance(last, int):
        parent[last] = value


def _escape(value: JSONValue) -> JSONValue:
    """Strings with ``${`` escaped as ``$${`` (keys are never resolved, so stay as they are)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape(item) for item in value]
    return value
