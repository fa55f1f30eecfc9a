"""Unit tests: the supervisor's pure parts (component names, order, options) and /proc helpers."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from resilience.cli import app
from resilience.errors import ExperimentError, StackError
from resilience.stack import parse_shop_options, resolve_components
from resilience.stack._process import (
    family,
    is_alive,
    port_is_free,
    proc_info,
    tail,
    wait_until,
)
from resilience.stack.components import COMPONENTS, GROUPS, Context, by_name, start_waves
from resilience.stack.config import RUN_PORTS, Ports, StackConfig, StackPaths
from resilience.stack.programs import Programs
from resilience.stack.state import ComponentRecord
from resilience.stack.topology import SHOP_SERVICES


def test_component_names_expand_groups_in_start_order() -> None:
    """Groups and comma lists resolve to names in dependency order, without duplicates."""
    assert resolve_components(None) == (
        "postgres", "toxiproxy", "jaeger", "prometheus", "catalog", "orders", "gateway",
    )  # fmt: skip
    assert resolve_components(["gateway,postgres", "infra"]) == (
        "postgres", "toxiproxy", "jaeger", "prometheus", "gateway",
    )  # fmt: skip
    assert resolve_components(["shop"]) == SHOP_SERVICES


def test_an_unknown_component_is_invalid_input() -> None:
    """An unknown name raises ExperimentError listing the valid ones."""
    with pytest.raises(ExperimentError, match="postgress") as caught:
        resolve_components(["postgress"])
    assert "toxiproxy" in str(caught.value)


def test_shop_components_are_the_topology_services() -> None:
    """The supervisor's shop group is topology.SHOP_SERVICES in the same order."""
    assert GROUPS["shop"] == SHOP_SERVICES


def test_waves_start_dependencies_first() -> None:
    """Infrastructure starts together, then catalog and orders, then the gateway."""
    waves = [[c.name for c in wave] for wave in start_waves(GROUPS["all"])]
    assert waves == [
        ["postgres", "toxiproxy", "jaeger", "prometheus"],
        ["catalog", "orders"],
        ["gateway"],
    ]


def test_waves_ignore_dependencies_that_are_not_being_started() -> None:
    """Starting only the shop does not wait for infrastructure it is not asked to start."""
    waves = [[c.name for c in wave] for wave in start_waves(["gateway", "orders"])]
    assert waves == [["orders"], ["gateway"]]


def test_every_port_belongs_to_exactly_one_component() -> None:
    """The components' ports partition Ports: none forgotten, none shared."""
    ports = Ports()
    owned = [name for c in COMPONENTS for name in c.ports(ports)]
    assert sorted(owned) == sorted(set(ports.model_dump()) - RUN_PORTS)


def test_shop_options_parse_to_lowercase_names() -> None:
    """NAME=VALUE pairs become a dict; values may contain '='."""
    assert parse_shop_options(["DB_POOL_SIZE=3", "x=a=b"]) == {"db_pool_size": "3", "x": "a=b"}


@pytest.mark.parametrize("bad", ["novalue", "=3", "bad-name=1", "1x=2"])
def test_malformed_shop_options_are_invalid_input(bad: str) -> None:
    """A pair without '=' or with a name that is not an identifier raises ExperimentError."""
    with pytest.raises(ExperimentError, match="shop-option"):
        parse_shop_options([bad])


def test_cli_rejects_a_bad_component_with_exit_2(tmp_path: Path) -> None:
    """`stack up --only nope` exits 2 before touching anything."""
    env = {"RESILIENCE_STATE_DIR": str(tmp_path / "state"), "RESILIENCE_HOME": str(tmp_path)}
    result = CliRunner().invoke(app, ["stack", "up", "--only", "nope"], env=env)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "state" / "stack.json").exists()


def test_cli_rejects_an_unknown_shop_mode_with_exit_2(tmp_path: Path) -> None:
    """`stack up --shop-mode brittle` exits 2."""
    env = {"RESILIENCE_STATE_DIR": str(tmp_path / "state"), "RESILIENCE_HOME": str(tmp_path)}
    result = CliRunner().invoke(app, ["stack", "up", "--shop-mode", "brittle"], env=env)
    assert result.exit_code == 2, result.output


def test_proc_info_describes_this_process() -> None:
    """/proc parsing finds our own PID, group and a start time; liveness checks the start time."""
    info = proc_info(os.getpid())
    assert info is not None
    assert info.pgid == os.getpgid(0)
    assert info.rss_pages > 0
    assert is_alive(os.getpid(), info.start_ticks)
    assert not is_alive(os.getpid(), info.start_ticks + 1)
    assert os.getpid() in [p.pid for p in family([info.pgid])]


