"""The experiment model: defaults, presets, cross-field checks, helpers, YAML round trip."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from resilience.errors import ExperimentError
from resilience.experiment import (
    Expectation,
    Experiment,
    experiment_schema,
    parse_experiment,
)
from resilience.experiment.model import check_http_url

BASE = """
name: demo
load:
  stages: [{duration: 2m, users: 10, spawn_rate: 5}]
  workload:
    requests:
      - {path: /catalog/items, weight: 4}
      - method: post
        path: /orders
        json: {item_id: "{int:1:50}", ref: "{uuid}"}
        expect: [201]
        capture: {order_id: id}
        write: {read_back: "/orders/{id}", list: /orders/ids}
      - {path: "/orders/{order_id}"}
"""


def load(extra: str = "", base: str = BASE) -> Experiment:
    return parse_experiment(textwrap.dedent(base) + textwrap.dedent(extra), file="demo.yaml")


def load_data(data: dict[str, Any]) -> Experiment:
    return parse_experiment(yaml.safe_dump(data), file="demo.yaml")


def error_text(extra: str = "", base: str = BASE) -> str:
    with pytest.raises(ExperimentError) as info:
        load(extra, base)
    return str(info.value)


def test_defaults_follow_the_brief() -> None:
    """Unspecified fields take the documented defaults."""
    experiment = load()
    assert experiment.builtin
    assert experiment.load.client_timeout == 10.0
    assert experiment.load.max_in_flight == 1000
    assert experiment.load.trace_sample == pytest.approx(0.01)
    assert experiment.load.slow_threshold == 1.0
    assert experiment.load.workers is None
    assert experiment.recovery.band_k == 3.0
    assert experiment.recovery.stable_seconds == 5
    assert experiment.recovery.max_wait == 60.0
    request = experiment.load.workload.requests[0]  # type: ignore[index]
    assert (request.method, request.weight, request.expect) == ("GET", 4, [])


def test_request_names_default_to_method_and_path() -> None:
    """Endpoint names are 'METHOD path' unless named; methods are upper-cased."""
    assert load().endpoints() == ["GET /catalog/items", "POST /orders", "GET /orders/{order_id}"]


def test_request_ok_statuses() -> None:
    """expect lists the OK statuses; without it any 2xx/3xx is OK."""
    requests = load().load.workload.requests
    assert requests is not None
    assert requests[0].is_ok(200) and requests[0].is_ok(302) and not requests[0].is_ok(404)
    assert requests[1].is_ok(201) and not requests[1].is_ok(200)


def test_write_spec_defaults() -> None:
    """A write's id field defaults to 'id'."""
    requests = load().load.workload.requests
    assert requests is not None
    write = requests[1].write
    assert write is not None
    assert (write.id_field, write.read_back, write.list) == ("id", "/orders/{id}", "/orders/ids")


@pytest.mark.parametrize(
    ("preset", "stages", "total"),
    [
        ("normal", [(600, 50, 5)], 600),
        ("stress", [(300, 500, 50)], 300),
        ("spike", [(300, 100, 10), (120, 1000, 100), (480, 100, 100)], 900),
        ("endurance", [(7200, 200, 10)], 7200),
    ],
)
def test_presets_resolve_to_the_guide_numbers(
    preset: str, stages: list[tuple[float, int, float]], total: float
) -> None:
    """Each preset expands to the guide's users, spawn rates and durations."""
    experiment = load(
        "",
        BASE.replace("stages: [{duration: 2m, users: 10, spawn_rate: 5}]", f"preset: {preset}"),
    )
    resolved = [(s.duration, s.users, s.spawn_rate) for s in experiment.load.resolve_stages()]
    assert resolved == stages
    assert experiment.total_duration == total
    assert experiment.load.model == "closed"


def test_open_model_duration_and_no_stages() -> None:
    """arrival_rate is the open model: its durations add up; there are no closed stages."""
    experiment = load(
        "",
        BASE.replace(
            "stages: [{duration: 2m, users: 10, spawn_rate: 5}]",
            "arrival_rate: [{duration: 30s, rps: 20}, {duration: 1m, rps: 50}]",
        ),
    )
    assert experiment.load.model == "open"
    assert experiment.total_duration == 90
    assert experiment.load.resolve_stages() == []


