"""Describing a service the toolkit has never seen: form and raw bodies, setup and on_start
steps, placeholders in headers, read-back headers, depends_on and observe.scrape."""

from __future__ import annotations

import json
import textwrap

import pytest

from resilience.errors import ExperimentError
from resilience.experiment import Experiment, experiment_schema, parse_experiment

SERVICE = """
name: orders-api
target: {url: "http://127.0.0.1:9000"}
proxies:
  - {name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}
  - {name: cache, listen: "127.0.0.1:26999", upstream: "127.0.0.1:6379"}
observe:
  scrape:
    - {job: orders-api, url: "http://127.0.0.1:9001/metrics"}
load:
  stages: [{duration: 1m, users: 10, spawn_rate: 5}]
  workload:
    on_start:
      - method: POST
        path: /login
        form: {username: shopper, password: s3cret, remember: true, attempt: "{seq}"}
        expect: [200]
        capture: {token: access_token}
    requests:
      - path: /items
        headers: {Authorization: "Bearer {token}"}
        depends_on: [cache]
      - method: POST
        path: /orders
        body: "<order item='{int:1:5}'/>"
        content_type: application/xml
        headers: {Authorization: "Bearer {token}"}
        expect: [201]
        depends_on: [db]
        write: {read_back: "/orders/{id}", headers: {Authorization: "Bearer {token}"}}
faults:
  - {at: 20s, duration: 10s, proxy: db, type: hang}
"""


def load(text: str) -> Experiment:
    return parse_experiment(textwrap.dedent(text), file="svc.yaml")


def error_of(text: str) -> str:
    with pytest.raises(ExperimentError) as info:
        load(text)
    return str(info.value)


def test_a_complete_service_description_loads() -> None:
    """Form and raw bodies, on_start captures in headers, depends_on and scrape jobs load."""
    experiment = load(SERVICE)
    workload = experiment.load.workload
    login = workload.on_start[0]
    assert login.form == {
        "username": "shopper",
        "password": "s3cret",
        "remember": True,
        "attempt": "{seq}",
    }
    assert workload.step_captures() == {"token"}
    orders = workload.requests[1] if workload.requests else None
    assert orders is not None and orders.content_type == "application/xml"
    assert orders.depends_on == ["db"]
    assert orders.write is not None and orders.write.headers == {"Authorization": "Bearer {token}"}
    assert orders.variables_used() == {"token"}
    assert [(j.job, j.url) for j in experiment.scrape_jobs()] == [
        ("orders-api", "http://127.0.0.1:9001/metrics")
    ]


def test_the_description_round_trips_through_yaml() -> None:
    """to_yaml keeps every new key, and loads back to an equal experiment."""
    experiment = load(SERVICE)
    again = parse_experiment(experiment.to_yaml(), file="copy.yaml")
    assert again.model_dump() == experiment.model_dump()


def test_two_bodies_are_refused_at_the_second() -> None:
    """json with form (or body) is an error naming both, at the second body's key."""
    text = SERVICE.replace(
        "form: {username: shopper,", "json: {a: 1}\n        form: {username: shopper,"
    )
    message = error_of(text)
    assert "load.workload.on_start[0].form: a request has at most one body" in message
    assert "got json and form" in message


def test_content_type_needs_a_raw_body_and_a_media_type() -> None:
    """content_type without body, or one that is no media type, is a located error."""
    assert "content_type goes with a raw body" in error_of(
        SERVICE.replace("path: /items\n", "path: /items\n        content_type: text/plain\n")
    )
    message = error_of(SERVICE.replace("application/xml", "xml"))
    assert "requests[1].content_type: not a media type" in message


def test_a_header_placeholder_must_be_captured_somewhere() -> None:
    """{token} in a header with no step or request capturing it points at the header."""
    message = error_of(SERVICE.replace("capture: {token: access_token}", "capture: {}"))
    assert "requests[0].headers.Authorization: placeholder {token} is not captured" in message


