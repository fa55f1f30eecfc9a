"""The user's own parts in an experiment file (observe:, toxiproxy:) and where traffic may go
(safety.allow_hosts): what is accepted, what is refused, with the key and the fix named."""

from __future__ import annotations

import textwrap

import pytest

from resilience.errors import ExperimentError
from resilience.experiment import Experiment, experiment_schema, parse_experiment
from resilience.experiment.model import check_target_url, is_loopback

BASE = """
name: byo
target: {url: "http://127.0.0.1:9000"}
proxies: [{name: db, listen: "127.0.0.1:26000", upstream: "127.0.0.1:5432"}]
load:
  stages: [{duration: 20s, users: 2, spawn_rate: 2}]
  workload: {requests: [{path: /items}]}
faults: [{at: 5s, duration: 5s, proxy: db, type: outage}]
"""

FULL = """
observe:
  prometheus:
    url: https://prom.example.internal/prometheus/
    headers: {X-Scope-OrgID: team-a}
    auth: {basic: {username: reader, password: "${env:PROM_PASSWORD}"}}
    tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key}
    proxy: http://proxy.example.internal:3128
    timeout: 10s
  traces:
    url: http://127.0.0.1:3200
    kind: tempo
    api: v2
    auth: {bearer: "${env:TEMPO_TOKEN}"}
toxiproxy: {url: "http://127.0.0.1:18474"}
safety: {allow_hosts: [prom.example.internal, Proxy.Example.Internal]}
"""

ENV = {"PROM_PASSWORD": "pw-123", "TEMPO_TOKEN": "tok-456"}


def load(extra: str = "", *, allow: tuple[str, ...] = ()) -> Experiment:
    text = textwrap.dedent(BASE) + textwrap.dedent(extra)
    return parse_experiment(text, file="byo.yaml", environ=ENV, allow_hosts=allow)


def error_text(extra: str, *, allow: tuple[str, ...] = ()) -> str:
    with pytest.raises(ExperimentError) as info:
        load(extra, allow=allow)
    return str(info.value)


def test_every_new_key_loads_and_keeps_env_references_in_the_copy() -> None:
    """observe.prometheus/traces, toxiproxy and safety load; secrets resolve from the
    environment and to_yaml writes the ${env:...} references back."""
    experiment = load(FULL)
    assert experiment.observe is not None
    prometheus, traces = experiment.observe.prometheus, experiment.observe.traces
    assert prometheus is not None and traces is not None
    assert prometheus.url == "https://prom.example.internal/prometheus"
    assert prometheus.auth is not None and prometheus.auth.basic is not None
    assert prometheus.auth.basic.password == "pw-123"
    assert prometheus.timeout == 10.0
    assert traces.kind == "tempo" and traces.api == "v2"
    assert experiment.toxiproxy is not None and experiment.toxiproxy.url == "http://127.0.0.1:18474"
    assert experiment.allowed_hosts() == {"prom.example.internal", "proxy.example.internal"}
    text = experiment.to_yaml()
    assert "${env:PROM_PASSWORD}" in text and "${env:TEMPO_TOKEN}" in text
    assert "pw-123" not in text and "tok-456" not in text


def test_schema_has_the_new_keys() -> None:
    """`resilience schema` describes observe, toxiproxy and safety."""
    properties = experiment_schema()["properties"]
    assert {"observe", "toxiproxy", "safety"} <= set(properties)


@pytest.mark.parametrize(
    ("extra", "place", "needle"),
    [
        ('target: {url: "http://shop.example.internal:8000"}', "at target.url", "--allow-host"),
        ('toxiproxy: {url: "http://10.1.2.3:8474"}', "at toxiproxy.url", "10.1.2.3"),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", proxy: "http://px.internal:1"}}',
            "at observe.prometheus.proxy",
            "px.internal",
        ),
        ('observe: {traces: {url: "http://jaeger.internal:16686"}}', "at observe.traces.url", ""),
    ],
)
def test_off_loopback_hosts_are_refused_unless_listed(extra: str, place: str, needle: str) -> None:
    """Every address the run would connect to must be loopback or listed; the error names the
    key, the host and both ways to allow it."""
    text = error_text_with_target(extra) if extra.startswith("target:") else error_text(extra)
    assert place in text, text
    assert "off loopback and not allowed" in text
    assert "safety: {allow_hosts:" in text and "--allow-host" in text
    assert needle in text


