"""Building requests without gevent: form and raw bodies, headers with captures, and the
setup/on_start steps (in order, stopping at the first failure, capturing for later)."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qsl

import pytest

from resilience.load.plan import LoadPlan, RequestPlan, Stage
from resilience.load.template import (
    FORM_CONTENT_TYPE,
    Answer,
    Rendered,
    Steps,
    UserState,
    compile_request_templates,
)


def state(**variables: Any) -> UserState:
    return UserState(rng=random.Random(3), variables=dict(variables))


def test_a_form_body_is_urlencoded_with_its_placeholders_rendered() -> None:
    """form: values rendered (captures, builtins), booleans as true/false, the form type set."""
    [template] = compile_request_templates(
        [
            RequestPlan(
                name="login",
                method="POST",
                path="/login",
                form={"username": "shop per", "password": "{secret}", "keep": True, "n": 2},
            )
        ]
    )
    assert template.needs == {"secret"}
    rendered = template.render(state(secret="a&b=c"))
    assert rendered.json is None
    assert rendered.content is not None
    assert parse_qsl(rendered.content) == [
        ("username", "shop per"),
        ("password", "a&b=c"),
        ("keep", "true"),
        ("n", "2"),
    ]
    assert rendered.headers == {"Content-Type": FORM_CONTENT_TYPE}


def test_a_raw_body_keeps_its_content_type_and_a_header_overrides_it() -> None:
    """body + content_type is sent as text with that type; an explicit Content-Type header
    wins; without content_type the type is text/plain."""
    plans = [
        RequestPlan(
            name="xml",
            method="POST",
            path="/o",
            body="<o id='{seq}'/>",
            content_type="application/xml",
        ),
        RequestPlan(
            name="own",
            method="POST",
            path="/o",
            body="x",
            content_type="application/xml",
            headers={"content-type": "text/csv"},
        ),
        RequestPlan(name="plain", method="POST", path="/o", body="hello"),
    ]
    xml, own, plain = compile_request_templates(plans)
    s = state()
    s.seq = 7
    assert xml.render(s) == Rendered(
        "POST", "/o", {"Content-Type": "application/xml"}, content="<o id='7'/>"
    )
    assert own.render(s).headers == {"content-type": "text/csv"}
    assert plain.render(s).headers == {"Content-Type": "text/plain; charset=utf-8"}


def test_headers_take_captured_variables() -> None:
    """A header's {token} renders the captured value; the request needs it to be eligible."""
    [template] = compile_request_templates(
        [RequestPlan(name="items", path="/items", headers={"Authorization": "Bearer {token}"})]
    )
    assert template.needs == {"token"}
    assert template.render(state(token="t0k")).headers == {"Authorization": "Bearer t0k"}


class FakeService:
    """Answers steps from a table: path -> (status, json); records what it was sent."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.sent: list[Rendered] = []

    def __call__(self, rendered: Rendered) -> Answer:
        self.sent.append(rendered)
        answer = self.answers[rendered.path]
        if isinstance(answer, Exception):
            raise answer
        return Answer(*answer)


LOGIN = RequestPlan(
    name="POST /login",
    method="POST",
    path="/login",
    form={"username": "u", "password": "p"},
    expect=[200],
    capture={"token": "access_token"},
)
ME = RequestPlan(
    name="GET /me",
    path="/me",
    headers={"Authorization": "Bearer {token}"},
    capture={"user": "id"},
)


def test_steps_run_in_order_and_capture_for_the_next() -> None:
    """Login captures the token, the next step sends it and captures the user id."""
    service = FakeService({"/login": (200, {"access_token": "T"}), "/me": (200, {"id": 9})})
    s = state()
    assert Steps.compile([LOGIN, ME]).run(s, service) is None
    assert s.variables == {"token": "T", "user": 9}
    assert s.captured == {"token", "user"}
    assert service.sent[1].headers == {"Authorization": "Bearer T"}


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((401, {"error": "InvalidCredentials"}), "POST /login: HTTP 401"),
        ((200, {"token": "T"}), "POST /login: the answer has no field 'access_token' to capture"),
        ((200, None), "POST /login: the answer has no field 'access_token' to capture"),
        (ConnectionRefusedError("refused"), "POST /login: ConnectionRefusedError: refused"),
    ],
)
def test_a_failing_step_stops_the_list_and_says_why(answer: Any, reason: str) -> None:
    """An unexpected status, a missing capture field or an error stops before the next step."""
    service = FakeService({"/login": answer, "/me": (200, {"id": 9})})
    failure = Steps.compile([LOGIN, ME]).run(state(), service)
    assert failure is not None
    assert str(failure) == reason
    assert [r.path for r in service.sent] == ["/login"]


def test_a_plan_whose_requests_need_step_captures_is_valid() -> None:
    """Every request needing {token} is fine when on_start captures it (not otherwise)."""
    request = RequestPlan(name="items", path="/items", headers={"Authorization": "Bearer {token}"})
    common: dict[str, Any] = {
        "target": "http://127.0.0.1:9",
        "t0": 0.0,
        "stages": [Stage(duration=5, users=1, spawn_rate=1)],
        "requests": [request],
    }
    plan = LoadPlan(**common, on_start=[LOGIN])
    assert LoadPlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match="every request needs a captured variable"):
        LoadPlan(**common)
