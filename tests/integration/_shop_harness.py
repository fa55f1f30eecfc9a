"""Start and stop the real programs the shop's integration tests need, owned by the tests.

PostgreSQL (as the ``postgres`` user, data in ``$RESILIENCE_STATE_DIR/pgdata``),
Toxiproxy with the stack's three proxies, Jaeger v2 with in-memory storage, and the shop
services as ``python -m resilience.shop SERVICE`` with ``SHOP_*`` env vars, exactly as the
stack supervisor will run them. Every process runs in its own session and is stopped by
killing its process group, never by name. Ports come from ``Ports`` shifted by
``RESILIENCE_PORT_OFFSET`` (default 200 here) so these tests can run beside other stacks.

Meant to be replaced by the stack supervisor's fixture once that exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from resilience.stack.config import Ports
from resilience.stack.topology import stack_proxies

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("RESILIENCE_HOME", "/var/lib/resilience")) / "bin"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEFAULT_OFFSET = 200
DEFAULT_STATE = "/tmp/res-shop"
HTTP_TIMEOUT = 5.0


def port_offset() -> int:
    return int(os.environ.get("RESILIENCE_PORT_OFFSET") or DEFAULT_OFFSET)


def state_dir() -> Path:
    path = Path(os.environ.get("RESILIENCE_STATE_DIR") or DEFAULT_STATE)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the postgres user must reach pgdata inside it
    return path


def ports() -> Ports:
    return Ports().shifted(port_offset())


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout} s (last error: {last_error!r})")


@dataclass
class Proc:
    """A process we started, in its own session, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 8.0) -> int | None:
        """Signal our process group, then SIGKILL it if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        # Children that outlived the leader (e.g. postgres backends) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


def spawn(
    name: str,
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
) -> Proc:
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
        popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    return Proc(name=name, popen=popen, log_path=log_path, stop_signal=stop_signal)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


# -- PostgreSQL -------------------------------------------------------------------------


def _as_postgres(argv: list[str], *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )


def start_postgres(port: int) -> Proc:
    """Our own cluster in ``<state>/pgdata``: trust auth on 127.0.0.1, role and db created."""
    root = state_dir()
    pgdata = root / "pgdata"
    sockets = root / "pgsock"
    for path in (pgdata, sockets):
        path.mkdir(exist_ok=True)
        shutil.chown(path, "postgres", "postgres")
    pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        done = _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}\n{done.stderr}")
    if (pgdata / "postmaster.pid").exists():
        # A server of an earlier, killed run on our own data directory: stop it first.
        _as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "immediate"])
    proc = spawn(
        "postgres",
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pgdata),
         "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={sockets}", "-c", "fsync=off",
         "-c", "max_connections=200"],
        stop_signal=signal.SIGINT,  # fast shutdown; SIGTERM would wait for clients
    )  # fmt: skip

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"postgres exited:\n{proc.log_tail()}")
        return _psql(sockets, port, "SELECT 1").returncode == 0

    wait_until(ready, timeout=30, interval=0.2, what="postgres ready")
    _psql(
        sockets,
        port,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'resilience') "
        "THEN CREATE ROLE resilience LOGIN CREATEDB; END IF; END $$;",
    )
    exists = _psql(sockets, port, "SELECT 1 FROM pg_database WHERE datname = 'shop'")
    if "1" not in exists.stdout:
        _psql(sockets, port, "CREATE DATABASE shop OWNER resilience")
    return proc


def drop_database(infra: Infra, name: str) -> None:
    """Drop a database of our cluster (test clean-up)."""
    done = _psql(state_dir() / "pgsock", infra.ports.postgres, f'DROP DATABASE IF EXISTS "{name}"')
    if done.returncode != 0:
        raise RuntimeError(f"dropping {name}: {done.stderr}")


def _psql(sockets: Path, port: int, sql: str) -> subprocess.CompletedProcess[str]:
    return _as_postgres(
        [str(PG_BIN / "psql"), "-h", str(sockets), "-p", str(port), "-d", "postgres", "-tAc", sql],
        timeout=20,
    )  # fmt: skip


# -- Toxiproxy --------------------------------------------------------------------------


@dataclass
class Toxiproxy:
    """A thin client for the Toxiproxy HTTP API, with timeouts and retries."""

    url: str

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        last: Exception | None = None
        for _ in range(5):
            try:
                response = httpx.request(
                    method, f"{self.url}{path}", json=body, timeout=HTTP_TIMEOUT
                )
            except httpx.HTTPError as exc:
                last = exc
                time.sleep(0.2)
                continue
            if response.status_code >= 500:
                last = RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
                time.sleep(0.2)
                continue
            return response
        raise RuntimeError(f"toxiproxy {method} {path} failed: {last!r}")

    def create_proxy(self, name: str, listen: str, upstream: str) -> None:
        self._request("DELETE", f"/proxies/{name}")
        response = self._request(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream}
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"creating proxy {name}: {response.status_code} {response.text}")

    def add_toxic(
        self,
        proxy: str,
        name: str,
        toxic_type: str,
        attributes: Mapping[str, Any],
        *,
        stream: str = "downstream",
    ) -> None:
        assert name.startswith("resilience-"), "toxic names must start with resilience-"
        response = self._request(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": name,
                "type": toxic_type,
                "stream": stream,
                "toxicity": 1.0,
                "attributes": dict(attributes),
            },
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"adding toxic {name}: {response.status_code} {response.text}")

    def remove_toxic(self, proxy: str, name: str) -> None:
        response = self._request("DELETE", f"/proxies/{proxy}/toxics/{name}")
        if response.status_code not in (200, 204, 404):
            raise RuntimeError(f"removing toxic {name}: {response.status_code} {response.text}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/proxies/{proxy}/toxics").json()
        return result

    def reset(self) -> None:
        """Remove every toxic and enable every proxy."""
        self._request("POST", "/reset")


def start_toxiproxy(p: Ports) -> tuple[Proc, Toxiproxy]:
    proc = spawn(
        "toxiproxy",
        [str(BIN / "toxiproxy-server"), "-host", "127.0.0.1", "-port", str(p.toxiproxy)],
    )
    client = Toxiproxy(f"http://127.0.0.1:{p.toxiproxy}")
    wait_until(lambda: _http_ok(f"{client.url}/version"), timeout=15, what="toxiproxy answering")
    for spec in stack_proxies(p):
        client.create_proxy(spec.name, spec.listen, spec.upstream)
    return proc, client


# -- Jaeger -----------------------------------------------------------------------------

JAEGER_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    logs: {{level: warn}}
    metrics: {{level: none}}
    traces: {{level: none}}
extensions:
  jaeger_query:
    storage: {{traces: memstore}}
    http: {{endpoint: "127.0.0.1:{query}"}}
    grpc: {{endpoint: "127.0.0.1:{query_grpc}"}}
  jaeger_storage:
    backends:
      memstore:
        memory: {{max_traces: 20000}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{otlp_grpc}"}}
      http: {{endpoint: "127.0.0.1:{otlp_http}"}}
processors:
  batch: {{timeout: 200ms}}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def start_jaeger(p: Ports) -> Proc:
    etc = state_dir() / "etc"
    etc.mkdir(exist_ok=True)
    config = etc / "jaeger.yaml"
    config.write_text(
        JAEGER_CONFIG.format(
            query=p.jaeger_query,
            query_grpc=p.jaeger_query_grpc,
            otlp_grpc=p.jaeger_otlp_grpc,
            otlp_http=p.jaeger_otlp_http,
        )
    )
    proc = spawn("jaeger", [str(BIN / "jaeger"), f"--config=file:{config}"])
    wait_until(
        lambda: _http_ok(f"http://127.0.0.1:{p.jaeger_query}/api/v3/services"),
        timeout=30,
        what="jaeger query API",
    )
    return proc


# -- the infrastructure and the shop ----------------------------------------------------


@dataclass
class Infra:
    """PostgreSQL, Toxiproxy (with the stack's proxies) and Jaeger, started by us."""

    ports: Ports
    toxiproxy: Toxiproxy
    procs: list[Proc] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"postgresql://resilience@127.0.0.1:{self.ports.postgres_proxy}/shop"

    @property
    def direct_database_url(self) -> str:
        return f"postgresql://resilience@127.0.0.1:{self.ports.postgres}/shop"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.jaeger_otlp_http}"

    @property
    def jaeger_query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.jaeger_query}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def infra(*, jaeger: bool = True) -> Iterator[Infra]:
    """The programs the shop depends on, for the duration of the block."""
    p = ports()
    procs: list[Proc] = []
    try:
        procs.append(start_postgres(p.postgres))
        toxi_proc, toxi = start_toxiproxy(p)
        procs.append(toxi_proc)
        if jaeger:
            procs.append(start_jaeger(p))
        yield Infra(ports=p, toxiproxy=toxi, procs=procs)
    finally:
        for proc in reversed(procs):
            proc.stop()


