"""Where the stack lives and which ports it uses: one typed object, read once from the environment.

Every port is configurable and kept out of the ephemeral range 32768-61000 (Toxiproxy
fails intermittently there). ``RESILIENCE_PORT_OFFSET`` shifts every port at once so that
a second stack (a test run, a second engineer) can live beside the first.

Environment:
    RESILIENCE_HOME         installed programs (bin/) and default state; default
                            /var/lib/resilience as root, ~/.local/share/resilience otherwise
    RESILIENCE_STATE_DIR    the running stack's state (pgdata, logs, configs, stack.json);
                            default $RESILIENCE_HOME/stack
    RESILIENCE_PORT_OFFSET  added to every default port
    RESILIENCE_PORT_<NAME>  one port, e.g. RESILIENCE_PORT_GATEWAY=18000
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from resilience.errors import ExperimentError
from resilience.vocabulary import EPHEMERAL_HIGH, EPHEMERAL_LOW


class Ports(BaseModel):
    """Every TCP port the stack binds on 127.0.0.1."""

    model_config = ConfigDict(frozen=True)

    toxiproxy: int = 8474
    postgres: int = 15432
    postgres_proxy: int = 25432
    orders_proxy: int = 28001
    catalog_proxy: int = 28002
    prometheus: int = 9090
    jaeger_otlp_grpc: int = 4317
    jaeger_otlp_http: int = 4318
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13133
    jaeger_metrics: int = 8888
    gateway: int = 8000
    orders: int = 8001
    catalog: int = 8002
    # The shop's /metrics when the option separate_metrics_port is on (else unused).
    gateway_metrics: int = 18000
    orders_metrics: int = 18001
    catalog_metrics: int = 18002
    # Bound by a run or a game day, not by the stack: its live load metrics, which the
    # stack's Prometheus scrapes (docs/observe.md).
    load_metrics: int = 9464
    # A distributed run's master, where `resilience worker --master` joins (Locust's 5557).
    load_master: int = 5557

    @field_validator("*")
    @classmethod
    def _outside_ephemeral(cls, value: int) -> int:
        if not 1024 <= value <= 65535:
            raise ValueError(f"port {value} is not between 1024 and 65535")
        if EPHEMERAL_LOW <= value <= EPHEMERAL_HIGH:
            raise ValueError(
                f"port {value} is in the ephemeral range {EPHEMERAL_LOW}-{EPHEMERAL_HIGH}, "
                "where Toxiproxy fails intermittently; choose another"
            )
        return value

    def shifted(self, offset: int) -> Ports:
        return Ports(**{name: port + offset for name, port in self.model_dump().items()})

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] | None = None) -> Ports:
        env = os.environ if env is None else env
        offset = _int_env(env, "RESILIENCE_PORT_OFFSET", 0)
        values = {name: port + offset for name, port in cls().model_dump().items()}
        for name, value in values.items():
            values[name] = _int_env(env, f"RESILIENCE_PORT_{name.upper()}", value)
        try:
            return cls(**values)
        except ValueError as exc:
            raise ExperimentError(f"invalid port configuration: {exc}") from exc


RUN_PORTS = frozenset({"load_metrics", "load_master"})
"""``Ports`` fields a run binds (no stack component owns them)."""


def _int_env(env: dict[str, str] | os._Environ[str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ExperimentError(
            f"environment variable {key} is not an integer", expected="an integer", got=repr(raw)
        ) from None


def default_home() -> Path:
    if "RESILIENCE_HOME" in os.environ:
        return Path(os.environ["RESILIENCE_HOME"])
    if os.geteuid() == 0:
        # Not under /root: PostgreSQL runs as the postgres user and must reach its data.
        return Path("/var/lib/resilience")
    return Path.home() / ".local" / "share" / "resilience"


class StackPaths(BaseModel):
    """Directories: ``home`` holds installed programs; ``state`` the running stack."""

    model_config = ConfigDict(frozen=True)

    home: Path
    state: Path

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def build(self) -> Path:
        return self.home / "build"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pgdata(self) -> Path:
        return self.state / "pgdata"

    @property
    def pgsock(self) -> Path:
        """PostgreSQL's Unix socket directory (password required there too)."""
        return self.state / "pgsock"

    @property
    def database_password(self) -> Path:
        """The database password (mode 0600), made at the first start, never replaced."""
        return self.state / "postgres.password"

    @property
    def etc(self) -> Path:
        return self.state / "etc"

    @property
    def scrape_jobs_file(self) -> Path:
        """The experiments' own Prometheus scrape jobs (``observe.scrape``) in effect."""
        return self.etc / "scrape-jobs.json"

    @property
    def stack_file(self) -> Path:
        return self.state / "stack.json"

    @property
    def fault_ledger(self) -> Path:
        """Faults applied by a run and not yet healed; read by the sweeper at every start."""
        return self.state / "faults.json"

    @classmethod
    def from_env(cls) -> StackPaths:
        home = default_home()
        state = Path(os.environ.get("RESILIENCE_STATE_DIR") or home / "stack")
        return cls(home=home, state=state)


class StackConfig(BaseModel):
    """Everything needed to install, start, find and stop one stack."""

    model_config = ConfigDict(frozen=True)

    paths: StackPaths
    ports: Ports
    host: str = "127.0.0.1"

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(paths=StackPaths.from_env(), ports=Ports.from_env())

    def url(self, component: str) -> str:
        port = getattr(self.ports, component)
        return f"http://{self.host}:{port}"

    @property
    def toxiproxy_url(self) -> str:
        return self.url("toxiproxy")

    @property
    def prometheus_url(self) -> str:
        return self.url("prometheus")

    @property
    def jaeger_query_url(self) -> str:
        return self.url("jaeger_query")

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")
