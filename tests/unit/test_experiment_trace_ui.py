"""observe.trace_ui: where a person opens a trace; the report links trace ids to it."""

from __future__ import annotations

import pytest

from resilience.errors import ExperimentError
from resilience.experiment import parse_experiment

BASE = """
name: linked
target: {url: "http://127.0.0.1:8000"}
load:
  stages: [{duration: 10s, users: 1, spawn_rate: 1}]
  workload:
    requests: [{name: GET /, path: /}]
observe:
  trace_ui: %s
"""


def test_a_trace_ui_with_the_id_placeholder_loads() -> None:
    """An http(s) URL with {trace_id} is kept as written (any host: it is only a link)."""
    url = "https://tempo.example.org/explore?trace={trace_id}"
    experiment = parse_experiment(BASE % f'"{url}"', file="x.yaml")
    assert experiment.observe is not None and experiment.observe.trace_ui == url


@pytest.mark.parametrize("bad", ['"http://jaeger:16686/trace/"', '"ftp://x/{trace_id}"'])
def test_a_trace_ui_without_the_placeholder_or_http_is_located(bad: str) -> None:
    """A URL that cannot take the id, or is not http(s), is an error naming the key."""
    with pytest.raises(ExperimentError) as info:
        parse_experiment(BASE % bad, file="x.yaml")
    assert "observe.trace_ui" in str(info.value)
    assert "{trace_id}" in str(info.value)
