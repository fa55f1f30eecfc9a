"""Services that could not be described before: literal braces ({{ }}), captures from a
dotted path or a response header, a captured Location followed on the target only, and the
HEAD and OPTIONS methods; from the file's validation to what the load worker renders."""

from __future__ import annotations

import json
import random
import textwrap

import pytest

from resilience.errors import EXIT_INVALID, ExperimentError, LoadRefused
from resilience.experiment import Experiment, parse_experiment
from resilience.experiment.captures import MISSING, parse_capture
from resilience.experiment.placeholders import Template
from resilience.load.plan import RequestPlan, plan_from_experiment
from resilience.load.samples import REFUSED, WorkerExit, decode_event, encode_event
from resilience.load.template import (
    Answer,
    OffTarget,
    Steps,
    TargetOrigin,
    UserState,
    capture_into,
    compile_captures,
    compile_request_templates,
)
from resilience.runner.evidence import parse_listing, read_back

TARGET = "http://127.0.0.1:9000"
BASE = """
name: svc
target: {url: "http://127.0.0.1:9000"}
load:
  stages: [{duration: 1m, users: 2, spawn_rate: 2}]
  workload:
    requests:
"""


def load(requests: str, head: str = BASE) -> Experiment:
    text = textwrap.dedent(head) + textwrap.indent(textwrap.dedent(requests), " " * 6)
    return parse_experiment(text, file="svc.yaml")


def error_of(requests: str) -> str:
    with pytest.raises(ExperimentError) as info:
        load(requests)
    assert info.value.exit_code == EXIT_INVALID
    return str(info.value)


def state(**variables: object) -> UserState:
    return UserState(rng=random.Random(1), variables=dict(variables))  # type: ignore[arg-type]


# -- literal braces ------------------------------------------------------------------------


def test_doubled_braces_are_literal_braces() -> None:
    """{{ and }} render as { and } beside placeholders; alone they make a constant."""
    assert Template.parse("{{a}}-{seq}-}}").render({}, random.Random(1), 4) == "{a}-4-}"
    assert Template.parse("{{{seq}}}").render({}, random.Random(1), 4) == "{4}"


def test_a_raw_json_rpc_body_and_a_graphql_query_are_sent_with_their_braces() -> None:
    """The worker sends the braces themselves, in a raw body, a json string and a path."""
    experiment = load(
        """
        - method: POST
          path: /rpc
          body: '{{"jsonrpc":"2.0","method":"x","params":["{seq}"]}}'
          content_type: application/json
        - method: POST
          path: /graphql
          json: {query: "{{ items {{ id }} }}"}
        - {path: "/q?f={{x}}", name: q}
        """
    )
    plan = plan_from_experiment(experiment, TARGET, t0=0.0, workers=1)
    rpc, graphql, query = compile_request_templates(plan.requests, plan.target)
    user = state()
    user.seq = 3
    assert json.loads(rpc.render(user).content or "") == {
        "jsonrpc": "2.0",
        "method": "x",
        "params": ["3"],
    }
    assert graphql.render(user).json == {"query": "{ items { id } }"}
    assert query.render(user).path == "/q?f={x}"


def test_a_single_brace_is_still_refused_with_the_escape_named() -> None:
    """A lone { or } is an error that says how to write a literal one."""
    message = error_of("""- {method: POST, path: /g, json: {query: "{ items { id } }"}}""")
    assert "requests[0].json.query: unbalanced brace" in message
    assert "{{ for a literal {" in message
    message = error_of("""- {method: POST, path: /g, json: {query: "{items}"}}""")
    assert "or {{items}} for the literal text {items}" in message
    message = error_of("""- {method: POST, path: /g, body: 'a}'}""")
    assert "requests[0].body: unbalanced brace" in message
    assert "}} for a literal }" in message


# -- captures ------------------------------------------------------------------------------


def test_capture_paths_read_nested_fields_list_items_and_headers() -> None:
    """data.token, items.0.id, items.-1.id (the last), 0.id on a list body, and
    header:Location (any case)."""
    body = {"data": {"token": "t"}, "items": [{"id": 7}], "@odata.next": "n"}
    assert parse_capture("data.token").read(body) == "t"
    assert parse_capture("items.0.id").read(body) == 7
    assert parse_capture("0.id").read([{"id": 8}]) == 8
    assert parse_capture("@odata.next").read(body) == "n"
    assert parse_capture("items.1.id").read(body) is MISSING
    many = {"items": [{"id": 7}, {"id": 9}], "by": {"-1": "key"}}
    assert parse_capture("items.-1.id").read(many) == 9
    assert parse_capture("items.-2.id").read(many) == 7
    assert parse_capture("items.-3.id").read(many) is MISSING
    assert parse_capture("by.-1").read(many) == "key"  # a mapping's key, not an index
    assert parse_capture("data.token.x").read(body) is MISSING
    location = parse_capture("header:Location")
    headers = {"location": "/orders/5"}
    assert location.read(None, headers.get) == "/orders/5"
    assert location.read(None, {}.get) is MISSING


