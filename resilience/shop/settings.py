"""The shop's configuration: one typed object per process, read once from ``SHOP_*`` env vars.

This is the contract with the stack supervisor. ``SHOP_MODE`` picks a row of the defaults
table (``MODE_DEFAULTS``); each ``SHOP_OPT_<NAME>`` overrides one option of that row. Every
option is named, typed and validated here, at the door: a bad value raises
``ExperimentError`` naming the variable, what was expected and what arrived, and
``python -m resilience.shop`` turns that into exit code 2. Inside the shop only the model
objects travel, never the raw environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from resilience.errors import ExperimentError
from resilience.vocabulary import SHOP_MODES, ShopMode

ShopService = Literal["gateway", "orders", "catalog"]
SHOP_SERVICE_NAMES: tuple[ShopService, ...] = get_args(ShopService)

OPTION_PREFIX = "SHOP_OPT_"
_NONE_WORDS = frozenset({"", "none", "null", "off", "unbounded"})

Seconds = float
OptionalSeconds = float | None


class ShopOptions(BaseModel):
    """Every tunable mechanism of the shop. No field has a default: the mode table gives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # gateway: pools
    shared_upstream_pool: bool = Field(
        description="one HTTP pool (client + semaphore) for both upstreams instead of one each"
    )
    upstream_pool_size: int = Field(
        ge=1, le=1000, description="connections (and in-flight calls) per gateway upstream pool"
    )
    # gateway: timeouts
    upstream_deadline_seconds: OptionalSeconds = Field(
        gt=0, description="budget of one upstream call including retries, pool wait and backoff"
    )
    upstream_attempt_timeout_seconds: OptionalSeconds = Field(
        gt=0, description="timeout of one HTTP attempt (capped by what is left of the deadline)"
    )
    # gateway: retries
    upstream_retries: int = Field(ge=0, le=10, description="retries after the first attempt")
    retry_non_idempotent: bool = Field(description="also retry POST (and other unsafe methods)")
    retry_backoff_base_seconds: Seconds = Field(
        ge=0, description="backoff before retry n is base * 2^(n-1), capped, then jittered"
    )
    retry_backoff_max_seconds: Seconds = Field(ge=0, description="cap of the backoff")
    retry_jitter: float = Field(
        ge=0, le=1, description="fraction of the backoff drawn at random: delay in [b(1-j), b]"
    )
    # gateway: circuit breaker on the orders upstream
    breaker_enabled: bool = Field(description="a circuit breaker in front of the orders upstream")
    breaker_failure_threshold: int = Field(ge=1, description="consecutive failures that open it")
    breaker_failure_ratio: float = Field(
        gt=0, le=1, description="failure ratio in the window that opens it"
    )
    breaker_window_seconds: Seconds = Field(gt=0, description="window of the failure ratio")
    breaker_min_calls: int = Field(ge=1, description="calls in the window before the ratio counts")
    breaker_open_seconds: Seconds = Field(ge=0, description="time open before going half-open")
    breaker_probe_interval_seconds: Seconds = Field(
        gt=0, description="least time between two probes while half-open (one at a time)"
    )
    breaker_recovery_seconds: Seconds = Field(
        ge=0, description="probes must succeed continuously this long before it closes"
    )
    # orders: database
    db_pool_size: int = Field(ge=1, le=200, description="asyncpg pool size")
    db_acquire_timeout_seconds: OptionalSeconds = Field(
        gt=0, description="bounded wait for a pooled connection (503 when it runs out)"
    )
    db_query_timeout_seconds: OptionalSeconds = Field(
        gt=0,
        description="client-side budget for (re)connecting plus the statement once a pool "
        "slot is held; a connection that runs out of it is discarded",
    )
    db_connect_timeout_seconds: Seconds = Field(
        gt=0, description="timeout of opening one database connection"
    )
    db_reconnect_pause_seconds: Seconds = Field(
        ge=0,
        description="after a lost database connection, requests wait this long before the "
        "pool is rebuilt (0: reconnect on demand)",
    )
    db_startup_deadline_seconds: Seconds = Field(
        gt=0, description="how long orders keeps retrying its first connection at start"
    )
    # orders: the lost-write mode
    ack_before_commit: bool = Field(
        description="acknowledge writes before they commit (a background batch commits them)"
    )
    ack_batch_size: int = Field(ge=1, le=10000, description="orders committed per batch")
    ack_flush_interval_seconds: Seconds = Field(
        gt=0, description="longest time a queued write waits for its batch"
    )
    ack_queue_limit: int = Field(ge=1, description="queued writes beyond which POST answers 503")
    # catalog
    catalog_items: int = Field(ge=1, le=10000, description="items the catalog serves")
    # gateway: a login like an ordinary third-party API's
    auth_login: bool = Field(
        description="POST /login (form: username, password) hands out bearer tokens; every "
        "other gateway endpoint but /health and /metrics then requires one"
    )
    auth_username: str = Field(
        min_length=1, max_length=200, description="the demo user's name for POST /login"
    )
    auth_password: SecretStr = Field(
        min_length=1, max_length=200, description="the demo user's password for POST /login"
    )
    auth_token_ttl_seconds: OptionalSeconds = Field(
        gt=0, description="how long a token is valid (none: for the life of the process)"
    )
    # every service: observability
    tracing: bool = Field(
        description="export spans over OTLP (off: no exporter and no instrumentation at all)"
    )
    separate_metrics_port: bool = Field(
        description="serve /metrics on SHOP_METRICS_PORT instead of the app port "
        "(the app port then answers 404 for /metrics)"
    )

    @field_validator(
        "upstream_deadline_seconds",
        "upstream_attempt_timeout_seconds",
        "db_acquire_timeout_seconds",
        "db_query_timeout_seconds",
        "auth_token_ttl_seconds",
        mode="before",
    )
    @classmethod
    def _none_words(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
            return None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ShopOptions:
        if self.retry_backoff_max_seconds < self.retry_backoff_base_seconds:
            raise ValueError(
                "retry_backoff_max_seconds must be >= retry_backoff_base_seconds "
                f"(got {self.retry_backoff_max_seconds} < {self.retry_backoff_base_seconds})"
            )
        return self


MODE_DEFAULTS: dict[ShopMode, ShopOptions] = {
    "fragile": ShopOptions(
        shared_upstream_pool=True,
        upstream_pool_size=10,
        upstream_deadline_seconds=None,
        upstream_attempt_timeout_seconds=None,
        upstream_retries=2,
        retry_non_idempotent=True,
        retry_backoff_base_seconds=0.0,
        retry_backoff_max_seconds=0.0,
        retry_jitter=0.0,
        breaker_enabled=False,
        breaker_failure_threshold=5,
        breaker_failure_ratio=0.5,
        breaker_window_seconds=10.0,
        breaker_min_calls=20,
        breaker_open_seconds=0.5,
        breaker_probe_interval_seconds=0.2,
        breaker_recovery_seconds=2.0,
        db_pool_size=4,
        db_acquire_timeout_seconds=None,
        db_query_timeout_seconds=None,
        db_connect_timeout_seconds=60.0,
        db_reconnect_pause_seconds=10.0,
        db_startup_deadline_seconds=30.0,
        ack_before_commit=False,
        ack_batch_size=50,
        ack_flush_interval_seconds=0.2,
        ack_queue_limit=10000,
        catalog_items=50,
        auth_login=False,
        auth_username="shopper",
        auth_password=SecretStr("s3cret"),
        auth_token_ttl_seconds=86400.0,
        tracing=True,
        separate_metrics_port=False,
    ),
    "hardened": ShopOptions(
        shared_upstream_pool=False,
        upstream_pool_size=10,
        upstream_deadline_seconds=1.5,
        upstream_attempt_timeout_seconds=1.3,
        upstream_retries=2,
        retry_non_idempotent=False,
        retry_backoff_base_seconds=0.05,
        retry_backoff_max_seconds=0.4,
        retry_jitter=0.5,
        breaker_enabled=True,
        breaker_failure_threshold=5,
        breaker_failure_ratio=0.5,
        breaker_window_seconds=10.0,
        breaker_min_calls=20,
        breaker_open_seconds=0.5,
        breaker_probe_interval_seconds=0.2,
        breaker_recovery_seconds=2.0,
        db_pool_size=10,
        db_acquire_timeout_seconds=0.3,
        db_query_timeout_seconds=0.9,
        db_connect_timeout_seconds=1.0,
        db_reconnect_pause_seconds=0.0,
        db_startup_deadline_seconds=30.0,
        ack_before_commit=False,
        ack_batch_size=50,
        ack_flush_interval_seconds=0.2,
        ack_queue_limit=10000,
        catalog_items=50,
        auth_login=False,
        auth_username="shopper",
        auth_password=SecretStr("s3cret"),
        auth_token_ttl_seconds=86400.0,
        tracing=True,
        separate_metrics_port=False,
    ),
}
"""The defaults table: one complete set of options per mode."""

OPTION_NAMES: tuple[str, ...] = tuple(ShopOptions.model_fields)


def option_env_name(option: str) -> str:
    """The environment variable that overrides an option, e.g. ``SHOP_OPT_DB_POOL_SIZE``."""
    return OPTION_PREFIX + option.upper()


class ShopSettings(BaseModel):
    """What one shop process needs: which service, which mode, where, and the options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ShopService
    mode: ShopMode
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="/metrics with separate_metrics_port"
    )
    catalog_url: str | None = None
    orders_url: str | None = None
    database_url: str | None = None
    otlp_endpoint: str | None = None
    options: ShopOptions

    @field_validator("catalog_url", "orders_url", "otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"must be a postgresql:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _what_the_service_needs(self) -> ShopSettings:
        # The stack supervisor sets every address (resilience/stack/generate.py); a service
        # started by hand must be told the ones it uses.
        needed = {
            "gateway": (("catalog_url", "SHOP_CATALOG_URL"), ("orders_url", "SHOP_ORDERS_URL")),
            "orders": (("database_url", "SHOP_DATABASE_URL"),),
            "catalog": (),
        }[self.service]
        if self.options.separate_metrics_port:
            needed = (*needed, ("metrics_port", "SHOP_METRICS_PORT"))
        missing = [env for field, env in needed if getattr(self, field) is None]
        if missing:
            raise ValueError(f"the {self.service} needs {', '.join(missing)}")
        if self.options.separate_metrics_port and self.metrics_port == self.port:
            raise ValueError(
                f"SHOP_METRICS_PORT must differ from SHOP_PORT when separate_metrics_port is on "
                f"(both are {self.port})"
            )
        return self

    @property
    def service_name(self) -> str:
        """The OpenTelemetry ``service.name``: shop-gateway, shop-orders or shop-catalog."""
        return f"shop-{self.service}"


def options_for(mode: ShopMode, overrides: Mapping[str, object] | None = None) -> ShopOptions:
    """The mode's defaults with ``overrides`` applied and validated (keys are option names)."""
    base = MODE_DEFAULTS[mode].model_dump()
    unknown = sorted(set(overrides or {}) - set(base))
    if unknown:
        raise ExperimentError(
            f"unknown shop option(s) {', '.join(unknown)}",
            expected=f"one of {', '.join(OPTION_NAMES)}",
        )
    base.update(overrides or {})
    try:
        return ShopOptions.model_validate(base)
    except ValidationError as exc:
        raise ExperimentError(
            f"invalid shop options for mode {mode}",
            problems=[_describe(err, option_key=True) for err in exc.errors()],
        ) from None


def settings_from_env(
    env: Mapping[str, str] | None = None, *, service: str | None = None
) -> ShopSettings:
    """Read and validate the settings; ``service`` (from argv) stands in for ``SHOP_SERVICE``.

    Unknown ``SHOP_OPT_*`` variables are errors, so a typo cannot silently leave a
    default in place.
    """
    env = os.environ if env is None else env
    problems: list[str] = []

    env_service = env.get("SHOP_SERVICE") or None
    if service and env_service and service != env_service:
        problems.append(
            f"SHOP_SERVICE={env_service!r} disagrees with the command-line service {service!r}"
        )
    chosen_service = service or env_service
    if chosen_service is None:
        raise ExperimentError(
            "no shop service given",
            expected=f"SHOP_SERVICE or an argument, one of {', '.join(SHOP_SERVICE_NAMES)}",
        )
    if chosen_service not in SHOP_SERVICE_NAMES:
        raise ExperimentError(
            "unknown shop service",
            expected=f"one of {', '.join(SHOP_SERVICE_NAMES)}",
            got=repr(chosen_service),
        )

    raw_mode = env.get("SHOP_MODE") or "fragile"
    if raw_mode not in SHOP_MODES:
        raise ExperimentError(
            "SHOP_MODE is not a shop mode", expected=" or ".join(SHOP_MODES), got=repr(raw_mode)
        )
    mode: ShopMode = raw_mode

    overrides: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith(OPTION_PREFIX):
            continue
        name = key[len(OPTION_PREFIX) :].lower()
        if name not in OPTION_NAMES:
            problems.append(f"{key}: unknown option (known: {', '.join(OPTION_NAMES)})")
            continue
        overrides[name] = value

    raw: dict[str, object] = {
        "service": chosen_service,
        "mode": mode,
        "host": env.get("SHOP_HOST") or "127.0.0.1",
        "port": env.get("SHOP_PORT"),
        "metrics_port": env.get("SHOP_METRICS_PORT") or None,
        "catalog_url": env.get("SHOP_CATALOG_URL") or None,
        "orders_url": env.get("SHOP_ORDERS_URL") or None,
        "database_url": env.get("SHOP_DATABASE_URL") or None,
        "otlp_endpoint": env.get("SHOP_OTLP_ENDPOINT") or None,
        "options": {**MODE_DEFAULTS[mode].model_dump(), **overrides},
    }
    if problems:
        raise ExperimentError("invalid shop configuration", problems=problems)
    try:
        return ShopSettings.model_validate(raw)
    except ValidationError as exc:
        raise ExperimentError(
            "invalid shop configuration",
            problems=[_describe(err, option_key=False) for err in exc.errors()],
        ) from None


_FIELD_ENV = {
    "service": "SHOP_SERVICE",
    "mode": "SHOP_MODE",
    "host": "SHOP_HOST",
    "port": "SHOP_PORT",
    "metrics_port": "SHOP_METRICS_PORT",
    "catalog_url": "SHOP_CATALOG_URL",
    "orders_url": "SHOP_ORDERS_URL",
    "database_url": "SHOP_DATABASE_URL",
    "otlp_endpoint": "SHOP_OTLP_ENDPOINT",
}


def _describe(error: ErrorDetails, *, option_key: bool) -> str:
    """One line per problem: the variable (or option), what was expected, what arrived."""
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] == "options":
        loc = loc[1:]
        where = option_env_name(loc[0]) if loc and not option_key else ".".join(loc)
    elif option_key:
        where = ".".join(loc)
    else:
        where = _FIELD_ENV.get(loc[0], loc[0]) if loc else "settings"
    if not where:
        where = "options" if option_key else "SHOP_OPT_*"
    message = str(error.get("msg", "invalid"))
    if "input" in error and error.get("type") not in ("missing", "value_error"):
        return f"{where}: {message} (got {error['input']!r})"
    return f"{where}: {message}"