def test_request_header_names_are_http_tokens() -> None:
    """A header name with a space, colon or non-ASCII letter would make every request a
    malformed one (400 from the service, blamed on it): refused at the header, in a request,
    a step and write.headers, as the parts' headers already are; a NUL in a value too."""
    for bad in ("X Tenant", "X-Tenant:", "X-Mandant-Größe", ""):
        text = SERVICE.replace(
            "      - path: /items\n", f"      - path: /items\n        headers: {{'{bad}': a}}\n", 1
        )
        text = text.replace(
            '        headers: {Authorization: "Bearer {token}"}\n        depends_on: [cache]',
            "        depends_on: [cache]",
        )
        message = error_of(text)
        assert "requests[0].headers" in message and "header name" in message, message
    message = error_of(
        SERVICE.replace("expect: [200]", "expect: [200]\n        headers: {'X Y': a}")
    )
    assert "on_start[0].headers" in message and "header name" in message
    message = error_of(
        SERVICE.replace(
            'write: {read_back: "/orders/{id}", headers: {',
            'write: {read_back: "/orders/{id}", headers: {"X Y": a, ',
        )
    )
    assert "write.headers" in message and "header name" in message
    message = error_of(
        SERVICE.replace(
            '"Bearer {token}"}\n        depends_on: [cache]',
            '"Bearer\\0{token}"}\n        depends_on: [cache]',
        )
    )
    assert "requests[0].headers.Authorization" in message


def test_a_path_is_sent_as_written_so_it_holds_no_space_or_fragment() -> None:
    """The path goes into the request line as written: a space (in the text or a choice)
    or a control character makes the HTTP client refuse every such request, and a '#'
    cuts the rest off. Refused at the path, saying how to write a space; %20 is fine."""
    for bad in ("/items?order_by=name desc", "/items/{choice:a b|c}", "/items\t", "/items#top"):
        message = error_of(
            SERVICE.replace("      - path: /items\n", f"      - path: {json.dumps(bad)}\n")
        )
        assert "requests[0].path" in message and "%20" in message, message
    message = error_of(SERVICE.replace("        path: /login\n", "        path: /log in\n"))
    assert "on_start[0].path" in message
    load(SERVICE.replace("      - path: /items\n", "      - path: /items?order_by=name%20desc\n"))


def test_json_text_in_a_string_is_refused_with_the_fix() -> None:
    """json: '{"amount": 5}' (JSON text quoted) would be sent as one JSON string, or fail
    as an unknown placeholder: refused at json, saying to drop the quotes. A plain JSON
    string body stays allowed."""
    for quoted in ("'{\"amount\": 5}'", "'[1, 2]'", '\' {"a": "{uuid}"} \''):
        text = SERVICE.replace(
            "      - path: /items\n", f"      - path: /items\n        json: {quoted}\n"
        )
        message = error_of(text)
        assert "requests[0].json" in message and "drop the quotes" in message, message
    load(SERVICE.replace("      - path: /items\n", "      - path: /items\n        json: hello\n"))


def test_what_the_load_plan_refuses_is_refused_when_the_file_is_loaded() -> None:
    """`validate` said ok where the run then stopped with pydantic's raw "1 validation error
    for LoadPlan" (no file, no line): a locustfile under the open model, and requests that
    all wait for each other's captures. Both are now located errors at load time."""
    locust = """
        name: own
        target: {url: "http://127.0.0.1:9000"}
        load:
          LOAD
          workload: {locustfile: users.py}
        slo: {baseline: {p95: 1s}}
        """
    for shape, key in (
        ("arrival_rate: [{duration: 30s, rps: 10}]", "load.arrival_rate"),
        ("search: {rps: {from: 10, step: 10, ceiling: 50}, hold: 10s}", "load.search"),
    ):
        message = error_of(locust.replace("LOAD", shape))
        assert key in message and "locustfile" in message and "stages" in message, message
    load(locust.replace("LOAD", "stages: [{duration: 30s, users: 2, spawn_rate: 2}]"))
    circular = """
        name: own
        target: {url: "http://127.0.0.1:9000"}
        load:
          stages: [{duration: 30s, users: 2, spawn_rate: 2}]
          workload:
            requests:
              - {path: "/x/{a}", capture: {b: id}}
              - {path: "/y/{b}", capture: {a: id}}
        """
    message = error_of(circular)
    assert "load.workload.requests" in message and "captured" in message, message
    assert "svc.yaml:7" in message or "line 7" in message, message
    load(circular.replace('"/x/{a}"', "/x"))


def test_an_unquoted_placeholder_in_a_json_body_is_caught() -> None:
    """`json: {item: {int:1:50}}` is valid YAML for {"item": {"int:1:50": null}}, which
    would be sent as such: a placeholder's braces need quotes. Refused at the key for the
    built-in placeholders and for captured variables; a real {"x": null} mapping stays."""
    for body, key in (
        ("{item: {int:1:50}, ref: x}", "json.item"),
        ("{refs: [{uuid}]}", "json.refs[0]"),
        ("{auth: {token}}", "json.auth"),
        ("{n: {choice:a|b}}", "json.n"),
    ):
        text = SERVICE.replace(
            "      - path: /items\n", f"      - path: /items\n        json: {body}\n"
        )
        message = error_of(text)
        assert f"requests[0].{key}" in message and "quote" in message, message
    load(
        SERVICE.replace(
            "      - path: /items\n", "      - path: /items\n        json: {a: {b: null}}\n"
        )
    )