def test_bracket_indexes_are_refused_with_the_dotted_form() -> None:
    """items[0].id is not the syntax: the error names the key and gives items.0.id."""
    message = error_of("""- {path: /o, capture: {first: "items[0].id"}}""")
    assert "svc.yaml:" in message
    assert "requests[0].capture.first: brackets are not path syntax" in message
    assert "'items.0.id'" in message


@pytest.mark.parametrize(
    ("source", "what"),
    [("data..token", "an empty part"), ("header:", "not a response header"), ("", "no response")],
)
def test_bad_capture_sources_are_refused_at_their_key(source: str, what: str) -> None:
    """Empty path parts, a header without a name and an empty source are errors."""
    message = error_of(f"""- {{path: /o, capture: {{x: "{source}"}}}}""")
    assert f"requests[0].capture.x: {what}" in message


def test_write_id_field_takes_a_path_and_its_list_reads_the_same_path() -> None:
    """write.id_field: data.id is validated, acknowledged from the body and listed."""
    experiment = load(
        """- {method: POST, path: /o, write: {id_field: data.id, read_back: "/o/{id}", list: /o}}"""
    )
    request = (experiment.load.workload.requests or [])[0]
    assert request.write is not None and request.write.id_field == "data.id"
    assert parse_listing({"items": [{"data": {"id": 1}}, {"data": {"id": 2}}]}, "data.id") == [1, 2]
    message = error_of(
        """- {method: POST, path: /o, write: {id_field: "a[0]", read_back: "/o/{id}"}}"""
    )
    assert "requests[0].write.id_field: brackets are not path syntax" in message


def test_capture_into_reports_what_the_answer_lacked() -> None:
    """A missing field or header is described, the others are still captured."""
    user = state()
    captures = compile_captures({"token": "data.token", "url": "header:Location", "n": "n"})
    missing = capture_into(user, captures, {"data": {"token": "t"}}, {}.get)
    assert user.variables == {"token": "t"}
    assert missing == ["header Location", "field 'n'"]


def test_a_step_captures_a_nested_token_and_a_location() -> None:
    """A login answering {"data": {"token": ...}} and 201 + Location feed later steps."""
    steps = Steps.compile(
        [
            RequestPlan(name="login", method="POST", path="/login", capture={"t": "data.token"}),
            RequestPlan(name="make", method="POST", path="/o", capture={"u": "header:Location"}),
            RequestPlan(name="see", path="{u}", headers={"Authorization": "Bearer {t}"}),
        ],
        TARGET,
    )
    sent = []

    def send(rendered):  # type: ignore[no-untyped-def]
        sent.append(rendered)
        if rendered.path == "/login":
            return Answer(200, {"data": {"token": "tok"}})
        if rendered.path == "/o":
            return Answer(201, None, {"location": "/o/5"}.get)
        return Answer(200, {})

    user = state()
    assert steps.run(user, send) is None
    assert sent[2].path == f"{TARGET}/o/5"
    assert sent[2].headers == {"Authorization": "Bearer tok"}
    failed = steps.run(state(), lambda r: Answer(200, {}))
    assert failed is not None and "no field 'data.token'" in str(failed)


# -- a captured URL ------------------------------------------------------------------------


def test_a_path_may_start_with_a_captured_url_which_stays_on_the_target() -> None:
    """{order_url} and {order_url}/items render on the target; another host is refused."""
    experiment = load(
        """
        - {method: POST, path: /orders, expect: [202], capture: {order_url: "header:Location"}}
        - {path: "{order_url}", name: order}
        - {path: "{order_url}/items?x={order_url}", name: items}
        """
    )
    plan = plan_from_experiment(experiment, TARGET + "/api", t0=0.0, workers=1)
    _, order, items = compile_request_templates(plan.requests, plan.target)
    relative = state(order_url="/api/orders/5")
    assert order.render(relative).path == "http://127.0.0.1:9000/api/orders/5"
    absolute = state(order_url="http://127.0.0.1:9000/api/orders/6")
    assert order.render(absolute).path == "http://127.0.0.1:9000/api/orders/6"
    assert items.render(relative).path.endswith("/api/orders/5/items?x=%2Fapi%2Forders%2F5")
    for elsewhere in (
        "http://evil.example/orders/5",
        "//evil.example/x",
        "https://127.0.0.1:9000/x",
    ):
        with pytest.raises(OffTarget, match="leads off the target"):
            order.render(state(order_url=elsewhere))


