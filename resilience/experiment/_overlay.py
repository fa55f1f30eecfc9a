"""Profiles and ``--set`` overrides applied to the raw document, remembering where values came from.

A profile is a raw overlay deep-merged over the base document: mappings merge key by key;
two lists whose items are mappings merge item by item BY INDEX (``faults: [{at: 15s}]``
retimes the first fault and keeps its type and proxy); anything else is replaced. A null
value removes the key (so ``preset: null`` makes room for ``stages``), a null list item
removes that item, and an empty list replaces the base list. ``--set key.path=value``
assigns one value (parsed as YAML) after the profile. Every value keeps an ``Origin``, so a
validation error can name the profile or the override that produced the bad value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from resilience.experiment._problems import InputProblems, KeyPath, Problem, describe

_INDEX = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a line in the file and, if not the base, what wrote it."""

    line: int | None
    label: str | None = None


Origins = dict[KeyPath, Origin]


def base_origins(lines: Mapping[KeyPath, int]) -> Origins:
    return {path: Origin(line) for path, line in lines.items()}


def profile_origins(lines: Mapping[KeyPath, int], name: str) -> Origins:
    """The lines of ``profiles.<name>``'s subtree, re-rooted at the document's top."""
    prefix: KeyPath = ("profiles", name)
    label = f"profile {name!r}"
    return {path[2:]: Origin(line, label) for path, line in lines.items() if path[:2] == prefix}


def origin_of(origins: Origins, path: KeyPath) -> Origin | None:
    """The origin of the deepest recorded prefix of ``path``."""
    for end in range(len(path), -1, -1):
        found = origins.get(path[:end])
        if found is not None:
            return found
    return None


def _copy_subtree(source: Origins, src: KeyPath, out: Origins, dst: KeyPath) -> None:
    n = len(src)
    for path, origin in source.items():
        if path[:n] == src:
            out[dst + path[n:]] = origin


def _mergeable_lists(base: Any, overlay: Any) -> bool:
    return (
        isinstance(base, list)
        and isinstance(overlay, list)
        and bool(overlay)
        and all(isinstance(item, dict) for item in base)
        and all(isinstance(item, dict) or item is None for item in overlay)
    )


def deep_merge(
    base: Any, overlay: Any, base_from: Origins, overlay_from: Origins
) -> tuple[Any, Origins]:
    """Overlay merged over base (see the module docstring), with the merged value's origins."""
    merger = _Merger(base_from, overlay_from)
    merged = merger.merge(base, overlay, bpath=(), opath=(), dpath=())
    return merged, merger.out


class _Merger:
    """Merges one overlay; paths: ``bpath`` in the base, ``opath`` in the overlay, ``dpath``
    in the result (they differ once a null item has been removed from a list)."""

    def __init__(self, base_from: Origins, overlay_from: Origins) -> None:
        self.base_from = base_from
        self.overlay_from = overlay_from
        self.out: Origins = {}

    def merge(
        self, base: Any, overlay: Any, *, bpath: KeyPath, opath: KeyPath, dpath: KeyPath
    ) -> Any:
        if isinstance(base, dict) and isinstance(overlay, dict):
            return self._mappings(base, overlay, bpath=bpath, opath=opath, dpath=dpath)
        if _mergeable_lists(base, overlay):
            return self._lists(base, overlay, bpath=bpath, opath=opath, dpath=dpath)
        _copy_subtree(self.overlay_from, opath, self.out, dpath)
        return copy.deepcopy(overlay)

    def _mappings(
        self,
        base: dict[str, Any],
        overlay: dict[str, Any],
        *,
        bpath: KeyPath,
        opath: KeyPath,
        dpath: KeyPath,
    ) -> dict[str, Any]:
        if bpath in self.base_from:
            self.out[dpath] = self.base_from[bpath]
        result: dict[str, Any] = {}
        for key, value in base.items():
            if key not in overlay:
                result[key] = value
                _copy_subtree(self.base_from, (*bpath, key), self.out, (*dpath, key))
            elif overlay[key] is not None:
                result[key] = self.merge(
                    value,
                    overlay[key],
                    bpath=(*bpath, key),
                    opath=(*opath, key),
                    dpath=(*dpath, key),
                )
        for key, value in overlay.items():
            if key not in base and value is not None:
                result[key] = copy.deepcopy(value)
                _copy_subtree(self.overlay_from, (*opath, key), self.out, (*dpath, key))
        return result

    def _lists(
        self, base: list[Any], overlay: list[Any], *, bpath: KeyPath, opath: KeyPath, dpath: KeyPath
    ) -> list[Any]:
        if bpath in self.base_from:
            self.out[dpath] = self.base_from[bpath]
        items: list[Any] = []
        for index in range(max(len(base), len(overlay))):
            over = overlay[index] if index < len(overlay) else {}
            if over is None:
                continue
            target = (*dpath, len(items))
            if index < len(base):
                items.append(
                    self.merge(
                        base[index],
                        over,
                        bpath=(*bpath, index),
                        opath=(*opath, index),
                        dpath=target,
                    )
                )
            else:
                items.append(copy.deepcopy(over))
                _copy_subtree(self.overlay_from, (*opath, index), self.out, target)
        return items


