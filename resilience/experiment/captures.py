"""Where a capture (and a write's ``id_field``) reads its value in a response: parsed once.

Three forms: a top-level JSON field (``id``), a dotted path into the JSON body whose
whole-number parts index lists (``data.access_token``, ``items.0.id``; a body that is a
list starts with its index, ``0.id``; a negative one counts from the end, ``items.-1.id``
for the last), or a response header (``header:Location``, the
name in any case). Indexes are written with dots only: ``items[0].id`` is refused with the
dotted form, so one file never mixes two spellings. A field whose own name holds a dot
(``@odata.nextLink``) is still read when the answer has it at the top level, as before
paths existed. The loader validates with ``parse_capture``; the load worker compiles the
same objects once per plan and calls ``read`` per response, which walks a tuple of
pre-split keys: no parsing on the request path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from resilience.experiment._problems import ValueProblem, describe

HEADER_PREFIX: Final = "header:"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_WHOLE = re.compile(r"-?[0-9]+")
_INDEX = re.compile(r"\[\s*(-?\d*)\s*\]")
EXPECTED: Final = (
    "a JSON field (id), a dotted path into the JSON body (data.token, items.0.id, "
    "items.-1.id for the last) or a "
    "response header (header:Location)"
)
MISSING: Final = object()
"""What ``CaptureSource.read`` returns when the answer does not hold the value."""


@dataclass(frozen=True)
class CaptureSource:
    """One parsed capture source: a header name, or the keys of a path into the JSON body."""

    text: str
    header: str | None = None
    """The header's name, lower case (``header:Location``); None for the JSON body."""
    keys: tuple[str, ...] = ()
    indexes: tuple[int | None, ...] = ()
    """Per key, its value as a list index when it is a whole number."""

    @property
    def from_body(self) -> bool:
        return self.header is None

    def describe(self) -> str:
        """How a miss names it: ``field 'data.id'`` or ``header Location``."""
        if self.header is not None:
            return f"header {self.text[len(HEADER_PREFIX) :].strip()}"
        return f"field {self.text!r}"

    def read(self, body: object, header: Callable[[str], str | None] | None = None) -> object:
        """The value, or ``MISSING`` when the answer does not have it (None is a value)."""
        if self.header is not None:
            value = header(self.header) if header is not None else None
            return MISSING if value is None else value
        if len(self.keys) > 1 and isinstance(body, dict) and self.text in body:
            return body[self.text]  # a top-level field whose name holds a dot
        node = body
        for key, index in zip(self.keys, self.indexes, strict=True):
            if isinstance(node, dict):
                if key not in node:
                    return MISSING
                node = node[key]
            elif isinstance(node, list) and index is not None and -len(node) <= index < len(node):
                node = node[index]
            else:
                return MISSING
        return node


def parse_capture(text: str) -> CaptureSource:
    """Parse a capture source; ``ValueProblem`` (expected, got) when it is not one."""
    if text[: len(HEADER_PREFIX)].lower() == HEADER_PREFIX:
        name = text[len(HEADER_PREFIX) :].strip()
        if not _HEADER_NAME.match(name):
            raise ValueProblem(
                "header:Name with an HTTP header name (header:Location)",
                describe(text),
                message="not a response header",
            )
        return CaptureSource(text=text, header=name.lower())
    if not text.strip():
        raise ValueProblem(EXPECTED, "an empty string", message="no response field to capture")
    if "[" in text or "]" in text:
        dotted = _INDEX.sub(lambda m: "." + m.group(1), text).lstrip(".")
        raise ValueProblem(
            f"list indexes written with dots: {dotted!r}",
            describe(text),
            message="brackets are not path syntax",
        )
    keys = tuple(text.split("."))
    if any(not key for key in keys):
        raise ValueProblem(
            "a dotted path without empty parts (data.token, items.0.id)",
            describe(text),
            message="an empty part in a capture path",
        )
    indexes = tuple(int(key) if _WHOLE.fullmatch(key) else None for key in keys)
    return CaptureSource(text=text, keys=keys, indexes=indexes)