@pytest.mark.parametrize(
    "shape",
    [
        "preset: normal\n  stages: [{duration: 1m, users: 1, spawn_rate: 1}]",
        "preset: normal\n  arrival_rate: [{duration: 1m, rps: 1}]",
        "",
    ],
)
def test_exactly_one_load_shape(shape: str) -> None:
    """Two load shapes, or none, is an error naming the shapes found."""
    text = error_text("", BASE.replace("stages: [{duration: 2m, users: 10, spawn_rate: 5}]", shape))
    assert "exactly one of preset, stages, arrival_rate and search" in text


def test_fault_attributes_convert_to_toxiproxy_units() -> None:
    """latency: 200ms → 200 (ms), slicer delay in us, flap period in seconds, duty a fraction."""
    experiment = load(
        """
        faults:
          - {at: 10s, duration: 5s, proxy: postgres, type: latency,
             attributes: {latency: 200ms, jitter: 1s}}
          - {at: 10s, duration: 5s, proxy: orders, type: slicer,
             attributes: {average_size: 64, delay: 2ms}}
          - {at: 20s, duration: 20s, proxy: catalog, type: flap,
             attributes: {period: 4s, duty: 25%}}
          - {at: 20s, duration: 20s, proxy: catalog, type: ramp,
             attributes: {from: 0, to: 1s, steps: 4}}
        """
    )
    assert experiment.faults[0].attributes == {"latency": 200, "jitter": 1000}
    assert experiment.faults[1].attributes == {"average_size": 64, "delay": 2000}
    assert experiment.faults[2].attributes == {"period": 4.0, "duty": 0.25}
    assert experiment.faults[3].attributes == {"from": 0, "to": 1000, "steps": 4}
    assert experiment.faults[0].toxic == "latency"
    assert experiment.faults[2].toxic is None


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("{type: latency, attributes: {latency: fast}}", "faults[0].attributes.latency"),
        ("{type: latency, attributes: {latency: 1.5ms}}", "whole milliseconds"),
        ("{type: latency, attributes: {jiter: 5, latency: 1}}", "unknown attribute 'jiter'"),
        ("{type: latency}", "needs attribute 'latency'"),
        ("{type: outage, attributes: {latency: 5}}", "expected no attributes"),
        ("{type: bandwidth, attributes: {rate: -1}}", "faults[0].attributes.rate"),
        ("{type: flap, attributes: {period: 0s}}", "at least 0.1"),
        ("{type: flap, attributes: {duty: 0}}", "above 0"),
        ("{type: flap, toxicity: 50%}", "toxicity has no meaning for flap"),
        ("{type: outage, toxicity: 0.5}", "toxicity has no meaning for outage"),
        ("{type: ramp, attributes: {to: 1s, steps: 0}}", "at least 1"),
        ("{type: slicer, attributes: {average_size: 0}}", "at least 1"),
        ("{type: slicer, attributes: {average_size: 8, size_variation: 8}}", "smaller than"),
        ("{type: laggy}", "one of 'latency'"),
        ("{type: latency, attributes: {latency: 5}, toxicity: 2}", "between 0 and 1"),
        ("{type: latency, attributes: {latency: 5}, stream: sideways}", "upstream"),
    ],
)
def test_fault_type_table_checks_names_and_values(fault: str, needle: str) -> None:
    """Attribute names and value types are checked per fault type."""
    spec = "{at: 10s, duration: 5s, proxy: postgres, " + fault[1:]
    assert needle in error_text(f"faults: [{spec}]\n")


def test_fault_table_matches_the_fault_timeline() -> None:
    """Type names, attribute names and required attributes agree with resilience.faults."""
    from resilience.experiment import FAULT_TYPES
    from resilience.faults.catalogue import FAULT_TYPES as TIMELINE_TYPES

    assert set(FAULT_TYPES) == set(TIMELINE_TYPES)
    for name, spec in FAULT_TYPES.items():
        theirs = TIMELINE_TYPES[name]
        assert [a.name for a in spec.attributes] == [a.name for a in theirs.attributes], name
        assert [a.required for a in spec.attributes] == [a.required for a in theirs.attributes]
        assert spec.toxic == theirs.toxic_type, name


