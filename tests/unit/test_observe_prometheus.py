"""Unit tests for the Prometheus source (prometheus-api-client behind our interface): parsing,
errors, timeouts, connection settings, the fake, saved series."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from resilience.errors import ObserveError
from resilience.observe import (
    HttpPrometheusSource,
    PrometheusQueryError,
    PrometheusUnavailable,
    Series,
    Target,
)
from resilience.observe.connection import Connection
from resilience.rundir.series import load_series, save_series
from resilience.stack.config import Ports
from resilience.testing.observe_fakes import FakePrometheusSource
from resilience.testing.requests_mock import MockAdapter

PORTS = Ports().shifted(400)
CLOSED_PORT = PORTS.catalog_proxy  # nothing of ours listens there during unit tests
SILENT_PORT = PORTS.orders_proxy


@contextmanager
def silent_server(port: int) -> Iterator[str]:
    """A socket that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def mock_source(handler: Any, **kwargs: Any) -> HttpPrometheusSource:
    return HttpPrometheusSource("http://prom.test", adapter=MockAdapter(handler), **kwargs)


def ok(data: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"status": "success", "data": data}


def params(request: requests.PreparedRequest) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(request.url or "").query).items()}


def path(request: requests.PreparedRequest) -> str:
    return urlsplit(request.url or "").path


def test_instant_vector_becomes_series_with_labels_and_one_point() -> None:
    """An instant vector answer becomes one Series per element with its labels."""
    seen: list[requests.PreparedRequest] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        seen.append(request)
        return ok(
            {
                "resultType": "vector",
                "result": [
                    {"metric": {"__name__": "up", "job": "a"}, "value": [100.5, "1"]},
                    {"metric": {"__name__": "up", "job": "b"}, "value": [100.5, "0"]},
                ],
            }
        )

    series = mock_source(handler).query("up", at=100.5)
    assert [s.labels["job"] for s in series] == ["a", "b"]
    assert series[0].points == [(100.5, 1.0)]
    assert series[0].name == "up"
    assert path(seen[0]) == "/api/v1/query"
    assert params(seen[0])["time"] == "100.500"
    assert params(seen[0])["timeout"] == "5s"


def test_range_query_sends_window_and_step_and_parses_matrix() -> None:
    """A range query sends start/end/step and turns a matrix into time-ordered points."""
    seen: list[requests.PreparedRequest] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        seen.append(request)
        return ok(
            {
                "resultType": "matrix",
                "result": [{"metric": {"svc": "x"}, "values": [[10, "1.5"], [11, "2"]]}],
            }
        )

    series = mock_source(handler).query_range("rate(x[5s])", 10.0, 11.0, 1.0)
    sent = params(seen[0])
    assert path(seen[0]) == "/api/v1/query_range"
    assert (sent["start"], sent["end"], sent["step"]) == ("10.000", "11.000", "1")
    assert series == [Series({"svc": "x"}, [(10.0, 1.5), (11.0, 2.0)])]


def test_special_floats_arrive_as_python_floats() -> None:
    """NaN, +Inf and -Inf values parse to floats instead of raising."""

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        return ok(
            {
                "resultType": "matrix",
                "result": [{"metric": {}, "values": [[1, "NaN"], [2, "+Inf"], [3, "-Inf"]]}],
            }
        )

    (series,) = mock_source(handler).query_range("q", 1, 3)
    values = series.values()
    assert math.isnan(values[0])
    assert values[1] == math.inf
    assert values[2] == -math.inf
    assert series.finite_points() == [(2.0, math.inf), (3.0, -math.inf)]


def test_scalar_result_is_one_unlabelled_series() -> None:
    """A scalar answer becomes a single series without labels."""
    source = mock_source(lambda r: ok({"resultType": "scalar", "result": [5, "3"]}))
    assert source.query("1+2") == [Series({}, [(5.0, 3.0)])]


def test_api_error_json_is_surfaced_with_query_and_endpoint() -> None:
    """A 400 with Prometheus's error JSON raises PrometheusQueryError quoting it."""

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        return 400, {
            "status": "error",
            "errorType": "bad_data",
            "error": "parse error: unexpected end of input inside braces",
        }

    with pytest.raises(PrometheusQueryError) as info:
        mock_source(handler).query("up{")
    message = str(info.value)
    assert "up{" in message
    assert "http://prom.test" in message
    assert "bad_data" in message
    assert "unexpected end of input" in message
    assert info.value.error_type == "bad_data"
    assert isinstance(info.value, ObserveError)


