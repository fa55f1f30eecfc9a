"""Profiles and ``--set`` overrides applied to the raw document, remembering where values came from.

A profile is a raw overlay deep-merged over the base document: mappings merge key by key;
two lists whose items are mappings merge item by item BY INDEX (``faults: [{at: 15s}]``
retimes the first fault and keeps its type and proxy); anything else is replaced. A null
value removes the key (so ``preset: null`` makes room for ``stages``), a null list item
removes that item, and an empty list replaces the base list. ``--set key.path=value``
assigns one value after the profile, parsed by the same YAML reader as files with the same
limits (size, nesting, aliases; one value budget shared with the file). Every value keeps
an ``Origin``, so a validation error can name the profile or the override that produced
the bad value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from resilience.experiment._problems import InputProblems, KeyPath, Problem, describe
from resilience.experiment._yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, YAMLValue, parse_yaml

_INDEX = re.compile(r"\[([0-9]+)\]")


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


def _copy_subtree(
    value: YAMLValue, source: Origins, src: KeyPath, out: Origins, dst: KeyPath
) -> None:
    """The origins of ``value``'s nodes, recorded in ``source`` under ``src``, into ``out``
    under ``dst``. Walks the value, not ``source``: a merge that keeps many keys of a large
    document stays linear in its size."""
    found = source.get(src)
    if found is not None:
        out[dst] = found
    if isinstance(value, dict):
        for key, item in value.items():
            _copy_subtree(item, source, (*src, key), out, (*dst, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _copy_subtree(item, source, (*src, index), out, (*dst, index))


def _mergeable_lists(base: YAMLValue, overlay: YAMLValue) -> bool:
    return (
        isinstance(base, list)
        and isinstance(overlay, list)
        and bool(overlay)
        and all(isinstance(item, dict) for item in base)
        and all(isinstance(item, dict) or item is None for item in overlay)
    )


def deep_merge(
    base: YAMLValue, overlay: YAMLValue, base_from: Origins, overlay_from: Origins
) -> tuple[YAMLValue, Origins]:
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
        self, base: YAMLValue, overlay: YAMLValue, *, bpath: KeyPath, opath: KeyPath, dpath: KeyPath
    ) -> YAMLValue:
        if isinstance(base, dict) and isinstance(overlay, dict):
            return self._mappings(base, overlay, bpath=bpath, opath=opath, dpath=dpath)
        if isinstance(base, list) and isinstance(overlay, list) and _mergeable_lists(base, overlay):
            return self._lists(base, overlay, bpath=bpath, opath=opath, dpath=dpath)
        _copy_subtree(overlay, self.overlay_from, opath, self.out, dpath)
        return copy.deepcopy(overlay)

    def _mappings(
        self,
        base: dict[str, YAMLValue],
        overlay: dict[str, YAMLValue],
        *,
        bpath: KeyPath,
        opath: KeyPath,
        dpath: KeyPath,
    ) -> dict[str, YAMLValue]:
        if bpath in self.base_from:
            self.out[dpath] = self.base_from[bpath]
        result: dict[str, YAMLValue] = {}
        for key, value in base.items():
            if key not in overlay:
                result[key] = value
                _copy_subtree(value, self.base_from, (*bpath, key), self.out, (*dpath, key))
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
                _copy_subtree(value, self.overlay_from, (*opath, key), self.out, (*dpath, key))
        return result

    def _lists(
        self,
        base: list[YAMLValue],
        overlay: list[YAMLValue],
        *,
        bpath: KeyPath,
        opath: KeyPath,
        dpath: KeyPath,
    ) -> list[YAMLValue]:
        if bpath in self.base_from:
            self.out[dpath] = self.base_from[bpath]
        items: list[YAMLValue] = []
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
                _copy_subtree(over, self.overlay_from, (*opath, index), self.out, target)
        return items


# ---------------------------------------------------------------------------- --set

MAX_OVERRIDES: Final = 100
"""At most this many ``--set`` options: each may rewrite the origins of the whole document."""


def _label(text: str) -> str:
    """How an error names an override: ``--set key=value``, long values cut short."""
    return f"--set {text if len(text) <= 80 else text[:77] + '...'}"


def _override_problem(text: str, message: str, expected: str, got: str) -> InputProblems:
    return InputProblems([Problem(message, expected, got, (), None, _label(text))])


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
            # isdigit() is also true for superscripts (int() refuses them) and non-Latin digits.
            is_index = segment.isascii() and segment.isdigit()
            parts.append(int(segment) if is_index else segment)
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
        if len(parts) > MAX_DEPTH:
            raise _override_problem(
                text, "the key path is too deep", f"at most {MAX_DEPTH} levels", repr(key[:60])
            )
    return parts


@dataclass(frozen=True)
class Override:
    """One ``--set key.path=value``, parsed: where, what (None removes), how many values."""

    text: str
    path: KeyPath
    value: YAMLValue
    count: int

    @property
    def label(self) -> str:
        return _label(self.text)


def parse_overrides(texts: Sequence[str], *, budget: int = MAX_NODES) -> list[Override]:
    """Each ``key.path=value`` parsed once, by the same YAML reader and limits as files.

    ``budget`` is how many values (after alias expansion) the file left of ``MAX_NODES``;
    the values share it. At most ``MAX_OVERRIDES`` options, ``MAX_BYTES`` of text together.
    """
    if len(texts) > MAX_OVERRIDES:
        raise InputProblems(
            [
                Problem(
                    "too many --set options",
                    f"at most {MAX_OVERRIDES}",
                    str(len(texts)),
                    origin=_label(texts[MAX_OVERRIDES]),
                )
            ]
        )
    size = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
    if size > MAX_BYTES:
        raise InputProblems(
            [
                Problem(
                    "the --set options are too large",
                    f"at most {MAX_BYTES // 1024} KiB together",
                    f"{size // 1024} KiB",
                )
            ]
        )
    parsed: list[Override] = []
    for text in texts:
        override = _parse_override(text, budget)
        budget -= override.count
        parsed.append(override)
    return parsed


def _parse_override(text: str, budget: int) -> Override:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise _override_problem(
            text, "an override needs key=value", "key.path=value, like load.workers=2", repr(text)
        )
    path = tuple(parse_key_path(key.strip(), text))
    if not raw.strip():
        return Override(text, path, None, 0)
    try:
        document = parse_yaml(raw, prefix=path, max_nodes=budget, what="value")
    except InputProblems as exc:
        # Lines would count within the value, not the file: the label says where.
        label = _label(text)
        raise InputProblems([replace(p, line=None, origin=label) for p in exc.problems]) from None
    return Override(text, path, document.data, document.count)


@dataclass(frozen=True)
class _Written:
    """What one override did at one path: set or removed a value, created a mapping on the
    way, or removed a list item (which moves the later items up)."""

    path: KeyPath
    label: str
    kind: str  # "set", "created", "removed" or "removed_item"


class Provenance:
    """Where each value of a resolved document came from: the file's lines (base and profile
    ``Origins``) and, on top, the log of what the overrides wrote.

    Overrides are not folded into ``Origins``: replacing or removing something would mean
    finding every recorded path below it. The log costs nothing to keep, and a lookup walks
    it backwards, undoing removed list items' shifts, down to the file's own origins.
    """

    def __init__(self, origins: Origins, log: Sequence[_Written] = ()) -> None:
        self.origins = origins
        self.log = list(log)

    def origin(self, path: KeyPath) -> Origin | None:
        """The origin of the value at ``path`` (or of its deepest recorded parent)."""
        for written in reversed(self.log):
            n = len(written.path)
            if written.kind == "removed_item":
                # Items after the removed one moved up: look where they were before.
                k, removed = n - 1, written.path[-1]
                at = path[k] if len(path) > k and path[:k] == written.path[:k] else None
                if isinstance(at, int) and isinstance(removed, int) and at >= removed:
                    path = (*path[:k], at + 1, *path[k + 1 :])
            elif written.kind == "created":
                if path == written.path:
                    return Origin(None, written.label)
            elif path[:n] == written.path:
                return Origin(None, written.label)
        return origin_of(self.origins, path)


def apply_overrides(
    data: YAMLValue, origins: Origins, overrides: Sequence[Override]
) -> tuple[YAMLValue, Provenance]:
    """``data`` with each override applied in order (a None value removes the key or item).

    Containers along each key path are copied, everything else is shared: the input is not
    changed and can be reused for the next profile.
    """
    log: list[_Written] = []
    for override in overrides:
        data = _assign(data, override, log)
    return data, Provenance(origins, log)


def _shallow(value: YAMLValue) -> YAMLValue:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _assign(data: YAMLValue, override: Override, log: list[_Written]) -> YAMLValue:
    text, parts, value, label = override.text, override.path, override.value, override.label
    root = _shallow(data)
    container = root
    walked: list[str | int] = []
    for part in parts[:-1]:
        container = _step(container, part, walked, override, log)
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
        log.append(_Written((*path, name), label, "set" if value is not None else "removed"))
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
            log.append(_Written((*path, last), label, "removed_item"))
        else:
            container[last] = value
            log.append(_Written((*path, last), label, "set"))
    else:
        raise _override_problem(
            text, f"cannot set a key inside {where}", "a mapping or list there", describe(container)
        )
    return root


def _step(
    container: YAMLValue,
    part: str | int,
    walked: list[str | int],
    override: Override,
    log: list[_Written],
) -> YAMLValue:
    """The (copied) child of ``container`` at ``part``, a new mapping if there is none."""
    text, label = override.text, override.label
    where = ".".join(str(p) for p in walked) or "the top level"
    if isinstance(container, dict):
        name = str(part)
        if name not in container or container[name] is None:
            container[name] = {}
            log.append(_Written((*walked, name), label, "created"))
        else:
            container[name] = _shallow(container[name])
        return container[name]
    if isinstance(container, list):
        if not isinstance(part, int) or part >= len(container):
            raise _override_problem(
                text,
                f"no item {part!r} in the list at {where}",
                f"an index from 0 to {len(container) - 1}" if container else "a non-empty list",
                repr(part),
            )
        container[part] = _shallow(container[part])
        return container[part]
    raise _override_problem(
        text, f"cannot go inside {where}", "a mapping or list there", describe(container)
    )