def test_fault_specs_build_from_every_catalogue_fault() -> None:
    """The fault timeline accepts the faults this model produces (converted attributes)."""
    from resilience.faults.catalogue import specs_from_model

    experiment = load(
        """
        faults:
          - {at: 10s, duration: 5s, proxy: postgres, type: latency, attributes: {latency: 1s}}
          - {at: 10s, duration: 5s, proxy: postgres, type: flaky, toxicity: 30%,
             attributes: {timeout: 0, reroll: 500ms}}
          - {at: 10s, duration: 20s, proxy: catalog, type: flap, attributes: {period: 2s}}
          - {at: 10s, duration: 20s, proxy: catalog, type: ramp,
             attributes: {to: 800ms, steps: 4, jitter: 10ms}}
          - {at: 10s, duration: 5s, proxy: orders, type: slicer,
             attributes: {average_size: 64, size_variation: 8, delay: 1ms}}
        """
    )
    specs = specs_from_model(experiment.faults)
    assert [s.type for s in specs] == ["latency", "flaky", "flap", "ramp", "slicer"]
    assert specs[1].attributes["reroll"] == 0.5


def test_fault_must_name_a_known_proxy() -> None:
    """A fault on an undeclared proxy lists the proxies it could use."""
    text = error_text("faults: [{at: 1s, duration: 1s, proxy: redis, type: outage}]\n")
    assert "faults[0].proxy" in text
    assert "postgres, orders, catalog" in text
    assert "'redis'" in text


def test_custom_target_uses_only_declared_proxies() -> None:
    """With a target, only declared proxies are valid; the built-in ones are not."""
    extra = """
    target: {url: "http://127.0.0.1:9000/"}
    proxies: [{name: db, listen: "127.0.0.1:26000", upstream: "db.internal:5432"}]
    faults: [{at: 1s, duration: 1s, proxy: db, type: outage}]
    """
    experiment = load(extra)
    assert not experiment.builtin
    assert experiment.target is not None and experiment.target.url == "http://127.0.0.1:9000"
    assert experiment.proxy_names() == ["db"]
    text = error_text(extra.replace("proxy: db", "proxy: postgres"))
    assert "one of the declared proxies: db" in text


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("http://example.com", "off loopback and not allowed"),
        ("ftp://127.0.0.1", "http(s) URL"),
        ("http://127.0.0.1:99999", "http(s) URL"),
        ("not a url", "http(s) URL"),
        ("http://127.0.0.1:9000/api?tenant=a", "without ?query or #fragment"),
        ("http://127.0.0.1:9000/#/", "without ?query or #fragment"),
    ],
)
def test_target_must_be_local_http(target: str, needle: str) -> None:
    """Targets are http(s) URLs on loopback unless their host is allowed. Request paths
    are appended to the target's, so a ?query or #fragment would swallow them (every
    request to /api?tenant=a/items): refused, here and as --target."""
    assert needle in error_text(f'target: {{url: "{target}"}}\n')
    if "?" in target or "#" in target:
        with pytest.raises(ExperimentError, match="--target"):
            check_http_url(target, option="--target")
    assert load('target: {url: "http://127.0.0.1:9000/api/"}\n').target.url.endswith("/api")


@pytest.mark.parametrize(
    ("proxy", "needle"),
    [
        ('{name: db, listen: "10.0.0.1:26000", upstream: "x:1"}', "on this machine"),
        ('{name: db, listen: "127.0.0.1:40000", upstream: "x:1"}', "ephemeral range"),
        ('{name: db, listen: "127.0.0.1", upstream: "x:1"}', "host:port"),
        ('{name: "d b", listen: "127.0.0.1:26000", upstream: "x:1"}', "proxy name"),
    ],
)
def test_proxy_addresses_are_checked(proxy: str, needle: str) -> None:
    """Proxies listen on this machine, outside the ephemeral port range."""
    assert needle in error_text(f"target: {{url: http://127.0.0.1:9000}}\nproxies: [{proxy}]\n")


