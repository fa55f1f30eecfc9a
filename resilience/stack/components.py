"""The stack's components: how each is prepared, started, probed, completed and stopped.

A ``Component`` is a small base class whose hooks have sensible empty bodies; each
program overrides only what it needs. The supervisor (``supervisor.Stack``) owns the
order, the records and the deadlines; components own the knowledge of their program.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx

import resilience
from resilience.errors import DependencyUnavailable, StackError
from resilience.stack import versions
from resilience.stack._process import Launch, RunAs, is_alive, stop_group, tail
from resilience.stack.config import Ports, StackConfig
from resilience.stack.credentials import database_password, fingerprint, scram_verifier
from resilience.stack.generate import (
    DATABASE_NAME,
    DATABASE_ROLE,
    SHOP_METRICS_PORTS,
    jaeger_config,
    prometheus_config,
    prometheus_flags,
    shop_env,
    to_yaml,
    toxiproxy_config,
)
from resilience.stack.programs import INSTALL_COMMAND, JAEGER_BUILD, TOXIPROXY_BUILD, Programs
from resilience.stack.state import ComponentRecord

logger = logging.getLogger(__name__)

Kind = Literal["infra", "shop"]


@dataclass
class Context:
    """What components need while the supervisor works: config, programs, HTTP, shop mode."""

    config: StackConfig
    programs: Programs
    http: httpx.Client
    shop_mode: str = "fragile"
    shop_options: dict[str, str] = field(default_factory=dict)
    separate_shop_metrics: bool = False
    """The shop (running, or about to run) serves /metrics on its own ports."""
    scrape_jobs: dict[str, str] = field(default_factory=dict)
    """Experiments' own scrape jobs (``observe.scrape``) Prometheus scrapes too."""
    send_signal: Callable[[int, int], None] = os.kill
    """How a signal reaches a recorded process (a fake in unit tests)."""

    def log(self, component: str) -> Path:
        return self.config.paths.logs / f"{component}.log"


class Component:
    """One supervised program. Subclasses set ``name`` and override the hooks they need."""

    name: str = ""
    kind: Kind = "infra"
    needs: tuple[str, ...] = ()
    """Components that must be healthy before this one starts (when they are started too)."""
    start_timeout: float = 30.0

    def ports(self, ports: Ports) -> dict[str, int]:
        """Every port the program may bind (the first is its main port)."""
        return {self.name: getattr(ports, self.name)}

    def bound_ports(self, ctx: Context) -> dict[str, int]:
        """The ports this start binds, with ``ctx``'s options (checked free, recorded)."""
        return self.ports(ctx.config.ports)

    def check_programs(self, ctx: Context) -> None:
        """Raise DependencyUnavailable if a program it runs is missing."""

    def prepare(self, ctx: Context) -> None:
        """Write configuration, create directories; runs before every start."""

    def launch(self, ctx: Context) -> Launch:
        raise NotImplementedError

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        """One quick health probe: None when healthy, else what is wrong."""
        raise NotImplementedError

    def ensure(self, ctx: Context) -> None:
        """Complete the component once healthy (idempotent; also runs when already up)."""

    def version(self, ctx: Context) -> str:
        return "unknown"

    def stop(self, ctx: Context, record: ComponentRecord) -> bool:
        """Stop the recorded process; True when nothing of it is left."""
        return stop_group(record.pgid)

    def refresh(self, ctx: Context, record: ComponentRecord) -> None:
        """Bring the running program (``record``) in line with the others (after every ``up``)."""


def _http_probe(ctx: Context, url: str) -> str | None:
    try:
        response = ctx.http.get(url)
    except httpx.HTTPError as exc:
        return f"GET {url}: {exc.__class__.__name__}"
    if response.status_code != 200:
        return f"GET {url}: HTTP {response.status_code}"
    return None


def _base_env() -> dict[str, str]:
    # Inherited SHOP_* variables would leak a caller's settings into the services.
    return {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}