# ---------------------------------------------------------------------------- --set


def _override_problem(text: str, message: str, expected: str, got: str) -> InputProblems:
    return InputProblems([Problem(message, expected, got, (), None, f"--set {text}")])


def parse_key_path(key: str, text: str) -> list[str | int]:
    """``faults.0.duration``, ``faults[0].duration`` or ``slo.fault.endpoints."GET /x".p95``."""
    parts: list[str | int] = []
    i = 0
    n = len(key)
    expected = "a dotted key path like load.workers or faults.0.duration"
    while i < n:
        if key[i] in "\"'":
            end = key.find(key[i], i + 1)
            if end == -1:
                raise _override_problem(text, "unclosed quote in key path", expected, repr(key))
            parts.append(key[i + 1 : end])
            i = end + 1
        else:
            end = i
            while end < n and key[end] not in ".[":
                end += 1
            segment = key[i:end]
            if not segment:
                raise _override_problem(text, "empty segment in key path", expected, repr(key))
            parts.append(int(segment) if segment.isdigit() else segment)
            i = end
        while i < n and key[i] == "[":
            match = _INDEX.match(key, i)
            if match is None:
                raise _override_problem(text, "bad index in key path", expected, repr(key))
            parts.append(int(match.group(1)))
            i = match.end()
        if i < n:
            if key[i] != ".":
                raise _override_problem(text, "bad key path", expected, repr(key))
            i += 1
            if i == n:
                raise _override_problem(text, "key path ends with '.'", expected, repr(key))
    return parts


def _walk_origins(value: Any, path: KeyPath, origin: Origin, out: Origins) -> None:
    out[path] = origin
    if isinstance(value, dict):
        for key, item in value.items():
            _walk_origins(item, (*path, str(key)), origin, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_origins(item, (*path, index), origin, out)


def apply_override(data: Any, origins: Origins, text: str) -> tuple[Any, Origins]:
    """``data`` with one ``key.path=value`` assignment applied (null removes the key)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise _override_problem(
            text, "an override needs key=value", "key.path=value, like load.workers=2", repr(text)
        )
    parts = parse_key_path(key.strip(), text)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc)
        raise _override_problem(
            text, "the value is not valid YAML", "a YAML value", problem
        ) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise _override_problem(
            text, "the value cannot be read", "a YAML value", str(exc)
        ) from None
    result = copy.deepcopy(data)
    container = result
    walked: list[str | int] = []
    for part in parts[:-1]:
        container = _step(container, part, walked, text, create=True)
        walked.append(part)
    last = parts[-1]
    path = tuple(walked)
    where = ".".join(str(p) for p in path) or "the top level"
    if isinstance(container, dict):
        name = str(last)
        if value is None:
            container.pop(name, None)
        else:
            container[name] = value
        final: str | int = name
    elif isinstance(container, list):
        if not isinstance(last, int) or last >= len(container):
            raise _override_problem(
                text,
                f"no item {last!r} in the list at {where}",
                f"an index from 0 to {len(container) - 1}" if container else "a non-empty list",
                repr(last),
            )
        if value is None:
            del container[last]
        else:
            container[last] = value
        final = last
    else:
        raise _override_problem(
            text, f"cannot set a key inside {where}", "a mapping or list there", describe(container)
        )
    full: KeyPath = (*path, final)
    prefix_len = len(path) if isinstance(container, list) and value is None else len(full)
    cut: KeyPath = full[:prefix_len]
    kept = {p: o for p, o in origins.items() if p[: len(cut)] != cut}
    if value is not None:
        _walk_origins(value, full, Origin(None, f"--set {text}"), kept)
    return result, kept


def _step(
    container: Any, part: str | int, walked: list[str | int], text: str, *, create: bool
) -> Any:
    where = ".".join(str(p) for p in walked) or "the top level"
    if isinstance(container, dict):
        name = str(part)
        if name not in container or container[name] is None:
            if not create:
                raise _override_problem(
                    text, f"no key {name!r} at {where}", "an existing key", name
                )
            container[name] = {}
        return container[name]
    if isinstance(container, list):
        if not isinstance(part, int) or part >= len(container):
            raise _override_problem(
                text,
                f"no item {part!r} in the list at {where}",
                f"an index from 0 to {len(container) - 1}" if container else "a non-empty list",
                repr(part),
            )
        return container[part]
    raise _override_problem(
        text, f"cannot go inside {where}", "a mapping or list there", describe(container)
    )