def test_shop_settings_only_for_the_builtin_shop() -> None:
    """A shop section next to a custom target is refused."""
    assert "only to the built-in shop" in error_text(
        "target: {url: http://localhost:9000}\nshop: {mode: hardened}\n"
    )
    experiment = load("shop: {mode: fragile, options: {db_pool_size: 4, retries: true}}\n")
    assert experiment.shop is not None and experiment.shop.mode == "fragile"


def test_fault_must_end_before_the_load() -> None:
    """A fault starting after, or still active at, the load's end is refused."""
    assert "after the load has ended" in error_text(
        "faults: [{at: 3m, duration: 1s, proxy: postgres, type: outage}]\n"
    )
    assert "still active when the load ends" in error_text(
        "faults: [{at: 1m, duration: 2m, proxy: postgres, type: outage}]\n"
    )


def test_slo_endpoints_must_exist() -> None:
    """SLOs per endpoint name real request names; the message lists them."""
    text = error_text("slo: {fault: {endpoints: {GET /nope: {p95: 1s}}}}\n")
    assert "slo.fault.endpoints['GET /nope']" in text
    assert "GET /catalog/items" in text


def test_captured_variables_must_be_captured() -> None:
    """A placeholder for a variable no request captures is an error at that request."""
    text = error_text("", BASE.replace("capture: {order_id: id}", "capture: {oid: id}"))
    assert "{order_id} is not captured" in text
    assert "load.workload.requests[2].path" in text


def test_duplicate_endpoint_names_are_refused() -> None:
    """Two requests with the same endpoint name would merge their stats: refused."""
    text = error_text("", BASE.replace('{path: "/orders/{order_id}"}', "{path: /catalog/items}"))
    assert "share the endpoint name 'GET /catalog/items'" in text


def test_json_body_must_be_json() -> None:
    """A YAML date inside a JSON body is refused (it could not be sent)."""
    text = error_text("", BASE.replace('ref: "{uuid}"', "ref: 2024-01-01"))
    assert "load.workload.requests[1].json.ref" in text
    assert "date" in text


def test_guards_need_one_source_and_get_a_name() -> None:
    """A guard watches promql or load (not both); its name defaults to what it watches."""
    experiment = load(
        """
        guards:
          - {load: error_rate, endpoint: POST /orders, expect: "< 50%", for: 10s}
          - {promql: "sum(up)", expect: ">= 1"}
        """
    )
    first, second = experiment.guards
    assert first.name == "load error_rate POST /orders"
    assert first.for_ == 10.0
    assert first.expect == Expectation.parse("< 0.5")
    assert second.name == "sum(up)"
    assert "exactly one of promql and load" in error_text(
        'guards: [{promql: "up", load: p95, expect: "< 1s"}]\n'
    )
    assert "guards[0].endpoint" in error_text(
        'guards: [{load: p95, endpoint: GET /nope, expect: "< 1s"}]\n'
    )


def test_checks_and_detectors() -> None:
    """Checks carry an expectation and phase; detector kinds are a closed list."""
    experiment = load(
        """
        checks: [{name: pool, promql: "max(x)", phase: fault, expect: "== 0"}]
        detectors: {pool_exhaustion: {severity: warning, params: {min_saturated_seconds: 3}}}
        """
    )
    assert experiment.checks[0].expect.holds(0)
    assert experiment.checks[0].severity == "critical"
    assert experiment.detectors["pool_exhaustion"].enabled
    assert "one of 'cascading_failure'" in error_text("detectors: {cascade: {}}\n")


def test_fault_windows_and_phases() -> None:
    """Fault windows sort by start; scheduled phases split at the first and last fault."""
    experiment = load(
        """
        faults:
          - {at: 40s, duration: 20s, proxy: postgres, type: outage}
          - {at: 30s, duration: 10s, proxy: catalog, type: hang}
        """
    )
    windows = experiment.fault_windows()
    assert [(w.start, w.end, w.proxy) for w in windows] == [
        (30, 40, "catalog"),
        (40, 60, "postgres"),
    ]
    assert [(p.name, p.start, p.end) for p in experiment.scheduled_phases()] == [
        ("baseline", 0, 30),
        ("fault", 30, 60),
        ("recovery", 60, 120),
    ]