def shop_env(
    service: str,
    mode: str,
    port: int,
    infra: Infra,
    options: Mapping[str, object] | None = None,
    *,
    tracing: bool = True,
) -> dict[str, str]:
    """The environment the stack supervisor gives a shop service."""
    p = infra.ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(
        {
            "SHOP_SERVICE": service,
            "SHOP_MODE": mode,
            "SHOP_HOST": "127.0.0.1",
            "SHOP_PORT": str(port),
            "SHOP_CATALOG_URL": f"http://127.0.0.1:{p.catalog_proxy}",
            "SHOP_ORDERS_URL": f"http://127.0.0.1:{p.orders_proxy}",
            "SHOP_DATABASE_URL": infra.database_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if tracing and any(proc.name == "jaeger" for proc in infra.procs):
        env["SHOP_OTLP_ENDPOINT"] = infra.otlp_endpoint
    for name, value in (options or {}).items():
        env[f"SHOP_OPT_{name.upper()}"] = "none" if value is None else str(value).lower()
    return env


def launch_service(
    service: str,
    mode: str,
    infra: Infra,
    options: Mapping[str, object] | None = None,
    *,
    tracing: bool = True,
) -> Proc:
    """Spawn one shop service (without waiting for it)."""
    port = getattr(infra.ports, service)
    return spawn(
        f"shop-{service}",
        [sys.executable, "-m", "resilience.shop", service],
        env=shop_env(service, mode, port, infra, options, tracing=tracing),
        cwd=REPO,
    )


def wait_healthy(proc: Proc, url: str, timeout: float = 40.0) -> None:
    """Poll ``url``/health until it answers 200; fail with the log if the process died."""

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        return _http_ok(f"{url}/health")

    wait_until(healthy, timeout=timeout, interval=0.1, what=f"{proc.name} healthy")


@dataclass
class Shop:
    """The three services of one mode; ``gateway`` is the public URL."""

    mode: str
    infra: Infra
    procs: list[Proc]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.infra.ports.gateway}"

    @property
    def orders(self) -> str:
        return f"http://127.0.0.1:{self.infra.ports.orders}"

    @property
    def catalog(self) -> str:
        return f"http://127.0.0.1:{self.infra.ports.catalog}"

    def health(self, service: str = "gateway") -> dict[str, Any]:
        url = getattr(self, service)
        result: dict[str, Any] = httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).json()
        return result

    def metrics_text(self, service: str = "gateway") -> str:
        url = getattr(self, service)
        return httpx.get(f"{url}/metrics", timeout=HTTP_TIMEOUT).text

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(60)}" for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def shop(
    infra: Infra,
    mode: str,
    options: Mapping[str, object] | None = None,
    *,
    services: tuple[str, ...] = ("catalog", "orders", "gateway"),
    tracing: bool = True,
) -> Iterator[Shop]:
    """The shop's services in ``mode`` for the duration of the block."""
    procs: list[Proc] = []
    try:
        # All at once: the gateway needs no upstream to start, orders waits for its database.
        for service in services:
            procs.append(launch_service(service, mode, infra, options, tracing=tracing))
        for service, proc in zip(services, procs, strict=True):
            wait_healthy(proc, f"http://127.0.0.1:{getattr(infra.ports, service)}")
        yield Shop(mode=mode, infra=infra, procs=procs)
    finally:
        for proc in reversed(procs):
            proc.stop()


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus exposition text (labels must all match)."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        pairs = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        found = {k: v.strip('"') for k, v in pairs.items()}
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            return float(value)
    return None


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
