"""YAML to plain Python data, remembering the line of every key so errors can point at it.

PyYAML's node graph carries marks; its constructor drops them. This module walks the
composed nodes itself: mapping keys become strings (as written), scalars are built by
PyYAML's safe constructor, merge keys (``<<``) work, and duplicate keys, unknown tags,
recursive aliases, alias bombs and absurd nesting become ``Problem`` objects instead of
exceptions or hangs.

The same limits hold for every YAML text the loader reads, files and ``--set`` values alike:
at most ``MAX_BYTES`` of text, ``MAX_DEPTH`` levels of nesting (counted from the document's
top, so a ``--set`` value deep in a key path has fewer left) and ``MAX_NODES`` values after
alias expansion (a budget the caller can share between a file and its overrides).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from resilience.experiment._problems import InputProblems, KeyPath, Problem

MAX_BYTES: Final = 1 << 20
MAX_DEPTH: Final = 64
MAX_NODES: Final = 50_000
"""Values and keys after alias expansion. The catalogue's files hold ~150; 50,000 keeps the
worst document the limits let through under 2 s and 200 MB (100,000 came close to both)."""

# libyaml's parser is ~20x faster than the pure-Python one and keeps the same marks.
_LOADER: Final[type[yaml.SafeLoader | yaml.CSafeLoader]] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

_NODE_EVENTS: Final = (
    yaml.ScalarEvent,
    yaml.SequenceStartEvent,
    yaml.MappingStartEvent,
    yaml.AliasEvent,
)
_NON_PRINTABLE: Final = yaml.reader.Reader.NON_PRINTABLE
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


YAMLScalar = str | int | float | bool | None | date | bytes
"""What the safe loader makes of a scalar (``date`` includes ``datetime``; ``!!binary`` is bytes)."""
YAMLValue = YAMLScalar | list["YAMLValue"] | dict[str, "YAMLValue"]
"""A parsed document or any value in it, before the model has read it."""


@dataclass
class Document:
    """Plain data plus the 1-based line of each key path (mapping keys, list items)."""

    data: YAMLValue
    lines: dict[KeyPath, int] = field(default_factory=dict)
    count: int = 0
    """Values built (after alias expansion): what this document used of the node budget."""


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _yaml_error(exc: yaml.YAMLError, text: str, what: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else None
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if isinstance(exc, yaml.reader.ReaderError):
        got = f"character {exc.character!r} ({exc.reason})"
        return _unreadable(text, what) or Problem(
            f"the {what} is not valid YAML", "readable YAML text", got
        )
    got = str(problem or exc).strip()
    if context:
        got = f"{got} ({str(context).strip()})"
    expected = "valid YAML syntax"
    lines = text.splitlines()
    if line is not None and 0 < line <= len(lines) and "flow" in str(context):
        expected += _quote_hint(lines[line - 1])
    return Problem(f"the {what} is not valid YAML", expected, got or "an error", (), line)


_UNQUOTED_BRACES: Final = re.compile(r"([A-Za-z_][\w-]*):\s+([^\s\"'{\[,][^,{}]*\{[^,]*)")


def _quote_hint(text: str) -> str:
    """Inside ``{...}`` or ``[...]`` a placeholder's braces end the mapping: say to quote
    the value (``{path: /orders/{id}}`` -> ``path: "/orders/{id}"``)."""
    found = _UNQUOTED_BRACES.search(text)
    if found is None:
        return ""
    key, value = found.groups()
    value = value.rstrip()
    while value.count("}") > value.count("{") or value.count("]") > value.count("["):
        value = value[:-1]
    return (
        f"; a value with braces inside {{...}} or [...] must be quoted, or YAML reads its "
        f'braces as the mapping\'s: quote it: {key}: "{value}"'
    )


def _unreadable(text: str, what: str) -> Problem | None:
    """The first character YAML refuses (control characters, lone surrogates from undecodable
    command-line bytes), at its line. Found here rather than from the reader's error: libyaml
    counts its position in UTF-8 bytes, PyYAML in characters, and libyaml cannot even encode
    a surrogate."""
    found = _NON_PRINTABLE.search(text)
    if found is None:
        return None
    char, start = found.group(), found.start()
    kind = "not UTF-8" if 0xD800 <= ord(char) <= 0xDFFF else "a control character"
    column = start - text.rfind("\n", 0, start)
    return Problem(
        f"the {what} is not readable YAML",
        "printable UTF-8 text (tabs and line breaks allowed)",
        f"character {char!r} ({kind}) at column {column}",
        (),
        text.count("\n", 0, start) + 1,
    )


def _too_many_nodes(text: str, max_nodes: int) -> Problem | None:
    """A problem if the text holds more than ``max_nodes`` values before alias expansion.

    Composing builds every node (with two marks each) before the builder can count them: a
    1 MiB list of one-letter items is half a million nodes, ~2 s and ~250 MB. Counting the
    parser's events first costs ~0.1 s per 100,000 and no memory.
    """
    count = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _NODE_EVENTS):
            count += 1
            if count > max_nodes:
                mark = event.start_mark
                return _too_large((), int(mark.line) + 1 if mark is not None else None)
    return None


def _too_large(path: KeyPath, line: int | None) -> Problem:
    # The overall cap, not what was left of it: that is what a user can act on.
    return Problem(
        "the document is too large (alias expansion?)",
        f"at most {MAX_NODES} values and keys after alias expansion, a file and its --set "
        "values together",
        "more",
        path,
        line,
    )


def parse_yaml(
    text: str, *, prefix: KeyPath = (), max_nodes: int = MAX_NODES, what: str = "file"
) -> Document:
    """Parse one YAML document; raise ``InputProblems`` for anything that is not plain data.

    ``prefix`` is where the document will sit (a ``--set`` value's key path): problems are
    reported at paths under it and its length counts against ``MAX_DEPTH``. ``max_nodes``
    is what is left of the value budget; ``what`` names the text in messages ("file",
    "value").
    """
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InputProblems(
            [
                Problem(
                    f"the {what} is too large", f"at most {MAX_BYTES // 1024} KiB", "more", prefix
                )
            ]
        )
    unreadable = _unreadable(text, what)
    if unreadable is not None:
        raise InputProblems([unreadable.at(prefix)])
    try:
        too_many = _too_many_nodes(text, max_nodes)
        if too_many is not None:
            raise InputProblems([too_many.at(prefix)])
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        problem = _yaml_error(exc, text, what)
        raise InputProblems([problem.at(prefix) if prefix else problem]) from None
    except RecursionError:
        raise InputProblems(
            [
                Problem(
                    f"the {what} is nested too deeply",
                    f"at most {MAX_DEPTH} levels",
                    "more",
                    prefix,
                )
            ]
        ) from None
    if root is None:
        return Document(data=None)
    builder = _Builder(max_nodes)
    data = builder.build(root, prefix, len(prefix))
    if builder.problems:
        raise InputProblems(builder.problems)
    builder.lines.setdefault(prefix, _line(root))
    return Document(data=data, lines=builder.lines, count=builder.count)


class _Builder:
    def __init__(self, max_nodes: int = MAX_NODES) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.max_nodes = max_nodes
        self.active: set[int] = set()
        self.constructor = yaml.SafeLoader("")

    def problem(self, message: str, expected: str, got: str, path: KeyPath, node: Node) -> None:
        self.problems.append(Problem(message, expected, got, path, _line(node)))

    def build(self, node: Node, path: KeyPath, depth: int) -> YAMLValue:  # noqa: PLR0911 (a dispatch on the YAML node kind)
        self.count += 1
        if self.count > self.max_nodes:
            if self.count == self.max_nodes + 1:
                self.problems.append(_too_large(path, _line(node)))
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
                items: list[YAMLValue] = []
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

    def scalar(self, node: ScalarNode, path: KeyPath) -> YAMLScalar:
        try:
            value: YAMLScalar = self.constructor.construct_object(node, deep=True)
            return value
        except yaml.YAMLError as exc:
            got = str(getattr(exc, "problem", None) or exc).strip()
            self.problem("cannot read this value", "plain YAML data", got, path, node)
        except (ValueError, TypeError, OverflowError) as exc:
            self.problem("cannot read this value", "a valid YAML scalar", str(exc), path, node)
        return None

    def mapping(self, node: MappingNode, path: KeyPath, depth: int) -> dict[str, YAMLValue]:
        result: dict[str, YAMLValue] = {}
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
            self.count += 1  # keys count like values: the parser's events do (_too_many_nodes)
            self.lines[(*path, key)] = _line(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def merge(self, value: Node, result: dict[str, YAMLValue], path: KeyPath, depth: int) -> None:
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