def error_text_with_target(extra: str) -> str:
    text = textwrap.dedent(BASE).replace('target: {url: "http://127.0.0.1:9000"}', extra)
    with pytest.raises(ExperimentError) as info:
        parse_experiment(text, file="byo.yaml")
    return str(info.value)


def test_a_listed_or_flagged_host_is_allowed() -> None:
    """safety.allow_hosts (any case) or the loader's allow_hosts (--allow-host) allow a host."""
    remote = 'toxiproxy: {url: "http://Chaos.Example.Internal:8474"}\n'
    assert load(remote + "safety: {allow_hosts: [chaos.example.internal]}").toxiproxy is not None
    assert load(remote, allow=("CHAOS.example.internal",)).toxiproxy is not None
    assert "chaos.example.internal" in error_text(remote, allow=("other.internal",))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('observe: {prometheus: {url: "http://u:p@127.0.0.1:9090"}}', "without user:password@"),
        ('observe: {prometheus: {url: "ftp://127.0.0.1"}}', "http(s) URL"),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", auth: {bearer: x, '
            "basic: {username: a, password: b}}}}",
            "exactly one of basic and bearer",
        ),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", auth: {bearer: x}, '
            "headers: {authorization: y}}}",
            "credentials given twice",
        ),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", headers: {"a b": y}}}',
            "HTTP header names",
        ),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", tls: {key_file: k.pem}}}',
            "key_file needs cert_file",
        ),
        (
            'observe: {prometheus: {url: "http://127.0.0.1:9090", tls: {verify: false, '
            "ca_file: ca.pem}}}",
            "ca_file has no use",
        ),
        ('observe: {traces: {url: "http://127.0.0.1:1", kind: zipkin}}', "zipkin"),
        ('observe: {traces: {url: "http://127.0.0.1:1", kind: jaeger, api: v2}}', "v3"),
        ('observe: {prometheus: {url: "http://127.0.0.1:1", timeout: 0s}}', "duration"),
        ("safety: {allow_hosts: ['http://x.internal']}", "without scheme or port"),
        ("safety: {allow_hosts: ['x.internal:80']}", "without scheme or port"),
        ('toxiproxy: {url: "http://127.0.0.1:8474", headers: {}}', "headers"),
    ],
)
def test_bad_part_settings_are_located_errors(extra: str, needle: str) -> None:
    """Each wrong setting is an ExperimentError naming the file and what was expected."""
    text = error_text(extra)
    assert "byo.yaml" in text and "expected" in text
    assert needle in text, text


def test_loopback_is_127_slash_8_localhost_and_ipv6() -> None:
    """Loopback: localhost, the whole 127.0.0.0/8, ::1 (bracketed or not), v4-mapped."""
    for host in (
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.3.4.5",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "localhost.example.com", "128.0.0.1", "example.com", "::2"):
        assert not is_loopback(host), host


def test_flag_urls_follow_the_same_rule() -> None:
    """A URL from a flag is refused off loopback unless allowed, naming the flag."""
    assert check_target_url("http://[::1]:9000/") == "http://[::1]:9000"
    with pytest.raises(ExperimentError, match=r"--prometheus names host 'prom.internal'"):
        check_target_url("http://prom.internal:9090", option="--prometheus")
    allowed = check_target_url(
        "http://prom.internal:9090", option="--prometheus", allow_hosts=["PROM.internal"]
    )
    assert allowed == "http://prom.internal:9090"
