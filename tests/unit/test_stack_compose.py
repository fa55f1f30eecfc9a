"""Unit tests: docker-compose.yml against the Compose schema and the native stack's definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from resilience.cli import app
from resilience.stack import versions
from resilience.stack.components import COMPONENTS
from resilience.stack.compose import (
    COMPOSE_FILE,
    compose_document,
    compose_is_current,
    render_compose,
)
from resilience.stack.config import RUN_PORTS, Ports
from resilience.stack.generate import PROMETHEUS_JOBS, SHOP_METRICS_PORTS
from resilience.stack.grafana import JAEGER_UID, PROMETHEUS_UID, dashboard, dashboard_json
from resilience.stack.topology import SHOP_SERVICES, stack_proxies

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(render_compose())


def test_the_compose_file_validates_against_the_compose_spec(document: dict[str, Any]) -> None:
    """The generated file is valid under the Compose Specification's JSON Schema (draft-07)."""
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)


def test_the_committed_compose_file_is_what_the_generator_writes() -> None:
    """docker-compose.yml at the repository root is up to date (`resilience stack compose`)."""
    assert compose_is_current(REPO / COMPOSE_FILE), "run `resilience stack compose`"


def test_the_yaml_text_parses_to_the_document(document: dict[str, Any]) -> None:
    """The rendered text is the document (inlined configs keep their content)."""
    assert document == compose_document()


def test_services_are_the_native_components(document: dict[str, Any]) -> None:
    """Compose has one service per native component, with the pinned images."""
    services = document["services"]
    assert list(services) == [*(c.name for c in COMPONENTS), "grafana"]
    for name, image in versions.IMAGES.items():
        assert services[name]["image"] == image
    for name in SHOP_SERVICES:
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
        assert services[name]["command"] == [name]


def test_published_ports_are_the_native_ports_on_loopback(document: dict[str, Any]) -> None:
    """Each service publishes exactly the ports its native component binds with default shop
    options (the shop's separate metrics ports stay unpublished), on 127.0.0.1."""
    ports = Ports()
    unused = set(SHOP_METRICS_PORTS.values())
    for component in COMPONENTS:
        bound = [p for name, p in component.ports(ports).items() if name not in unused]
        expected = [f"127.0.0.1:{p}:{p}" for p in bound]
        assert document["services"][component.name]["ports"] == expected
    published = [
        p for name, s in document["services"].items() if name != "grafana" for p in s["ports"]
    ]
    assert len(published) == len(ports.model_dump()) - len(unused) - len(RUN_PORTS)


def test_toxiproxy_config_holds_the_topology_proxies(document: dict[str, Any]) -> None:
    """The toxiproxy.json given to -config lists the topology's proxies on the same ports."""
    proxies = json.loads(document["configs"]["toxiproxy_config"]["content"].replace("$$", "$"))
    expected = [
        (spec.name, spec.listen_port, spec.upstream_port) for spec in stack_proxies(Ports())
    ]
    got = [
        (p["name"], int(p["listen"].rsplit(":", 1)[1]), int(p["upstream"].rsplit(":", 1)[1]))
        for p in proxies
    ]
    assert got == expected
    assert [p["upstream"].split(":")[0] for p in proxies] == ["postgres", "orders", "catalog"]
    command = document["services"]["toxiproxy"]["command"]
    assert "-config=/etc/toxiproxy/toxiproxy.json" in command
    assert {"-proxy-metrics", "-runtime-metrics"} <= set(command)


def test_prometheus_in_compose_scrapes_the_same_jobs(document: dict[str, Any]) -> None:
    """Compose's prometheus.yml has the native jobs, addressed by service name."""
    config = yaml.safe_load(document["configs"]["prometheus_config"]["content"])
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert set(jobs) == set(PROMETHEUS_JOBS)
    assert jobs["gateway"] == ["gateway:8000"]
    assert jobs["jaeger"] == ["jaeger:8888"]