HBA_CONF: Final = """\
# Written by resilience at every start of the stack's PostgreSQL: every connection, over
# TCP or the Unix socket, needs the password (<state>/postgres.password).
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""
_AUTH_MARKER = "resilience-auth"
"""In pgdata: the fingerprint of the password the superuser was last given."""
_SOCKET_PATH_MAX = 107
"""sun_path holds 108 bytes with the terminating NUL."""


class Postgres(Component):
    """PostgreSQL in its own cluster (<state>/pgdata), as the postgres user when we are root.

    Every connection authenticates with scram-sha-256, the Unix socket's included; the
    password lives in the state directory (``credentials``). A new cluster is created with
    trust authentication but never started so: the superuser gets its password in
    single-user mode and pg_hba.conf is ours before the first start. A running cluster of an
    older release (trust) is brought in line by ``ensure``.
    """

    name = "postgres"
    start_timeout = 60.0
    initdb_timeout = 180.0

    def run_as(self) -> RunAs | None:
        if os.geteuid() != 0:
            return None
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise DependencyUnavailable(
                "PostgreSQL refuses to run as root and there is no `postgres` OS user",
                fix=INSTALL_COMMAND,
                component=self.name,
            ) from None
        return RunAs(name=user.pw_name, uid=user.pw_uid, gid=user.pw_gid)

    def check_programs(self, ctx: Context) -> None:
        for tool in ("postgres", "initdb", "pg_ctl", "pg_isready", "psql"):
            ctx.programs.require(
                ctx.programs.postgres(tool), f"PostgreSQL's {tool}", component=self.name
            )
        self.run_as()

    def prepare(self, ctx: Context) -> None:
        pgdata = ctx.config.paths.pgdata
        run_as = self.run_as()
        if run_as is not None:
            _check_reachable(pgdata.parent, run_as)
        password = database_password(ctx.config.paths.database_password)
        if not (pgdata / "PG_VERSION").is_file():
            self._initdb(ctx, run_as)
        if self._marker(ctx) != fingerprint(password) or self._hba_text(ctx) != HBA_CONF:
            self._set_superuser_password(ctx, run_as, password)
        self._write_owned(pgdata / "pg_hba.conf", HBA_CONF, run_as)
        socket_dir = self.socket_dir(ctx)
        if socket_dir is not None:
            socket_dir.mkdir(exist_ok=True)
            if run_as is not None:
                os.chown(socket_dir, run_as.uid, run_as.gid)
            # Others may reach the socket (as they may reach the port): the password guards both.
            socket_dir.chmod(0o711)

    def socket_dir(self, ctx: Context) -> Path | None:
        """The Unix socket's directory, or None when its path would be too long for one."""
        directory = ctx.config.paths.pgsock
        socket = f"{directory}/.s.PGSQL.{ctx.config.ports.postgres}"
        return directory if len(os.fsencode(socket)) <= _SOCKET_PATH_MAX else None

    def _marker(self, ctx: Context) -> str:
        try:
            return (ctx.config.paths.pgdata / _AUTH_MARKER).read_text().strip()
        except OSError:
            return ""

    def _hba_text(self, ctx: Context) -> str:
        try:
            return (ctx.config.paths.pgdata / "pg_hba.conf").read_text()
        except OSError:
            return ""

    def _write_owned(self, path: Path, text: str, run_as: RunAs | None) -> None:
        path.write_text(text)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)
        path.chmod(0o600)

    def _as_postgres(
        self, ctx: Context, argv: list[str], *, what: str, timeout: float, stdin: str | None = None
    ) -> None:
        """Run a PostgreSQL tool as the cluster's user, its output into the component's log."""
        run_as = self.run_as()
        log = ctx.log(self.name)
        start = log.stat().st_size if log.exists() else 0
        try:
            with log.open("ab") as out:
                done = subprocess.run(
                    argv,
                    input=stdin.encode() if stdin is not None else None,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ctx.config.paths.state,
                    timeout=timeout,
                    check=False,
                    user=run_as.uid if run_as else None,
                    group=run_as.gid if run_as else None,
                    extra_groups=[] if run_as else None,
                )
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"{self.name} could not start: {what} did not finish within {timeout:.0f}s",
                component=self.name,
                log_tail=tail(log, start=start),
            ) from exc
        if done.returncode != 0:
            raise StackError(
                f"{self.name} could not start: {what} failed (exit {done.returncode}) for "
                f"{ctx.config.paths.pgdata}",
                component=self.name,
                log_tail=tail(log, start=start),
            )

    def _initdb(self, ctx: Context, run_as: RunAs | None) -> None:
        pgdata = ctx.config.paths.pgdata
        pgdata.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(pgdata, run_as.uid, run_as.gid)
        pgdata.chmod(0o700)
        argv = [
            str(ctx.programs.postgres("initdb")),
            "-D", str(pgdata),
            "-U", "postgres",
            # Never started so: prepare() sets the password and pg_hba.conf first.
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        logger.info("initialising a PostgreSQL cluster in %s", pgdata)
        self._as_postgres(ctx, argv, what="initdb", timeout=self.initdb_timeout)

    def _set_superuser_password(self, ctx: Context, run_as: RunAs | None, password: str) -> None:
        """Give the superuser the password in single-user mode (the server is not running)."""
        argv = [
            str(ctx.programs.postgres("postgres")),
            "--single", "-D", str(ctx.config.paths.pgdata),
            "-c", "exit_on_error=true",
            "postgres",
        ]  # fmt: skip
        statement = f"ALTER ROLE postgres PASSWORD '{scram_verifier(password)}';\n"
        logger.info("setting the PostgreSQL superuser's password (single-user mode)")
        self._as_postgres(
            ctx, argv, what="setting the superuser's password", timeout=60, stdin=statement
        )
        marker = ctx.config.paths.pgdata / _AUTH_MARKER
        self._write_owned(marker, fingerprint(password) + "\n", run_as)

    def launch(self, ctx: Context) -> Launch:
        socket_dir = self.socket_dir(ctx)
        if socket_dir is None:
            logger.info("the state directory's path is too long for a Unix socket: TCP only")
        argv = [
            str(ctx.programs.postgres("postgres")),
            "-D", str(ctx.config.paths.pgdata),
            "-p", str(ctx.config.ports.postgres),
            "-c", f"listen_addresses={ctx.config.host}",
            # In the state directory: no collision with another cluster's socket.
            "-c", f"unix_socket_directories={socket_dir or ''}",
            "-c", "password_encryption=scram-sha-256",
            # Evidence for a slow database that is not a fault's: statements over 250 ms and
            # lock waits over 300 ms are logged with their blocker (logs/postgres.log). Seen:
            # INSERTs stalled > 0.9 s six seconds after a healed fault, cause unknown.
            "-c", "log_min_duration_statement=250",
            "-c", "log_lock_waits=on",
            "-c", "deadlock_timeout=300ms",
        ]  # fmt: skip
        return Launch(
            argv=argv,
            log=ctx.log(self.name),
            cwd=ctx.config.paths.state,
            env={**_base_env(), "LC_ALL": "C"},
            run_as=self.run_as(),
        )

    def _client_env(self, ctx: Context) -> dict[str, str]:
        """Environment for our own psql and pg_isready: the password, a connect timeout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = database_password(ctx.config.paths.database_password)
        env["PGCONNECT_TIMEOUT"] = "5"
        return env

    def _psql(self, ctx: Context, sql: str, *, database: str = "postgres") -> str:
        argv = [
            str(ctx.programs.postgres("psql")),
            "-h", ctx.config.host,
            "-p", str(ctx.config.ports.postgres),
            "-U", "postgres",
            "-d", database,
            "-w", "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-f", "-",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                input=sql,
                capture_output=True,
                text=True,
                timeout=30,
                env=self._client_env(ctx),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError("psql did not answer within 30s", component=self.name) from exc
        if done.returncode != 0:
            raise StackError(f"psql failed: {done.stderr.strip()}", component=self.name)
        return done.stdout

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        argv = [
            str(ctx.programs.postgres("pg_isready")),
            "-h", ctx.config.host,
            "-p", str(ctx.config.ports.postgres),
            "-U", "postgres",
            "-d", "postgres",
            "-t", "2",
        ]  # fmt: skip
        try:
            # With the password: without it every probe is a failed login in the server log.
            env = self._client_env(ctx)
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=5, check=False, env=env
            )
        except (OSError, subprocess.TimeoutExpired, StackError) as exc:
            return f"pg_isready: {exc}"
        return None if done.returncode == 0 else f"pg_isready: {done.stdout.strip()}"

    def ensure(self, ctx: Context) -> None:
        password = database_password(ctx.config.paths.database_password)
        # Verifiers, not the password: no statement (or server log line) carries it. The
        # superuser's is set again for a cluster that an older release started with trust.
        self._psql(
            ctx,
            f"ALTER ROLE postgres PASSWORD '{scram_verifier(password)}';\n"
            f"SELECT 'CREATE ROLE {DATABASE_ROLE} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{DATABASE_ROLE}')\\gexec\n"
            f"ALTER ROLE {DATABASE_ROLE} PASSWORD '{scram_verifier(password)}';\n"
            f"SELECT 'CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n",
        )
        if self._hba_text(ctx) != HBA_CONF:
            self._write_owned(ctx.config.paths.pgdata / "pg_hba.conf", HBA_CONF, self.run_as())
            self._psql(ctx, "SELECT pg_reload_conf();")
            logger.info("PostgreSQL now asks every connection for the password")
        marker = ctx.config.paths.pgdata / _AUTH_MARKER
        if self._marker(ctx) != fingerprint(password):
            self._write_owned(marker, fingerprint(password) + "\n", self.run_as())

    def version(self, ctx: Context) -> str:
        return self._psql(ctx, "SHOW server_version;").strip() or "unknown"

    def stop(self, ctx: Context, record: ComponentRecord) -> bool:
        run_as = self.run_as()
        argv = [
            str(ctx.programs.postgres("pg_ctl")),
            "stop", "-D", str(ctx.config.paths.pgdata), "-m", "fast", "-w", "-t", "30",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=40,
                cwd=ctx.config.paths.state,
                check=False,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
            if done.returncode != 0:
                logger.warning("pg_ctl stop failed: %s", done.stderr.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("pg_ctl stop failed: %s", exc)
        # pg_ctl returns when the postmaster is gone; anything left gets the signals.
        return stop_group(record.pgid)


def unreachable_parent(directory: Path, uid: int, gid: int) -> Path | None:
    """The first of ``directory`` and its parents that user ``uid`` cannot traverse."""
    directory = directory.resolve()
    for part in [directory, *directory.parents]:
        if not part.exists():
            continue
        info = part.stat()
        if info.st_uid == uid or info.st_mode & 0o001:
            continue
        if info.st_gid == gid and info.st_mode & 0o010:
            continue
        return part
    return None


def _check_reachable(directory: Path, run_as: RunAs) -> None:
    """PostgreSQL's user must traverse every parent of its data directory."""
    blocked = unreachable_parent(directory, run_as.uid, run_as.gid)
    if blocked is not None:
        mode = oct(blocked.stat().st_mode & 0o777)
        raise StackError(
            f"the {run_as.name} user cannot reach {blocked} (mode {mode}); PostgreSQL keeps "
            f"its data under {directory}. Use a state directory it can reach "
            "(RESILIENCE_STATE_DIR, not under /root or a 0700 temporary directory) or "
            f"`chmod o+x {blocked}`",
            component="postgres",
        )


class Toxiproxy(Component):
    """Toxiproxy with its metrics on, and the stack's proxies created through its API."""

    name = "toxiproxy"

    def ports(self, ports: Ports) -> dict[str, int]:
        return {
            "toxiproxy": ports.toxiproxy,
            "postgres_proxy": ports.postgres_proxy,
            "orders_proxy": ports.orders_proxy,
            "catalog_proxy": ports.catalog_proxy,
        }

    def check_programs(self, ctx: Context) -> None:
        ctx.programs.require(ctx.programs.toxiproxy, "toxiproxy-server", component=self.name)

    def launch(self, ctx: Context) -> Launch:
        argv = [
            str(ctx.programs.toxiproxy),
            "-host", ctx.config.host,
            "-port", str(ctx.config.ports.toxiproxy),
            "-proxy-metrics",
            "-runtime-metrics",
        ]  # fmt: skip
        # Toxiproxy logs every API request at debug level, Prometheus' scrapes included.
        env = {**_base_env(), "LOG_LEVEL": "info"}
        return Launch(argv=argv, log=ctx.log(self.name), cwd=ctx.config.paths.state, env=env)

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        return _http_probe(ctx, f"{ctx.config.toxiproxy_url}/version")

    def ensure(self, ctx: Context) -> None:
        base = ctx.config.toxiproxy_url
        try:
            existing = ctx.http.get(f"{base}/proxies").raise_for_status().json()
            for proxy in toxiproxy_config(ctx.config.ports):
                current = existing.get(proxy["name"])
                if current is None:
                    ctx.http.post(f"{base}/proxies", json=proxy).raise_for_status()
                    logger.info("created proxy %s", proxy["name"])
                elif (current["listen"], current["upstream"]) != (
                    proxy["listen"],
                    proxy["upstream"],
                ):
                    # Leave `enabled` alone: a disabled proxy is a fault the sweeper owns.
                    update = {"listen": proxy["listen"], "upstream": proxy["upstream"]}
                    ctx.http.post(f"{base}/proxies/{proxy['name']}", json=update).raise_for_status()
                    logger.info("updated proxy %s", proxy["name"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise StackError(
                f"could not create the stack's proxies through {base}: {exc}", component=self.name
            ) from exc

    def version(self, ctx: Context) -> str:
        if ctx.programs.is_current(TOXIPROXY_BUILD):
            return TOXIPROXY_BUILD.version
        return ctx.programs.installed_version(TOXIPROXY_BUILD)


class Jaeger(Component):
    """Jaeger v2 from a generated configuration: OTLP in, memory storage, query API."""

    name = "jaeger"
    start_timeout = 60.0

    def ports(self, ports: Ports) -> dict[str, int]:
        p = ports
        return {
            "jaeger_query": p.jaeger_query,
            "jaeger_query_grpc": p.jaeger_query_grpc,
            "jaeger_otlp_grpc": p.jaeger_otlp_grpc,
            "jaeger_otlp_http": p.jaeger_otlp_http,
            "jaeger_health": p.jaeger_health,
            "jaeger_metrics": p.jaeger_metrics,
        }

    def config_file(self, ctx: Context) -> Path:
        return ctx.config.paths.etc / "jaeger.yaml"

    def check_programs(self, ctx: Context) -> None:
        ctx.programs.require(ctx.programs.jaeger, "jaeger", component=self.name)

    def prepare(self, ctx: Context) -> None:
        ctx.config.paths.etc.mkdir(parents=True, exist_ok=True)
        self.config_file(ctx).write_text(to_yaml(jaeger_config(ctx.config.ports)))

    def launch(self, ctx: Context) -> Launch:
        argv = [str(ctx.programs.jaeger), "--config", str(self.config_file(ctx))]
        env = _base_env()
        # Jaeger traces its own query API and exports those spans to localhost:4317 by
        # default: into itself (default ports) or nowhere (offset ports, ~10 s stall at
        # shutdown). Neither is wanted: the store holds the target's traces only.
        env["OTEL_TRACES_SAMPLER"] = "always_off"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = ctx.config.url("jaeger_otlp_http")
        return Launch(argv=argv, log=ctx.log(self.name), cwd=ctx.config.paths.state, env=env)

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        return _http_probe(ctx, f"{ctx.config.url('jaeger_health')}/status")

    def version(self, ctx: Context) -> str:
        if ctx.programs.is_current(JAEGER_BUILD):
            return f"{versions.JAEGER_RELEASE} (module {versions.JAEGER_VERSION})"
        return ctx.programs.installed_version(JAEGER_BUILD)


_RELOAD_METRICS: Final = (
    "prometheus_config_last_reload_success_timestamp_seconds",
    "prometheus_config_last_reload_successful",
)


class Prometheus(Component):
    """Prometheus scraping Toxiproxy, Jaeger and the shop every second."""

    name = "prometheus"
    reload_timeout = 10.0

    def config_file(self, ctx: Context) -> Path:
        return ctx.config.paths.etc / "prometheus.yml"

    def check_programs(self, ctx: Context) -> None:
        ctx.programs.require(ctx.programs.prometheus, "prometheus", component=self.name)

    def prepare(self, ctx: Context) -> None:
        ctx.config.paths.etc.mkdir(parents=True, exist_ok=True)
        (ctx.config.paths.state / "prometheus").mkdir(parents=True, exist_ok=True)
        self.config_file(ctx).write_text(self._config_text(ctx))

    def _config_text(self, ctx: Context) -> str:
        return to_yaml(
            prometheus_config(
                ctx.config.ports,
                separate_shop_metrics=ctx.separate_shop_metrics,
                extra_jobs=ctx.scrape_jobs,
            )
        )

    def refresh(self, ctx: Context, record: ComponentRecord) -> None:
        """Scrape the shop where its metrics are now: rewrite prometheus.yml and reload."""
        text = self._config_text(ctx)
        path = self.config_file(ctx)
        if path.is_file() and path.read_text() == text:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise StackError(f"could not write {path}: {exc}", component=self.name) from exc
        self._reload(ctx, record, path)
        logger.info(
            "prometheus now scrapes the shop's /metrics on its %s ports%s",
            "metrics" if ctx.separate_shop_metrics else "app",
            f" and {', '.join(sorted(ctx.scrape_jobs))}" if ctx.scrape_jobs else "",
        )

    def _reload(self, ctx: Context, record: ComponentRecord, path: Path) -> None:
        """SIGHUP, then wait until Prometheus says it read the file (its HTTP lifecycle API,
        which would also let any local user stop it, is off)."""
        before = self._reload_state(ctx)
        if before is None or not is_alive(record.pid, record.start_ticks):
            raise StackError(
                f"cannot reload Prometheus' configuration ({path}): pid {record.pid} does not "
                f"answer on {ctx.config.prometheus_url}/metrics",
                component=self.name,
            )
        ctx.send_signal(record.pid, signal.SIGHUP)
        deadline = time.monotonic() + self.reload_timeout
        while True:
            state = self._reload_state(ctx)
            if state is not None and state[1] == 0:
                raise StackError(
                    f"Prometheus refused its new configuration ({path}); see its log",
                    component=self.name,
                    log_tail=tail(ctx.log(self.name)),
                )
            if state is not None and state != before:
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    f"Prometheus did not reload {path} within {self.reload_timeout:.0f}s of SIGHUP",
                    component=self.name,
                )
            time.sleep(0.05)

    def _reload_state(self, ctx: Context) -> tuple[float, float] | None:
        """(time of the last successful reload, whether the last reload succeeded), from
        Prometheus' own /metrics; None when it does not answer."""
        url = f"{ctx.config.prometheus_url}/metrics"
        try:
            response = ctx.http.get(url)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        values: dict[str, float] = {}
        for line in response.text.splitlines():
            name, _, value = line.partition(" ")
            if name in _RELOAD_METRICS:
                try:
                    values[name] = float(value)
                except ValueError:
                    return None
        if len(values) != len(_RELOAD_METRICS):
            return None
        return values[_RELOAD_METRICS[0]], values[_RELOAD_METRICS[1]]

    def launch(self, ctx: Context) -> Launch:
        argv = [
            str(ctx.programs.prometheus),
            *prometheus_flags(
                str(self.config_file(ctx)),
                str(ctx.config.paths.state / "prometheus"),
                f"{ctx.config.host}:{ctx.config.ports.prometheus}",
            ),
        ]
        return Launch(
            argv=argv, log=ctx.log(self.name), cwd=ctx.config.paths.state, env=_base_env()
        )

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        return _http_probe(ctx, f"{ctx.config.prometheus_url}/-/ready")

    def version(self, ctx: Context) -> str:
        try:
            done = subprocess.run(
                [str(ctx.programs.prometheus), "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        # "prometheus, version 2.42.0+ds (branch: ...)"
        words = (done.stdout or done.stderr).split()
        return words[2] if len(words) > 2 and words[1] == "version" else "unknown"


class ShopService(Component):
    """One service of the reference shop: ``python -m resilience.shop SERVICE``."""

    kind: Kind = "shop"

    def __init__(self, service: str, needs: tuple[str, ...]) -> None:
        self.name = service
        self.needs = needs

    def ports(self, ports: Ports) -> dict[str, int]:
        return {
            self.name: getattr(ports, self.name),
            SHOP_METRICS_PORTS[self.name]: getattr(ports, SHOP_METRICS_PORTS[self.name]),
        }

    def bound_ports(self, ctx: Context) -> dict[str, int]:
        ports = self.ports(ctx.config.ports)
        if not ctx.separate_shop_metrics:
            del ports[SHOP_METRICS_PORTS[self.name]]
        return ports

    def check_programs(self, ctx: Context) -> None:
        if importlib.util.find_spec("resilience.shop.__main__") is None:
            raise DependencyUnavailable(
                "the reference shop (resilience.shop) is not part of this installation",
                fix="pip install -e '.[shop]' from a checkout of resilience",
                component=self.name,
            )

    def launch(self, ctx: Context) -> Launch:
        env = _base_env()
        env.update(
            shop_env(
                self.name,
                mode=ctx.shop_mode,
                options=ctx.shop_options,
                ports=ctx.config.ports,
                separate_metrics=ctx.separate_shop_metrics,
                database_password=database_password(ctx.config.paths.database_password),
            )
        )
        # The services import the same resilience code as the supervisor that starts them.
        source = str(Path(resilience.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "resilience.shop", self.name]
        return Launch(argv=argv, log=ctx.log(self.name), cwd=ctx.config.paths.state, env=env)

    def probe(self, ctx: Context, record: ComponentRecord | None = None) -> str | None:
        url = f"{ctx.config.url(self.name)}/health"
        expected = record.mode if record is not None else ctx.shop_mode
        try:
            response = ctx.http.get(url)
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            return f"GET {url}: {exc.__class__.__name__}"
        if response.status_code != 200:
            return f"GET {url}: HTTP {response.status_code}"
        if body.get("status") != "ok" or body.get("mode") != expected:
            return f"GET {url}: {body!r} (expected status ok, mode {expected})"
        return None

    def version(self, ctx: Context) -> str:
        return resilience.__version__


INFRA: tuple[Component, ...] = (Postgres(), Toxiproxy(), Jaeger(), Prometheus())
SHOP: tuple[Component, ...] = (
    ShopService("catalog", needs=("toxiproxy",)),
    ShopService("orders", needs=("postgres", "toxiproxy")),
    ShopService("gateway", needs=("toxiproxy", "catalog", "orders")),
)
COMPONENTS: tuple[Component, ...] = INFRA + SHOP
"""Every component in start order; stop order is the reverse."""

COMPONENT_NAMES: tuple[str, ...] = tuple(c.name for c in COMPONENTS)
GROUPS: dict[str, tuple[str, ...]] = {
    "all": COMPONENT_NAMES,
    "infra": tuple(c.name for c in INFRA),
    "shop": tuple(c.name for c in SHOP),
}


def by_name(name: str) -> Component:
    for component in COMPONENTS:
        if component.name == name:
            return component
    raise KeyError(name)


def start_waves(names: Iterable[str]) -> list[list[Component]]:
    """``names`` grouped into waves that can start together, each after the previous."""
    pending = [c for c in COMPONENTS if c.name in set(names)]
    waves: list[list[Component]] = []
    placed: set[str] = set()
    while pending:
        names_pending = {c.name for c in pending}
        wave = [c for c in pending if not (set(c.needs) & names_pending)]
        if not wave:  # a dependency cycle would be a bug in the table above
            raise ValueError(f"circular needs among {sorted(names_pending)}")
        waves.append(wave)
        placed.update(c.name for c in wave)
        pending = [c for c in pending if c.name not in placed]
    return waves