def test_a_path_starting_with_anything_else_than_a_captured_variable_is_refused() -> None:
    """{seq}/x or x/y still need a leading /."""
    assert "requests[0].path: a request path starts with /" in error_of("""- {path: "{seq}/x"}""")
    assert "a captured URL first" in error_of("""- {path: "orders"}""")


def test_target_origin_compares_scheme_host_and_port() -> None:
    """Default ports count; case does not."""
    origin = TargetOrigin.of("http://LOCALHOST/api")
    assert origin.resolve("http://localhost:80/a") == "http://localhost:80/a"
    with pytest.raises(OffTarget):
        origin.resolve("http://localhost:8080/a")


def test_read_back_of_a_location_id_reads_that_url_and_refuses_another_host() -> None:
    """read_back: "{id}" with id_field header:Location reads the URL; an off-target id is
    not read and the read-back says why."""
    experiment = load(
        """
        - method: POST
          path: /orders
          expect: [202]
          write: {id_field: "header:Location", read_back: "{id}"}
        """
    )
    from resilience.rundir.records import WriteAck

    acks = [
        WriteAck(0, "/orders/1", "POST /orders", 1.0, 202),
        WriteAck(0, "http://127.0.0.1:9000/orders/2", "POST /orders", 1.0, 202),
        WriteAck(0, "http://evil.example/orders/3", "POST /orders", 1.0, 202),
    ]
    asked: list[str] = []

    def get(path: str) -> tuple[int, object]:
        asked.append(path)
        return 200, {}

    result = read_back(experiment, acks, [], get, target=TARGET)
    assert sorted(asked) == [f"{TARGET}/orders/1", f"{TARGET}/orders/2"]
    notes = result.endpoints["POST /orders"].notes
    assert any("evil.example" in note and "not read back" in note for note in notes)


def test_read_back_must_hold_id_and_list_goes_with_a_body_id() -> None:
    """{{id}} is not the {id} placeholder; a Location id cannot be listed."""
    message = error_of("""- {method: POST, path: /o, write: {read_back: "/o/{{id}}"}}""")
    assert "requests[0].write.read_back: read_back must be a GET path containing {id}" in message
    message = error_of(
        """- {method: POST, path: /o, write: {id_field: "header:Location", read_back: "{id}", list: /o}}"""
    )
    assert "requests[0].write.list: list goes with an id read from the JSON body" in message


def test_a_refusing_worker_ends_the_run_with_exit_2() -> None:
    """The worker's exit reason travels as refused and is LoadRefused (exit 2)."""
    event = WorkerExit(worker=0, reason=REFUSED, message="GET order: off the target")
    assert decode_event(encode_event(event)) == event
    assert LoadRefused("x").exit_code == EXIT_INVALID


def test_capture_misses_travel_with_the_worker_exit() -> None:
    """capture_missed and capture_errors survive the pipe."""
    event = WorkerExit(
        worker=1, reason="end", capture_missed=3, capture_errors=("POST /o: no field 'id'",)
    )
    assert decode_event(encode_event(event)) == event


# -- HEAD and OPTIONS ----------------------------------------------------------------------


def test_head_and_options_are_methods() -> None:
    """HEAD (capturing a header) and options (any case) load and reach the plan."""
    experiment = load(
        """
        - {method: HEAD, path: /health, capture: {etag: "header:ETag"}}
        - {method: options, path: /orders}
        """
    )
    plan = plan_from_experiment(experiment, TARGET, t0=0.0, workers=1)
    assert [r.method for r in plan.requests] == ["HEAD", "OPTIONS"]


def test_head_has_no_body_and_nothing_to_capture_from_one() -> None:
    """A body on HEAD, a body capture or a body write id on HEAD are refused at their key."""
    message = error_of("""- {method: HEAD, path: /h, json: {a: 1}, capture: {x: id}}""")
    assert "requests[0].json: a HEAD request has no body" in message
    assert "requests[0].capture.x: a HEAD answer has no body to capture from" in message
    message = error_of("""- {method: HEAD, path: /h, write: {read_back: "/h/{id}"}}""")
    assert "requests[0].write.id_field: a HEAD answer has no body" in message


def test_other_methods_are_still_refused() -> None:
    """TRACE is not a method a request may use."""
    assert "requests[0].method" in error_of("""- {method: TRACE, path: /h}""")