def test_to_yaml_round_trips() -> None:
    """to_yaml() of a resolved experiment loads back to an equal experiment."""
    experiment = load(
        """
        faults: [{at: 1m, duration: 250ms, proxy: postgres, type: latency,
                  attributes: {latency: 1s}}]
        slo: {baseline: {p95: 500ms, error_rate: 0.1%}, recovery: {within: 30s}}
        guards: [{load: p99, expect: "between 1ms and 2s", for: 5s}]
        load_extra: null
        """.replace("load_extra: null\n", "")
    )
    again = parse_experiment(experiment.to_yaml(), file="again.yaml")
    assert again == experiment
    assert "500ms" in experiment.to_yaml()


def test_schema_is_json_schema_with_the_top_level_keys() -> None:
    """The schema describes every top-level key and marks name and load as required."""
    schema = experiment_schema()
    assert set(schema["required"]) == {"name", "load"}
    assert {"name", "load", "faults", "slo", "guards", "profiles"} <= set(schema["properties"])


def problem_lines(extra: str) -> list[str]:
    """The rendered problems of a document that must fail (one or several)."""
    with pytest.raises(ExperimentError) as info:
        load(extra)
    error = info.value
    if error.problems:
        return error.problems
    assert error.location.line is not None, str(error)
    return [f"line {error.location.line}, at {error.location.path}: {error}"]


def test_slo_percentiles_may_not_decrease() -> None:
    """p50 <= p95 <= p99 <= max, per phase and per endpoint, each breach at its own line."""
    lines = problem_lines(
        """\
        slo:
          baseline: {p50: 300ms, p95: 200ms, p99: 1s, max: 500ms}
          fault:
            endpoints:
              GET /catalog/items:
                p95: 2s
                p99: 1s
        """
    )
    assert len(lines) == 3, lines
    assert lines[0].startswith("line 16, at slo.baseline.max: max is below p99")
    assert lines[1].startswith("line 16, at slo.baseline.p95: p95 is below p50")
    assert "expected p95 of at least 300ms (the p50 given), got 200ms" in lines[1]
    assert lines[2].startswith("line 21, at slo.fault.endpoints['GET /catalog/items'].p99")
    assert load("slo: {baseline: {p50: 200ms, p99: 200ms}, fault: {p95: 1s, max: 5s}}\n")


def test_latency_thresholds_need_a_unit() -> None:
    """`p95: 500` is refused at its line, suggesting 500ms (it used to mean 500 seconds)."""
    (line,) = problem_lines("slo: {baseline: {p95: 500}}\n")
    assert line.startswith("line 15, at slo.baseline.p95")
    assert "a latency threshold needs a unit" in line
    assert "write 500ms for milliseconds or 500s for seconds" in line
    (line,) = problem_lines('slo: {fault: {endpoints: {GET /catalog/items: {p99: "1.5"}}}}\n')
    assert "write 1.5ms" in line


def test_latency_guards_need_a_unit() -> None:
    """A p95/p99 guard's condition must carry a unit; error-rate guards need none."""
    (line,) = problem_lines('guards: [{load: p95, expect: "< 500"}]\n')
    assert "guards[0].expect: a p95 guard needs a latency with a unit" in line
    assert load('guards: [{load: error_rate, expect: "< 0.5"}, {load: p99, expect: "< 2s"}]\n')