def test_non_api_5xx_counts_as_unavailable() -> None:
    """A 502 without Prometheus's JSON (a proxy, another server) is 'unavailable'."""
    source = mock_source(lambda r: (502, "Bad Gateway"))
    with pytest.raises(PrometheusUnavailable, match="HTTP 502"):
        source.query("up")


def test_closed_port_raises_unavailable_quickly() -> None:
    """Nothing listening: PrometheusUnavailable naming the endpoint, well within the timeout."""
    source = HttpPrometheusSource(f"http://127.0.0.1:{CLOSED_PORT}", timeout=2.0)
    began = time.monotonic()
    with pytest.raises(PrometheusUnavailable) as info:
        source.query("up")
    assert time.monotonic() - began < 2.0
    assert f"127.0.0.1:{CLOSED_PORT}" in str(info.value)
    assert "'up'" in str(info.value)
    assert not source.ready()


def test_server_that_never_answers_is_bounded_by_the_timeout() -> None:
    """A server that accepts and stays silent costs about one timeout, then 'unavailable'."""
    with silent_server(SILENT_PORT) as url:
        source = HttpPrometheusSource(url, timeout=0.5)
        began = time.monotonic()
        with pytest.raises(PrometheusUnavailable, match="did not answer"):
            source.query_range("up", 0, 10)
        elapsed = time.monotonic() - began
    assert 0.4 <= elapsed < 3.0


def test_targets_are_parsed_with_health_and_last_error() -> None:
    """Active targets come back with job, instance, health and the last scrape error."""

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        assert params(request)["state"] == "active"
        return ok(
            {
                "activeTargets": [
                    {
                        "labels": {"job": "shop", "instance": "127.0.0.1:8000"},
                        "scrapeUrl": "http://127.0.0.1:8000/metrics",
                        "health": "down",
                        "lastError": "connection refused",
                        "lastScrape": "2026-01-01T00:00:00Z",
                    },
                    {"labels": {"job": "prom", "instance": "x"}, "health": "up"},
                ],
                "droppedTargets": [],
            }
        )

    down, up = mock_source(handler).targets()
    assert (down.job, down.instance, down.health, down.up) == (
        "shop",
        "127.0.0.1:8000",
        "down",
        False,
    )
    assert down.last_error == "connection refused"
    assert up.up


def test_saved_series_round_trip_keeps_special_values(tmp_path: Path) -> None:
    """save_series writes valid JSON (NaN/Inf as strings) that load_series reads back."""
    series = [Series({"a": "1"}, [(1.0, math.nan), (2.0, math.inf), (3.0, 0.25)])]
    path = tmp_path / "prometheus" / "x.json"
    save_series(path, series, promql="q")
    assert "NaN" in path.read_text()
    meta, loaded = load_series(path)
    assert meta == {"promql": "q"}
    assert loaded[0].labels == {"a": "1"}
    assert math.isnan(loaded[0].points[0][1])
    assert loaded[0].points[1:] == [(2.0, math.inf), (3.0, 0.25)]


def test_fake_source_slices_canned_history_by_time() -> None:
    """The fake answers instant queries with the last point before `at`, ranges by window."""
    history = Series({"s": "x"}, [(float(t), float(t * 10)) for t in range(10)])
    fake = FakePrometheusSource({"q": [history]}, targets=[Target("j", "i", "u", "up")])
    assert fake.query("q", at=4.5)[0].points == [(4.0, 40.0)]
    assert fake.query_range("q", 2, 4)[0].points == [(2.0, 20.0), (3.0, 30.0), (4.0, 40.0)]
    assert fake.query("unknown") == []
    assert fake.targets()[0].up
    assert ("query_range", "q") in fake.calls


def test_fake_source_raises_the_configured_error() -> None:
    """A fake with an error raises it on every call."""
    fake = FakePrometheusSource(error=PrometheusUnavailable("down", endpoint="fake"))
    with pytest.raises(PrometheusUnavailable):
        fake.query("q")


# ---------------------------------------------------------------- prometheus-api-client's settings


