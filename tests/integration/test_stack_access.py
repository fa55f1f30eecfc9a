"""Who can reach the stack: PostgreSQL asks every connection for the password (scram-sha-256),
TCP and Unix socket alike, and Prometheus cannot be stopped or reloaded over HTTP.

The psql tests run as another local user (``nobody``, through ``runuser``, so root only)
with a clean environment: no PGPASSWORD, no ~/.pgpass.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from resilience.stack._process import is_alive
from resilience.stack.programs import Programs
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def psql_as_nobody(
    handle: StackHandle,
    host: str,
    *,
    user: str = "postgres",
    database: str = "postgres",
    password: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`select 1` through psql as the OS user nobody, with ``password`` or none at all."""
    psql = Programs(handle.config).postgres("psql")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/nonexistent",
        "PGCONNECT_TIMEOUT": "5",
    }
    if password is not None:
        env["PGPASSWORD"] = password
    argv = [
        RUNUSER, "-u", "nobody", "--", str(psql), "-w", "-X", "-A", "-t",
        "-h", host, "-p", str(handle.config.ports.postgres), "-U", user, "-d", database,
        "-c", "select 1",
    ]  # fmt: skip
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


def socket_dir(handle: StackHandle) -> str:
    """The cluster's Unix socket directory, checked to hold the socket (so a refusal there
    comes from authentication, not from a missing socket)."""
    directory = handle.config.paths.pgsock
    assert (directory / f".s.PGSQL.{handle.config.ports.postgres}").is_socket()
    return str(directory)


@needs_root
@pytest.mark.parametrize("where", ["tcp", "socket"])
@pytest.mark.parametrize(("user", "database"), [("postgres", "postgres"), ("resilience", "shop")])
def test_psql_without_the_password_is_refused(
    infra_stack: StackHandle, where: str, user: str, database: str
) -> None:
    """Another local user gets no session without the password, over TCP or the socket;
    with a wrong one neither; with the stack's password, yes."""
    host = "127.0.0.1" if where == "tcp" else socket_dir(infra_stack)

    refused = psql_as_nobody(infra_stack, host, user=user, database=database)
    assert refused.returncode != 0, refused.stdout
    assert "no password supplied" in refused.stderr, refused.stderr

    wrong = psql_as_nobody(infra_stack, host, user=user, database=database, password="guess")
    assert wrong.returncode != 0, wrong.stdout
    assert "password authentication failed" in wrong.stderr, wrong.stderr

    right = psql_as_nobody(
        infra_stack, host, user=user, database=database, password=infra_stack.database_password
    )
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "1"


def test_the_password_file_is_private(infra_stack: StackHandle) -> None:
    """The password lives in the state directory, mode 0600, owned by the stack's user."""
    path = infra_stack.config.paths.database_password
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert len(infra_stack.database_password) >= 32


def test_prometheus_refuses_to_quit_or_reload_over_http(
    infra_stack: StackHandle, http: httpx.Client
) -> None:
    """Without --web.enable-lifecycle, POST /-/quit and /-/reload are refused (403) and
    Prometheus keeps running and answering."""
    record = infra_stack.stack.records()["prometheus"]
    for endpoint in ("/-/quit", "/-/reload"):
        response = http.post(f"{infra_stack.prometheus_url}{endpoint}")
        assert response.status_code == 403, (endpoint, response.status_code, response.text)
        assert "Lifecycle API is not enabled" in response.text
    assert http.get(f"{infra_stack.prometheus_url}/-/ready").status_code == 200
    assert is_alive(record.pid, record.start_ticks)


def test_the_password_survives_a_restart(private_stack: StackHandle) -> None:
    """Made at the first start, the password is the same after down and up, and still works."""
    private_stack.stack.up(components=["postgres"])
    first = private_stack.database_password
    private_stack.stack.down(["postgres"])
    private_stack.stack.up(components=["postgres"])
    assert private_stack.database_password == first
    if os.geteuid() == 0:
        done = psql_as_nobody(private_stack, "127.0.0.1", password=first)
        assert done.returncode == 0, done.stderr


@needs_root
def test_a_cluster_left_with_trust_is_secured_stopped_or_running(
    private_stack: StackHandle,
) -> None:
    """A cluster an older release made (trust, no passwords) asks for the password after
    the next `up`: at start (single-user mode, before it listens) or, already running,
    by `up`'s completion step (pg_hba.conf rewritten, configuration reloaded)."""
    paths = private_stack.config.paths
    trust = "local all all trust\nhost all all 127.0.0.1/32 trust\n"

    def make_it_old() -> None:
        (paths.pgdata / "pg_hba.conf").write_text(trust)
        (paths.pgdata / "resilience-auth").unlink()

    private_stack.stack.up(components=["postgres"])
    password = private_stack.database_password

    private_stack.stack.down(["postgres"])
    make_it_old()
    private_stack.stack.up(components=["postgres"])
    assert "no password supplied" in psql_as_nobody(private_stack, "127.0.0.1").stderr

    make_it_old()
    reload = psql_as_nobody(private_stack, "127.0.0.1", password=password)
    assert reload.returncode == 0
    subprocess.run(
        [RUNUSER, "-u", "postgres", "--", str(Programs(private_stack.config).postgres("pg_ctl")),
         "reload", "-D", str(paths.pgdata)],
        check=True, capture_output=True, timeout=30, cwd="/",
    )  # fmt: skip
    assert psql_as_nobody(private_stack, "127.0.0.1").returncode == 0  # trust again, running
    private_stack.stack.up(components=["postgres"])
    assert "no password supplied" in psql_as_nobody(private_stack, "127.0.0.1").stderr
    assert private_stack.database_password == password
