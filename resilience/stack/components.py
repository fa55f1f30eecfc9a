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
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

import resilience
from resilience.errors import DependencyUnavailable, StackError
from resilience.stack import versions
from resilience.stack._process import Launch, RunAs, stop_group, tail
from resilience.stack.config import Ports, StackConfig
from resilience.stack.generate import (
    DATABASE_NAME,
    DATABASE_ROLE,
    SHOP_METRICS_PORTS,
    jaeger_config,
    prometheus_config,
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

    def refresh(self, ctx: Context) -> None:
        """Bring a running program in line with the others (after every ``up``)."""


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


class Postgres(Component):
    """PostgreSQL in its own cluster (<state>/pgdata), as the postgres user when we are root."""

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
        if (pgdata / "PG_VERSION").is_file():
            return
        pgdata.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(pgdata, run_as.uid, run_as.gid)
        pgdata.chmod(0o700)
        log = ctx.log(self.name)
        start = log.stat().st_size if log.exists() else 0
        argv = [
            str(ctx.programs.postgres("initdb")),
            "-D", str(pgdata),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        logger.info("initialising a PostgreSQL cluster in %s", pgdata)
        try:
            with log.open("ab") as out:
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ctx.config.paths.state,
                    timeout=self.initdb_timeout,
                    check=False,
                    user=run_as.uid if run_as else None,
                    group=run_as.gid if run_as else None,
                    extra_groups=[] if run_as else None,
                )
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"initdb did not finish within {self.initdb_timeout:.0f}s",
                component=self.name,
                log_tail=tail(log, start=start),
            ) from exc
        if done.returncode != 0:
            raise StackError(
                f"initdb failed (exit {done.returncode}) for {pgdata}",
                component=self.name,
                log_tail=tail(log, start=start),
            )

    def launch(self, ctx: Context) -> Launch:
        argv = [
            str(ctx.programs.postgres("postgres")),
            "-D", str(ctx.config.paths.pgdata),
            "-p", str(ctx.config.ports.postgres),
            "-c", f"listen_addresses={ctx.config.host}",
            # TCP only: no socket files to collide with another cluster or to clean up.
            "-c", "unix_socket_directories=",
        ]  # fmt: skip
        return Launch(
            argv=argv,
            log=ctx.log(self.name),
            cwd=ctx.config.paths.state,
            env={**_base_env(), "LC_ALL": "C"},
            run_as=self.run_as(),
        )

    def _psql(self, ctx: Context, sql: str, *, database: str = "postgres") -> str:
        argv = [
            str(ctx.programs.postgres("psql")),
            "-h", ctx.config.host,
            "-p", str(ctx.config.ports.postgres),
            "-U", "postgres",
            "-d", database,
            "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-f", "-",
        ]  # fmt: skip
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
        try:
            done = subprocess.run(
                argv, input=sql, capture_output=True, text=True, timeout=30, env=env, check=False
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
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"pg_isready: {exc}"
        return None if done.returncode == 0 else f"pg_isready: {done.stdout.strip()}"

    def ensure(self, ctx: Context) -> None:
        self._psql(
            ctx,
            f"SELECT 'CREATE ROLE {DATABASE_ROLE} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{DATABASE_ROLE}')\\gexec\n"
            f"SELECT 'CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n",
        )

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


class Prometheus(Component):
    """Prometheus scraping Toxiproxy, Jaeger and the shop every second."""

    name = "prometheus"

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
            prometheus_config(ctx.config.ports, separate_shop_metrics=ctx.separate_shop_metrics)
        )

    def refresh(self, ctx: Context) -> None:
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
        url = f"{ctx.config.prometheus_url}/-/reload"
        try:
            ctx.http.post(url).raise_for_status()
        except httpx.HTTPError as exc:
            raise StackError(
                f"could not reload Prometheus' configuration ({path}): POST {url}: {exc}",
                component=self.name,
            ) from exc
        logger.info(
            "prometheus now scrapes the shop's /metrics on its %s ports",
            "metrics" if ctx.separate_shop_metrics else "app",
        )

    def launch(self, ctx: Context) -> Launch:
        argv = [
            str(ctx.programs.prometheus),
            f"--config.file={self.config_file(ctx)}",
            f"--storage.tsdb.path={ctx.config.paths.state / 'prometheus'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address={ctx.config.host}:{ctx.config.ports.prometheus}",
            "--web.enable-lifecycle",
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
