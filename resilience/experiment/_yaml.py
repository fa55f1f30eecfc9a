"""YAML to plain Python data, remembering the line of every key so errors can point at it.

PyYAML's node graph carries marks; its constructor drops them. This module walks the
composed nodes itself: mapping keys become strings (as written), scalars are built by
PyYAML's safe constructor, merge keys (``<<``) work, and duplicate keys, unknown tags,
recursive aliases, alias bombs and absurd nesting become ``Problem`` objects instead of
exceptions or hangs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from resilience.experiment._problems import InputProblems, KeyPath, Problem

MAX_DEPTH: Final = 64
MAX_NODES: Final = 100_000

# libyaml's parser is ~20x faster than the pure-Python one and keeps the same marks.
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


@dataclass
class Document:
    """Plain data plus the 1-based line of each key path (mapping keys, list items)."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _yaml_error(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else None
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if isinstance(exc, yaml.reader.ReaderError):
        got = f"character {exc.character!r} ({exc.reason})"
        line = None
        return Problem("the file is not valid YAML", "readable YAML text", got, (), line)
    got = str(problem or exc).strip()
    if context:
        got = f"{got} ({str(context).strip()})"
    return Problem("the file is not valid YAML", "valid YAML syntax", got or "an error", (), line)


def parse_yaml(text: str) -> Document:
    """Parse one YAML document; raise ``InputProblems`` for anything that is not plain data."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise InputProblems([_yaml_error(exc)]) from None
    except RecursionError:
        raise InputProblems(
            [Problem("the YAML is nested too deeply", f"at most {MAX_DEPTH} levels", "more", ())]
        ) from None
    if root is None:
        return Document(data=None)
    builder = _Builder()
    data = builder.build(root, (), 0)
    if builder.problems:
        raise InputProblems(builder.problems)
    builder.lines.setdefault((), _line(root))
    return Document(data=data, lines=builder.lines)


class _Builder:
    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()
        self.constructor = yaml.SafeLoader("")

    def problem(self, message: str, expected: str, got: str, path: KeyPath, node: Node) -> None:
        self.problems.append(Problem(message, expected, got, path, _line(node)))

    def build(self, node: Node, path: KeyPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.problem(
                    "the document is too large (alias expansion?)",
                    f"at most {MAX_NODES} values",
                    "more",
                    path,
                    node,
                )
            return None
        if depth > MAX_DEPTH:
            self.problem("nested too deeply", f"at most {MAX_DEPTH} levels", "more", path, node)
            return None
        if id(node) in self.active:
            self.problem("recursive alias", "an alias to a finished node", "a cycle", path, node)
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.bad_tag(node, path)
                    return None
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = _line(item)
                    items.append(self.build(item, (*path, index), depth + 1))
                return items
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    self.bad_tag(node, path)
                    return None
                return self.mapping(node, path, depth)
            self.bad_tag(node, path)
            return None
        finally:
            self.active.discard(id(node))

    def bad_tag(self, node: Node, path: KeyPath) -> None:
        self.problem(
            "unsupported YAML tag", "plain YAML data (no tags)", repr(node.tag), path, node
        )

    def scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            got = str(getattr(exc, "problem", None) or exc).strip()
            self.problem("cannot read this value", "plain YAML data", got, path, node)
        except (ValueError, TypeError, OverflowError) as exc:
            self.problem("cannot read this value", "a valid YAML scalar", str(exc), path, node)
        return None

    def mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: list[tuple[ScalarNode, Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                # Merged keys first, so that explicit keys (and their lines) win.
                self.merge(value_node, result, path, depth)
            elif isinstance(key_node, ScalarNode):
                explicit.append((key_node, value_node))
            else:
                self.problem(
                    "a mapping key must be a plain name",
                    "a string key",
                    "a list or mapping used as a key",
                    path,
                    key_node,
                )
        key_lines: dict[str, int] = {}
        for key_node, value_node in explicit:
            key = str(key_node.value)
            if key in key_lines:
                self.problem(
                    f"duplicate key {key!r}",
                    "each key once per mapping",
                    f"{key!r} again (first on line {key_lines[key]})",
                    (*path, key),
                    key_node,
                )
                continue
            key_lines[key] = _line(key_node)
            self.lines[(*path, key)] = _line(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def merge(self, value: Node, result: dict[str, Any], path: KeyPath, depth: int) -> None:
        sources = value.value if isinstance(value, SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(
                    "a merge key (<<) takes a mapping or a list of mappings",
                    "a mapping alias like <<: *defaults",
                    "something else",
                    path,
                    source,
                )
                continue
            merged = self.build(source, path, depth + 1)
            if isinstance(merged, dict):
                for key, item in merged.items():
                    result.setdefault(key, item)