def test_a_bound_port_is_not_free() -> None:
    """port_is_free is False while a socket holds the port and True after it closes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_is_free(port)
    assert wait_until(lambda: port_is_free(port), timeout=5)


def test_tail_reads_only_what_was_written_after_the_offset(tmp_path: Path) -> None:
    """The log tail of one start ignores what earlier starts wrote."""
    log = tmp_path / "x.log"
    log.write_text("old 1\nold 2\n")
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.write("".join(f"new {i}\n" for i in range(50)))
    text = tail(log, start=offset, lines=3)
    assert text == "new 47\nnew 48\nnew 49"
    assert "old" not in tail(log, start=offset, lines=100)
    assert tail(tmp_path / "missing.log") == ""


def _context(tmp_path: Path, http: httpx.Client, *, separate: bool) -> Context:
    config = StackConfig(
        paths=StackPaths(home=tmp_path / "home", state=tmp_path / "state"),
        ports=Ports().shifted(300),
    )
    return Context(
        config=config, programs=Programs(config), http=http, separate_shop_metrics=separate
    )


def test_shop_services_bind_their_metrics_port_only_when_metrics_are_separate(
    tmp_path: Path,
) -> None:
    """A shop service checks and records its metrics port only for a start with the option."""
    gateway = by_name("gateway")
    with httpx.Client() as http:
        plain = gateway.bound_ports(_context(tmp_path, http, separate=False))
        separate = gateway.bound_ports(_context(tmp_path, http, separate=True))
    assert plain == {"gateway": 8300}
    assert separate == {"gateway": 8300, "gateway_metrics": 18300}
    assert next(iter(separate)) == "gateway"  # the main port stays first


class FakePrometheus:
    """Prometheus' /metrics as refresh() reads it: a SIGHUP (through Context.send_signal)
    counts as a reload that succeeds (a later timestamp) or fails (successful 0)."""

    def __init__(self, *, accepts: bool = True) -> None:
        self.accepts = accepts
        self.signals: list[tuple[int, int]] = []
        self.stamp, self.successful = 1000.0, 1.0

    def send_signal(self, pid: int, number: int) -> None:
        self.signals.append((pid, number))
        if self.accepts:
            self.stamp += 1.5
        else:
            self.successful = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/metrics")
        return httpx.Response(
            200,
            text="# HELP ...\n"
            f"prometheus_config_last_reload_success_timestamp_seconds {self.stamp}\n"
            f"prometheus_config_last_reload_successful {self.successful}\n",
        )


def _own_record() -> ComponentRecord:
    """A record of this very process (alive, with its real start time) to signal."""
    info = proc_info(os.getpid())
    assert info is not None
    return ComponentRecord(
        name="prometheus", pid=os.getpid(), pgid=os.getpgid(0), start_ticks=info.start_ticks,
        port=9390, log="prometheus.log", started_at="2026-01-01T00:00:00Z",
    )  # fmt: skip


def test_prometheus_refresh_rewrites_its_config_and_reloads_only_on_a_change(
    tmp_path: Path,
) -> None:
    """refresh() writes prometheus.yml for where the shop's metrics are and sends SIGHUP
    (its HTTP lifecycle API is off), once per change, then sees the reload in /metrics."""
    fake = FakePrometheus()
    record = _own_record()
    prometheus = by_name("prometheus")
    with httpx.Client(transport=httpx.MockTransport(fake.handle)) as http:
        plain = _context(tmp_path, http, separate=False)
        plain.send_signal = fake.send_signal
        prometheus.prepare(plain)  # as at start: the app ports
        prometheus.refresh(plain, record)
        assert fake.signals == []
        separate = _context(tmp_path, http, separate=True)
        separate.send_signal = fake.send_signal
        prometheus.refresh(separate, record)
        prometheus.refresh(separate, record)
    assert fake.signals == [(os.getpid(), signal.SIGHUP)]
    written = yaml.safe_load((tmp_path / "state" / "etc" / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in written["scrape_configs"]}
    assert targets["gateway"] == ["127.0.0.1:18300"]


def test_a_failed_prometheus_reload_is_a_stack_error(tmp_path: Path) -> None:
    """If Prometheus refuses the new file (successful 0 after SIGHUP), refresh raises
    StackError (exit 3)."""
    fake = FakePrometheus(accepts=False)
    with httpx.Client(transport=httpx.MockTransport(fake.handle)) as http:
        ctx = _context(tmp_path, http, separate=True)
        ctx.send_signal = fake.send_signal
        with pytest.raises(StackError, match="refused its new configuration") as caught:
            by_name("prometheus").refresh(ctx, _own_record())
    assert caught.value.exit_code == 3


def test_a_prometheus_that_is_gone_is_not_signalled(tmp_path: Path) -> None:
    """A recorded PID whose start time differs (a recycled PID) gets no signal: StackError."""
    fake = FakePrometheus()
    record = _own_record().model_copy(update={"start_ticks": 1})
    with httpx.Client(transport=httpx.MockTransport(fake.handle)) as http:
        ctx = _context(tmp_path, http, separate=True)
        ctx.send_signal = fake.send_signal
        with pytest.raises(StackError, match="cannot reload"):
            by_name("prometheus").refresh(ctx, record)
    assert fake.signals == []


def test_prometheus_runs_without_its_lifecycle_api(tmp_path: Path) -> None:
    """No --web.enable-lifecycle: no local user can POST /-/quit or /-/reload."""
    with httpx.Client() as http:
        argv = by_name("prometheus").launch(_context(tmp_path, http, separate=False)).argv
    assert not any("lifecycle" in arg for arg in argv)


def test_up_rejects_a_bad_shop_option_before_starting_anything(tmp_path: Path) -> None:
    """`stack up --shop-option tracing=sometimes` exits 2 naming the option; nothing starts."""
    env = {"RESILIENCE_STATE_DIR": str(tmp_path / "state"), "RESILIENCE_HOME": str(tmp_path)}
    result = CliRunner().invoke(app, ["stack", "up", "--shop-option", "tracing=sometimes"], env=env)
    assert result.exit_code == 2, result.output
    assert "tracing" in result.output
    assert not (tmp_path / "state" / "stack.json").exists()