def test_steps_use_only_what_earlier_steps_captured() -> None:
    """A step cannot use a request's capture (steps run first), nor a later step's."""
    text = SERVICE.replace(
        "        capture: {token: access_token}\n",
        "        capture: {token: access_token}\n"
        "      - {path: /me, headers: {X-User: '{user_id}'}, capture: {user_id: id}}\n",
    )
    message = error_of(text)
    assert "on_start[1].headers.X-User: placeholder {user_id} is not captured by an earlier" in (
        message
    )


def test_setup_captures_feed_on_start_and_requests() -> None:
    """setup runs first: its captures are usable by on_start steps and requests."""
    text = SERVICE.replace(
        "    on_start:\n",
        "    setup:\n      - {path: /tenant, capture: {tenant: id}}\n    on_start:\n",
    ).replace('attempt: "{seq}"', 'tenant: "{tenant}"')
    experiment = load(text)
    assert experiment.load.workload.step_captures() == {"tenant", "token"}


def test_on_start_needs_users() -> None:
    """on_start with the open model (arrival_rate) is refused, pointing to setup."""
    text = SERVICE.replace(
        "stages: [{duration: 1m, users: 10, spawn_rate: 5}]",
        "arrival_rate: [{duration: 1m, rps: 5}]",
    )
    message = error_of(text)
    assert "load.workload.on_start: on_start runs once per user" in message
    assert "expected setup" in message


def test_depends_on_names_a_known_proxy() -> None:
    """depends_on: [dbb] is an error at its item, listing the declared proxies."""
    message = error_of(SERVICE.replace("depends_on: [db]", "depends_on: [dbb]"))
    assert "requests[1].depends_on[0]: depends_on names an unknown proxy 'dbb'" in message
    assert "db, cache" in message


def test_scrape_jobs_are_local_unique_and_not_the_stacks() -> None:
    """A scrape job off this machine, a duplicate or a stack job name is a located error."""
    assert "observe.scrape[0].url" in error_of(SERVICE.replace("127.0.0.1:9001", "10.0.0.1:9001"))
    dup = SERVICE.replace(
        '    - {job: orders-api, url: "http://127.0.0.1:9001/metrics"}\n',
        '    - {job: orders-api, url: "http://127.0.0.1:9001/metrics"}\n'
        '    - {job: orders-api, url: "http://127.0.0.1:9002/metrics"}\n',
    )
    assert "observe.scrape[1].job: two scrape jobs named 'orders-api'" in error_of(dup)
    assert "a job name other than the stack's own" in error_of(
        SERVICE.replace("job: orders-api", "job: gateway")
    )


def test_a_scrape_url_without_a_path_means_metrics() -> None:
    """http://127.0.0.1:9001 scrapes /metrics."""
    experiment = load(SERVICE.replace("9001/metrics", "9001"))
    assert experiment.scrape_jobs()[0].url == "http://127.0.0.1:9001/metrics"


def test_a_bad_placeholder_in_a_form_or_body_is_located() -> None:
    """An unbalanced brace in a form value or raw body names that value."""
    assert "on_start[0].form.attempt: unbalanced brace" in error_of(
        SERVICE.replace('"{seq}"', '"{seq"')
    )
    assert "requests[1].body: unbalanced brace" in error_of(SERVICE.replace("{int:1:5}", "{int"))


def test_a_bare_latency_threshold_is_refused() -> None:
    """p95: 500 (no unit) is a located error asking for 500ms or 500s."""
    message = error_of(SERVICE + "slo: {baseline: {p95: 500}}\n")
    assert "slo.baseline.p95" in message
    assert "500ms" in message


def test_the_schema_has_the_new_keys() -> None:
    """resilience schema describes form, body, content_type, on_start, setup, depends_on,
    write.headers and observe.scrape."""
    schema = experiment_schema()
    defs = schema["$defs"]
    assert {"form", "body", "content_type", "depends_on"} <= set(defs["RequestSpec"]["properties"])
    assert {"on_start", "setup"} <= set(defs["Workload"]["properties"])
    assert "headers" in defs["WriteSpec"]["properties"]
    assert "scrape" in defs["Observe"]["properties"]
    assert "observe" in schema["properties"]