def test_the_shop_reaches_its_dependencies_through_toxiproxy(document: dict[str, Any]) -> None:
    """Shop services use the proxies by service name and bind all interfaces in the container."""
    env = document["services"]["gateway"]["environment"]
    assert env["SHOP_CATALOG_URL"] == "http://toxiproxy:28002"
    assert env["SHOP_ORDERS_URL"] == "http://toxiproxy:28001"
    assert env["SHOP_HOST"] == "0.0.0.0"
    assert env["SHOP_MODE"] == "${SHOP_MODE:-fragile}"
    orders = document["services"]["orders"]
    assert orders["environment"]["SHOP_DATABASE_URL"] == (
        "postgresql://resilience:${POSTGRES_PASSWORD}@toxiproxy:25432/shop"
    )
    assert orders["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_compose_postgres_needs_a_password_and_prometheus_has_no_lifecycle_api(
    document: dict[str, Any],
) -> None:
    """As natively: scram-sha-256 for every connection (compose refuses to start without
    POSTGRES_PASSWORD, the health check uses it) and no --web.enable-lifecycle."""
    postgres = document["services"]["postgres"]
    env = postgres["environment"]
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "POSTGRES_HOST_AUTH_METHOD" not in env
    assert env["POSTGRES_INITDB_ARGS"] == "--auth-local=scram-sha-256 --auth-host=scram-sha-256"
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert 'PGPASSWORD="$$POSTGRES_PASSWORD"' in postgres["healthcheck"]["test"][1]
    assert not any("lifecycle" in arg for arg in document["services"]["prometheus"]["command"])


def test_compose_check_command_fails_on_a_stale_file(tmp_path: Path) -> None:
    """`stack compose --check` exits 1 on a stale file and 0 once it is regenerated."""
    target = tmp_path / COMPOSE_FILE
    target.write_text("services: {}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["stack", "compose", "--check", "--file", str(target)]).exit_code == 1
    assert runner.invoke(app, ["stack", "compose", "--file", str(target)]).exit_code == 0
    assert runner.invoke(app, ["stack", "compose", "--check", "--file", str(target)]).exit_code == 0


def test_grafana_is_provisioned_with_the_run_dashboard(document: dict[str, Any]) -> None:
    """Compose's Grafana gets the stack's Prometheus and Jaeger as datasources and the run
    dashboard from the committed file, which is what the generator writes."""
    grafana_service = document["services"]["grafana"]
    assert grafana_service["image"] == versions.IMAGES["grafana"]
    assert grafana_service["ports"] == ["127.0.0.1:3000:3000"]
    sources = yaml.safe_load(document["configs"]["grafana_datasources_config"]["content"])
    urls = {d["uid"]: d["url"] for d in sources["datasources"]}
    assert urls == {PROMETHEUS_UID: "http://prometheus:9090", JAEGER_UID: "http://jaeger:16686"}
    dashboard_file = document["configs"]["grafana_dashboard_config"]["file"]
    assert (REPO / dashboard_file).read_text() == dashboard_json()
    targets = [m["target"] for m in grafana_service["configs"]]
    provider = yaml.safe_load(document["configs"]["grafana_dashboards_config"]["content"])
    folder = provider["providers"][0]["options"]["path"]
    assert f"{folder}/resilience-dashboard.json" in targets


def test_prometheus_scrapes_the_runs_live_metrics_on_the_host(document: dict[str, Any]) -> None:
    """The job "resilience" targets the run's live metrics port on the Docker host."""
    config = yaml.safe_load(document["configs"]["prometheus_config"]["content"])
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs["resilience"] == [f"host.docker.internal:{Ports().load_metrics}"]
    assert "host.docker.internal:host-gateway" in document["services"]["prometheus"]["extra_hosts"]


def test_dashboard_reads_the_exported_series_and_annotates_faults() -> None:
    """Every load panel queries a series the live export serves; faults are annotations."""
    model = dashboard()
    exprs = " ".join(t["expr"] for p in model["panels"] for t in p["targets"])
    for name in ("resilience_load_requests_total", "resilience_load_errors_total",
                 "resilience_load_latency_seconds_bucket", "resilience_fault_active",
                 "resilience_run_phase", "shop_http_request_duration_seconds_bucket"):  # fmt: skip
        assert name in exprs
    [annotation] = model["annotations"]["list"]
    assert annotation["expr"].startswith("resilience_fault_active")
    assert model["templating"]["list"][0]["name"] == "run"
