"""Integration tests that start and stop whole stacks of their own: up, down, failures.

Each test gets a private stack (conftest's ``private_stack``: its own state directory, the
session's port offset + 50) so that taking it down or breaking it never disturbs the shared
session stack.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket

import pytest
from typer.testing import CliRunner

from resilience.cli import app
from resilience.errors import StackError
from resilience.stack import Stack
from resilience.stack._process import is_alive, port_is_free, wait_until
from resilience.stack.config import RUN_PORTS
from resilience.stack.generate import SHOP_METRICS_PORTS
from tests.integration.conftest import StackHandle
from tests.integration.test_stack_session import cli_env

pytestmark = pytest.mark.integration


def all_ports(handle: StackHandle) -> dict[str, int]:
    return handle.config.ports.model_dump()


def default_ports(handle: StackHandle) -> dict[str, int]:
    """The ports a stack with default shop options binds: all but the shop's metrics ports
    and the ports a run binds itself, not the stack: its live load metrics and its
    distributed-load master."""
    unused = {*SHOP_METRICS_PORTS.values(), *RUN_PORTS}
    return {name: port for name, port in all_ports(handle).items() if name not in unused}


def normalised(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_down_after_up_leaves_no_process_and_no_bound_port(private_stack: StackHandle) -> None:
    """`down` after a full `up` leaves zero processes of the stack and every port free."""
    result = private_stack.stack.up()
    assert result.started == (
        "postgres", "toxiproxy", "jaeger", "prometheus", "catalog", "orders", "gateway",
    )  # fmt: skip
    processes = private_stack.stack.processes()
    assert len(processes) >= 7  # PostgreSQL has helper processes besides the postmaster
    assert not any(port_is_free(p) for p in default_ports(private_stack).values())

    down = private_stack.stack.down()

    assert set(down.stopped) == set(result.started)
    assert [p.pid for p in processes if is_alive(p.pid, p.start_ticks)] == []
    busy = {name: p for name, p in all_ports(private_stack).items() if not port_is_free(p)}
    assert busy == {}
    assert private_stack.stack.records() == {}


def test_down_with_nothing_up_is_harmless(private_stack: StackHandle) -> None:
    """`stack down` with nothing running exits 0 and says so."""
    result = CliRunner().invoke(app, ["stack", "down"], env=cli_env(private_stack))
    assert result.exit_code == 0, result.output
    assert "nothing was running" in result.output


def test_up_restarts_only_a_component_that_died(private_stack: StackHandle) -> None:
    """A killed component shows as dead in status; the next `up` starts only it."""
    private_stack.stack.up(components=["infra"])
    victim = private_stack.stack.records()["toxiproxy"]
    os.killpg(victim.pgid, signal.SIGKILL)
    assert wait_until(lambda: not is_alive(victim.pid, victim.start_ticks), timeout=10)
    states = {s.name: s.state for s in private_stack.stack.status()}
    assert states["toxiproxy"] == "dead"
    assert states["postgres"] == "running"

    result = private_stack.stack.up(components=["infra"])

    assert result.started == ("toxiproxy",)
    assert set(result.already_running) == {"postgres", "jaeger", "prometheus"}
    assert private_stack.stack.is_up(["infra"])


def test_a_port_held_by_someone_else_gives_exit_3_naming_port_and_component(
    private_stack: StackHandle,
) -> None:
    """A socket bound on Prometheus' port makes `up` exit 3 naming the port; nothing stays up."""
    port = private_stack.config.ports.prometheus
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = CliRunner().invoke(
            app, ["stack", "up", "--only", "infra"], env=cli_env(private_stack)
        )
    text = normalised(result.output)
    assert result.exit_code == 3, text
    assert f"port {port}" in text
    assert "prometheus" in text
    # What the failed `up` had started was rolled back.
    assert private_stack.stack.records() == {}
    assert port_is_free(private_stack.config.ports.postgres)


def test_a_component_that_dies_at_start_gives_exit_3_with_its_log_tail(
    private_stack: StackHandle,
) -> None:
    """A broken data directory makes PostgreSQL exit; `up` exits 3 and prints its log tail."""
    pgdata = private_stack.config.paths.pgdata
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")  # looks initialised, is not: postgres exits
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        for path in (pgdata, pgdata / "PG_VERSION"):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    pgdata.chmod(0o700)

    result = CliRunner().invoke(
        app, ["stack", "up", "--only", "postgres"], env=cli_env(private_stack)
    )

    text = normalised(result.output)
    assert result.exit_code == 3, text
    assert "postgres could not start" in text
    assert "last lines of postgres log" in text
    log_tail = (private_stack.config.paths.logs / "postgres.log").read_text().splitlines()[-1]
    assert normalised(log_tail) in text
    assert private_stack.stack.records() == {}


def test_a_missing_program_names_the_install_command(private_stack: StackHandle) -> None:
    """With no programs in RESILIENCE_HOME, `up` raises DependencyUnavailable naming the installer."""
    empty_home = private_stack.state / "empty-home"
    config = private_stack.config.model_copy(
        update={"paths": private_stack.config.paths.model_copy(update={"home": empty_home})}
    )
    with pytest.raises(StackError, match="resilience stack install"):
        Stack(config).up(components=["toxiproxy"])
