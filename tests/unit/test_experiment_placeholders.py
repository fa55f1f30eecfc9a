"""Placeholders in request paths and JSON bodies."""

from __future__ import annotations

import random
import uuid

import pytest

from resilience.experiment._problems import ValueProblem
from resilience.experiment.placeholders import MissingVariable, Template, render_json


def _rng() -> random.Random:
    return random.Random(7)


def test_parse_splits_literals_and_placeholders() -> None:
    """A path becomes literal parts and typed placeholders."""
    template = Template.parse("/items/{int:1:50}/x/{order_id}?c={choice:a|b}&s={seq}&u={uuid}")
    kinds = [p.kind for p in template.placeholders]
    assert kinds == ["int", "var", "choice", "seq", "uuid"]
    assert template.variables == {"order_id"}


def test_render_fills_every_kind() -> None:
    """Each placeholder renders: int in range, choice among options, seq, uuid, variable."""
    template = Template.parse("{int:3:3}-{choice:x}-{seq}-{order_id}")
    assert template.render({"order_id": 42}, _rng(), seq=9) == "3-x-9-42"
    value = Template.parse("{uuid}").render({}, _rng(), seq=1)
    assert uuid.UUID(value).version == 4


def test_int_placeholder_stays_in_bounds() -> None:
    """{int:A:B} draws uniformly within [A, B] inclusive."""
    template = Template.parse("{int:-2:2}")
    rng = _rng()
    seen = {template.render_value({}, rng, seq=1) for _ in range(200)}
    assert seen == {-2, -1, 0, 1, 2}


def test_json_lone_placeholder_keeps_its_type() -> None:
    """In a JSON body "{int:1:50}" renders as a number; text around it makes it a string."""
    body = render_json(
        {"item_id": "{int:5:5}", "ref": "r-{seq}", "n": [1, "{order_id}"], "q": 1},
        {"order_id": 77},
        _rng(),
        seq=3,
    )
    assert body == {"item_id": 5, "ref": "r-3", "n": [1, 77], "q": 1}


def test_missing_variable_is_a_distinct_error() -> None:
    """Rendering a variable not captured yet raises MissingVariable (so a user can skip)."""
    with pytest.raises(MissingVariable):
        Template.parse("/orders/{order_id}").render({}, _rng(), seq=1)


@pytest.mark.parametrize(
    "bad",
    [
        "/x/{int:5:1}",
        "/x/{int:a:b}",
        "/x/{int:1}",
        "/x/{choice:}",
        "/x/{choice:a||b}",
        "/x/{not valid}",
        "/x/{",
        "/x/}",
        "/x/{{uuid}",
        "/x/{a{b}",
        "/x/{}",
    ],
)
def test_bad_syntax_is_refused(bad: str) -> None:
    """Bad ranges, empty choices, unknown content and unbalanced braces are refused."""
    with pytest.raises(ValueProblem) as info:
        Template.parse(bad)
    assert info.value.expected
    assert repr(bad) in info.value.got or bad in info.value.got