def test_connection_settings_reach_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers, bearer token, CA bundle, client certificate, proxy and the (connect, read)
    timeout are what requests sends with; environment proxies are not used."""
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.invalid:1")
    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy.invalid:1")
    adapter = MockAdapter(lambda r: ok({"resultType": "vector", "result": []}))
    connection = Connection(
        headers={"X-Scope-OrgID": "team-a"},
        bearer="s3cret",
        ca_file="/etc/ca.pem",
        cert_file="/etc/client.pem",
        key_file="/etc/client.key",
        proxy="http://proxy.local:3128",
        timeout=2.5,
    )
    source = HttpPrometheusSource("https://prom.test", connection=connection, adapter=adapter)
    source.query("up")
    (sent,) = adapter.sent
    assert sent.request.headers["Authorization"] == "Bearer s3cret"
    assert sent.request.headers["X-Scope-OrgID"] == "team-a"
    assert sent.verify == "/etc/ca.pem"
    assert sent.cert == ("/etc/client.pem", "/etc/client.key")
    assert sent.proxies.get("https") == "http://proxy.local:3128"
    assert "env-proxy" not in str(sent.proxies)
    assert sent.timeout == (2.5, 2.5)
    assert params(sent.request)["timeout"] == "2.5s"


def test_basic_auth_and_no_verification() -> None:
    """Basic credentials become an Authorization header; verify false reaches requests."""
    adapter = MockAdapter(lambda r: ok({"resultType": "vector", "result": []}))
    connection = Connection(basic=("alice", "pw"), verify=False)
    HttpPrometheusSource("https://prom.test", connection=connection, adapter=adapter).query("up")
    (sent,) = adapter.sent
    assert sent.request.headers["Authorization"] == "Basic YWxpY2U6cHc="
    assert sent.verify is False


def test_a_503_is_one_request_and_keeps_prometheus_reason() -> None:
    """No hidden retries: Prometheus's query timeout (503) is asked once and its errorType
    and text survive into PrometheusQueryError."""
    body = {
        "status": "error",
        "errorType": "timeout",
        "error": "query timed out in expression evaluation",
    }
    adapter = MockAdapter(lambda r: (503, body))
    source = HttpPrometheusSource("http://prom.test", adapter=adapter)
    with pytest.raises(PrometheusQueryError) as info:
        source.query_range("rate(x[5m])", 0, 60)
    assert len(adapter.sent) == 1
    assert info.value.error_type == "timeout"
    assert "query timed out in expression evaluation" in str(info.value)
    assert "HTTP 503" in str(info.value)


def test_refused_credentials_are_unavailable_with_a_hint() -> None:
    """A 401 from an auth proxy stops the asking and says to check headers and auth."""
    source = mock_source(lambda r: (401, "Unauthorized"))
    with pytest.raises(PrometheusUnavailable, match=r"refused our credentials .*HTTP 401"):
        source.query("up")


def test_a_200_that_is_not_the_api_is_a_query_error() -> None:
    """A 200 with HTML (a login page) is PrometheusQueryError, not a crash."""
    source = mock_source(lambda r: (200, "<html>login</html>"))
    with pytest.raises(PrometheusQueryError, match="not its API JSON"):
        source.query("up")


def test_range_times_keep_their_fractions() -> None:
    """The package rounds start/end to whole seconds; the source sends the exact times."""
    seen: list[requests.PreparedRequest] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        seen.append(request)
        return ok({"resultType": "matrix", "result": []})

    mock_source(handler).query_range("up", 12.7, 20.2, 0.5)
    sent = params(seen[0])
    assert (sent["start"], sent["end"], sent["step"]) == ("12.700", "20.200", "0.5")


def test_prometheus_warnings_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The package drops Prometheus's warnings; the source logs them."""
    answer = {
        "status": "success",
        "warnings": ["PromQL info: metric might not be a counter"],
        "data": {"resultType": "vector", "result": []},
    }
    with caplog.at_level("WARNING"):
        assert mock_source(lambda r: (200, answer)).query("rate(x[1m])") == []
    assert "might not be a counter" in caplog.text


def test_check_and_ready_use_a_query() -> None:
    """check() asks the query API (auth and path prefix included); ready() never raises."""
    good = mock_source(lambda r: ok({"resultType": "scalar", "result": [1.0, "1"]}))
    good.check()
    assert good.ready()
    bad = mock_source(lambda r: (403, "Forbidden"))
    assert not bad.ready()
    with pytest.raises(PrometheusUnavailable, match="HTTP 403"):
        bad.check()


def test_closed_port_is_one_attempt() -> None:
    """Connection refused surfaces at once: the package's default 3 retries with back-off
    (6 s) are configured away."""
    source = HttpPrometheusSource(f"http://127.0.0.1:{CLOSED_PORT}", timeout=5.0)
    began = time.monotonic()
    with pytest.raises(PrometheusUnavailable, match="cannot reach"):
        source.targets()
    assert time.monotonic() - began < 1.0