@pytest.mark.parametrize(
    ("after", "extra", "path", "needle"),
    [
        ("load:", "  client_timeout: 500us", "load.client_timeout", "from 1ms to 1h"),
        ("load:", "  client_timeout: 2h", "load.client_timeout", "from 1ms to 1h"),
        ("load:", "  slow_threshold: 0", "load.slow_threshold", "from 1ms to 1h"),
        ("load:", "  warmup: 2h", "load.warmup", "from 0s to 1h"),
        ("load:", "  max_in_flight: 1000000", "load.max_in_flight", "at most 100000"),
        ("  workload:", "    wait: {max: 2h}", "load.workload.wait.max", "from 0s to 1h"),
        ("name: demo", "recovery: {max_wait: 2h}", "recovery.max_wait", "above 0s to 1h"),
        ("name: demo", "recovery: {band_k: 1000}", "recovery.band_k", "at most 100"),
    ],
)
def test_settings_have_sane_bounds(after: str, extra: str, path: str, needle: str) -> None:
    """Timeouts, thresholds, warm-up, think time and concurrency are bounded, the bound said."""
    text = BASE.replace(f"\n{after}\n", f"\n{after}\n{extra}\n", 1)
    assert text != BASE
    (line,) = _lines_of(text)
    assert path in line
    assert needle in line


def _lines_of(text: str) -> list[str]:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(textwrap.dedent(text), file="demo.yaml")
    return info.value.problems or [str(info.value)]


@pytest.mark.parametrize(
    ("stages", "needle"),
    [
        ("[{duration: 100h, users: 1, spawn_rate: 1}, {duration: 100h, users: 1, spawn_rate: 1}]",
         "the load is too long"),
        ("[{duration: 500ms, users: 1, spawn_rate: 1}]", "the load is too short"),
        ("[{duration: 1m, users: 1000000, spawn_rate: 1}]", "at most 100000"),
        ("[{duration: 1m, users: 10, spawn_rate: 2000000}]", "at most 10000"),
        ("[{duration: 1m, users: 10, spawn_rate: 0.001}]", "at least 0.01"),
    ],
)  # fmt: skip
def test_load_shape_has_sane_bounds(stages: str, needle: str) -> None:
    """The load lasts 1 s to 7 days; users and spawn rates are bounded."""
    text = BASE.replace("stages: [{duration: 2m, users: 10, spawn_rate: 5}]", f"stages: {stages}")
    (line,) = _lines_of(text)
    assert needle in line
    assert "load.stages" in line


def test_arrival_rate_is_bounded() -> None:
    """An open-model rate above 100000 requests per second is refused."""
    text = BASE.replace(
        "stages: [{duration: 2m, users: 10, spawn_rate: 5}]",
        "arrival_rate: [{duration: 2m, rps: 2000000}]",
    )
    (line,) = _lines_of(text)
    assert "load.arrival_rate[0].rps" in line
    assert "at most 100000" in line


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("{type: latency, attributes: {latency: 2h}}", "at most 3.6e+06 (1h)"),
        ("{type: timeout, attributes: {timeout: 5000000}}", "at most 3.6e+06 (1h)"),
        ("{type: ramp, attributes: {to: 1s, steps: 1000000}}", "at most 10000"),
        ("{type: flaky, attributes: {reroll: 1ms}}", "re-drawn more than 10000 times"),
        ("{type: flap, attributes: {period: 2h}}", "at most 3600 (1h)"),
    ],
)
def test_fault_attributes_have_sane_bounds(fault: str, needle: str) -> None:
    """Fault times are at most an hour; ramps and rerolls cannot schedule millions of steps."""
    spec = fault.replace("{type", "{at: 10s, duration: 1m, proxy: postgres, type")
    (line,) = problem_lines(f"faults: [{spec}]\n")
    assert "faults[0].attributes" in line
    assert needle in line


def test_where_a_file_was_written_is_not_part_of_the_experiment() -> None:
    """An experiment loaded from a file pickles, and equals the same experiment built
    without a file (the loader's line locator is not content)."""
    import pickle

    import yaml

    from resilience.experiment.model import Experiment

    text = (
        "name: demo\nload: {stages: [{duration: 5s, users: 1, spawn_rate: 1}],\n"
        "  workload: {requests: [{path: /x}]}}\n"
    )
    loaded = parse_experiment(text, file="demo.yaml")
    copy = pickle.loads(pickle.dumps(loaded))
    assert copy == loaded
    assert loaded == Experiment.model_validate(yaml.safe_load(text))
