"""Request templates: placeholder rendering, captured variables, weighted choice."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from resilience.load.plan import RequestPlan
from resilience.load.template import (
    UserState,
    WeightedChooser,
    compile_request_templates,
    compile_template,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def state(seed: int = 1, **variables: object) -> UserState:
    return UserState(rng=random.Random(seed), variables=dict(variables))


def test_literal_text_renders_unchanged() -> None:
    """A template without placeholders renders to itself and needs nothing."""
    template = compile_template("/catalog/items")
    assert template.render(state()) == "/catalog/items"
    assert template.needs == frozenset()
    assert template.constant


def test_int_placeholder_stays_in_range_and_covers_it() -> None:
    """{int:A:B} renders integers in [A, B], reaching both ends."""
    template = compile_template("/items/{int:3:5}")
    s = state()
    seen = {template.render(s) for _ in range(300)}
    assert seen == {"/items/3", "/items/4", "/items/5"}


def test_uuid_placeholder_renders_distinct_uuid4s() -> None:
    """{uuid} renders a fresh, well-formed UUID4 each time."""
    template = compile_template("{uuid}")
    s = state()
    values = [template.render(s) for _ in range(50)]
    assert all(UUID4.match(v) for v in values)
    assert len(set(values)) == 50


def test_choice_and_seq_placeholders() -> None:
    """{choice:a|b} picks one of the options; {seq} is the user's counter."""
    template = compile_template("/{choice:red|blue}/{seq}")
    s = state()
    s.seq = 7
    rendered = {template.render(s) for _ in range(100)}
    assert rendered == {"/red/7", "/blue/7"}


def test_captured_variable_is_needed_and_quoted_in_paths() -> None:
    """A captured variable is listed in needs and URL-quoted when it lands in a path."""
    [request] = compile_request_templates(
        [RequestPlan(name="GET /orders/{order_id}", path="/orders/{order_id}")]
    )
    assert request.needs == frozenset({"order_id"})
    assert request.render_path(state(order_id="a b/c")) == "/orders/a%20b%2Fc"
    assert request.render_path(state(order_id=42)) == "/orders/42"


def test_json_body_keeps_types_of_lone_placeholders() -> None:
    """In a JSON body a lone {int}/{seq}/variable keeps its type; mixed text stays text."""
    [request] = compile_request_templates(
        [
            RequestPlan(
                name="POST /orders",
                method="POST",
                path="/orders",
                json_body={
                    "item_id": "{int:7:7}",
                    "ref": "order-{seq}",
                    "parent": "{order_id}",
                    "tags": ["{choice:x|x}", 3, None],
                },
            )
        ]
    )
    s = state(order_id=99)
    s.seq = 2
    assert request.body is not None
    assert request.body(s) == {"item_id": 7, "ref": "order-2", "parent": 99, "tags": ["x", 3, None]}
    assert request.needs == frozenset({"order_id"})


def test_headers_render_placeholders() -> None:
    """Header values may hold placeholders too."""
    [request] = compile_request_templates(
        [RequestPlan(name="GET /", path="/", headers={"X-Run": "r-{int:1:1}"})]
    )
    assert request.render_headers(state()) == {"X-Run": "r-1"}


@pytest.mark.parametrize("text", ["/items/{int:5:1}", "/{nope:1}", "/{choice:}", "/a}"])
def test_malformed_placeholders_are_rejected(text: str) -> None:
    """A malformed placeholder is a ValueError at compile time, not at send time."""
    with pytest.raises(ValueError):
        compile_template(text)


def test_weighted_choice_follows_weights() -> None:
    """Requests are chosen in proportion to their weights (4:3:2:1)."""
    chooser = WeightedChooser([4, 3, 2, 1], [frozenset()] * 4)
    rng = random.Random(5)
    counts = Counter(chooser.choose(rng, frozenset()) for _ in range(20_000))
    for index, weight in enumerate([4, 3, 2, 1]):
        assert counts[index] / 20_000 == pytest.approx(weight / 10, abs=0.015)


def test_user_without_captured_variable_never_picks_a_request_needing_it() -> None:
    """Until order_id is captured, the request that needs it is never chosen; then it is."""
    chooser = WeightedChooser([1, 100], [frozenset(), frozenset({"order_id"})])
    rng = random.Random(3)
    before = {chooser.choose(rng, frozenset()) for _ in range(500)}
    after = Counter(chooser.choose(rng, frozenset({"order_id"})) for _ in range(500))
    assert before == {0}
    assert after[1] > 450


def test_no_eligible_request_gives_none() -> None:
    """When every request needs an uncaptured variable, there is nothing to send."""
    chooser = WeightedChooser([1], [frozenset({"x"})])
    assert chooser.choose(random.Random(1), frozenset()) is None
    assert chooser.eligible([]) == []


def test_a_request_with_nothing_to_fill_in_is_rendered_once() -> None:
    """A request without placeholders or body is the same rendering every time (the request
    path only reads it); one with a placeholder anywhere, or a body, renders afresh."""
    fixed, seq_header, body = compile_request_templates(
        [
            RequestPlan(name="GET /a", path="/a", headers={"X-Kind": "shopper"}),
            RequestPlan(name="GET /b", path="/b", headers={"X-Seq": "{seq}"}),
            RequestPlan(name="POST /c", method="POST", path="/c", json_body={"n": 1}),
        ]
    )
    s = state()
    first = fixed.render(s)
    assert first is fixed.render(s)
    assert (first.method, first.path, first.headers) == ("GET", "/a", {"X-Kind": "shopper"})
    s.seq = 4
    assert seq_header.render(s).headers == {"X-Seq": "4"}
    s.seq = 5
    assert seq_header.render(s).headers == {"X-Seq": "5"}
    assert body.render(s) is not body.render(s)
    assert body.render(s).json == {"n": 1}


def test_one_eligible_request_is_chosen_without_drawing() -> None:
    """With a single request eligible there is nothing to draw: the user's random stream
    (which also makes its trace ids) is left as it was."""
    chooser = WeightedChooser([3, 1], [frozenset(), frozenset({"order_id"})])
    rng = random.Random(9)
    before = rng.getstate()
    assert chooser.choose(rng, frozenset()) == 0
    assert rng.getstate() == before
    assert chooser.choose(rng, frozenset({"order_id"})) in (0, 1)
    assert rng.getstate() != before
