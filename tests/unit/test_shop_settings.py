"""Shop settings: the per-mode defaults table, SHOP_* parsing and validation messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from resilience.errors import ExperimentError
from resilience.shop.__main__ import main
from resilience.shop.settings import (
    MODE_DEFAULTS,
    OPTION_NAMES,
    ShopOptions,
    option_env_name,
    options_for,
    settings_from_env,
)

BASE_ENV = {
    "SHOP_SERVICE": "gateway",
    "SHOP_MODE": "hardened",
    "SHOP_PORT": "8200",
    "SHOP_CATALOG_URL": "http://127.0.0.1:28202",
    "SHOP_ORDERS_URL": "http://127.0.0.1:28201/",
    "SHOP_DATABASE_URL": "postgresql://resilience@127.0.0.1:25632/shop",
}


def test_every_option_has_a_default_in_every_mode() -> None:
    """Both modes define every option (the table is complete and validated)."""
    for mode, options in MODE_DEFAULTS.items():
        assert set(options.model_dump()) == set(OPTION_NAMES), mode
        assert ShopOptions.model_validate(options.model_dump()) == options


def test_fragile_defaults_are_the_fragile_mechanisms() -> None:
    """Fragile: shared pool, no timeouts, immediate retries of everything, small DB pool."""
    fragile = MODE_DEFAULTS["fragile"]
    assert fragile.shared_upstream_pool
    assert fragile.upstream_pool_size == 10
    assert fragile.upstream_deadline_seconds is None
    assert fragile.upstream_attempt_timeout_seconds is None
    assert fragile.upstream_retries == 2
    assert fragile.retry_non_idempotent
    assert fragile.retry_backoff_base_seconds == 0
    assert not fragile.breaker_enabled
    assert fragile.db_pool_size == 4
    assert fragile.db_acquire_timeout_seconds is None
    assert fragile.db_query_timeout_seconds is None
    assert fragile.db_reconnect_pause_seconds > 0
    assert not fragile.ack_before_commit


def test_hardened_defaults_are_the_hardened_mechanisms() -> None:
    """Hardened: bulkheads, deadlines under 2 s, GET-only backoff retries, breaker, bounded waits."""
    hardened = MODE_DEFAULTS["hardened"]
    assert not hardened.shared_upstream_pool
    assert hardened.upstream_deadline_seconds is not None
    assert hardened.upstream_deadline_seconds < 2.0
    assert hardened.upstream_attempt_timeout_seconds is not None
    assert not hardened.retry_non_idempotent
    assert hardened.retry_backoff_base_seconds > 0
    assert 0 < hardened.retry_jitter <= 1
    assert hardened.breaker_enabled
    assert hardened.db_pool_size == 10
    assert hardened.db_acquire_timeout_seconds is not None
    assert hardened.db_query_timeout_seconds is not None
    # The gateway must not give up before orders' own worst case (no timeout inversion).
    orders_worst = hardened.db_acquire_timeout_seconds + hardened.db_query_timeout_seconds
    assert orders_worst < hardened.upstream_attempt_timeout_seconds
    assert hardened.db_reconnect_pause_seconds == 0
    assert not hardened.ack_before_commit


def test_settings_from_env_reads_every_variable() -> None:
    """Every SHOP_* variable lands in its typed field; URLs lose a trailing slash."""
    env = {**BASE_ENV, "SHOP_OTLP_ENDPOINT": "http://127.0.0.1:4518"}
    settings = settings_from_env(env)
    assert settings.service == "gateway"
    assert settings.mode == "hardened"
    assert settings.port == 8200
    assert settings.orders_url == "http://127.0.0.1:28201"
    assert settings.otlp_endpoint == "http://127.0.0.1:4518"
    assert settings.options == MODE_DEFAULTS["hardened"]
    assert settings.service_name == "shop-gateway"


def test_tracing_is_off_without_an_endpoint() -> None:
    """An unset or empty SHOP_OTLP_ENDPOINT means no tracing."""
    assert settings_from_env({**BASE_ENV, "SHOP_OTLP_ENDPOINT": ""}).otlp_endpoint is None


def test_options_override_the_mode_defaults() -> None:
    """SHOP_OPT_<NAME> overrides one option, typed; the others keep the mode's default."""
    env = {
        **BASE_ENV,
        "SHOP_OPT_BREAKER_RECOVERY_SECONDS": "10",
        "SHOP_OPT_ACK_BEFORE_COMMIT": "true",
        "SHOP_OPT_DB_POOL_SIZE": "7",
        "SHOP_OPT_UPSTREAM_DEADLINE_SECONDS": "none",
    }
    options = settings_from_env(env).options
    assert options.breaker_recovery_seconds == 10.0
    assert options.ack_before_commit is True
    assert options.db_pool_size == 7
    assert options.upstream_deadline_seconds is None
    assert options.breaker_open_seconds == MODE_DEFAULTS["hardened"].breaker_open_seconds


def test_argv_service_stands_in_for_shop_service() -> None:
    """The command-line service is used when SHOP_SERVICE is unset."""
    env = {k: v for k, v in BASE_ENV.items() if k != "SHOP_SERVICE"}
    assert settings_from_env(env, service="orders").service == "orders"


def test_defaults_follow_the_standard_stack() -> None:
    """Without URLs and port, the standard stack's proxies and port are used."""
    settings = settings_from_env({"SHOP_SERVICE": "orders"})
    assert settings.mode == "fragile"
    assert settings.port == 8001
    assert settings.database_url == "postgresql://resilience@127.0.0.1:25432/shop"
    assert settings.catalog_url == "http://127.0.0.1:28002"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SHOP_OPT_DB_POOL_SIZE": "many"}, "SHOP_OPT_DB_POOL_SIZE"),
        ({"SHOP_OPT_DB_POOL_SIZE": "0"}, "greater than or equal to 1"),
        ({"SHOP_OPT_RETRY_JITTER": "1.5"}, "SHOP_OPT_RETRY_JITTER"),
        ({"SHOP_OPT_BREAKER_ENABLED": "perhaps"}, "SHOP_OPT_BREAKER_ENABLED"),
        ({"SHOP_OPT_DB_POOL_SIZ": "3"}, "SHOP_OPT_DB_POOL_SIZ: unknown option"),
        ({"SHOP_MODE": "robust"}, "SHOP_MODE"),
        ({"SHOP_SERVICE": "payments"}, "unknown shop service"),
        ({"SHOP_PORT": "http"}, "SHOP_PORT"),
        ({"SHOP_ORDERS_URL": "127.0.0.1:28201"}, "SHOP_ORDERS_URL"),
        ({"SHOP_DATABASE_URL": "mysql://x/y"}, "SHOP_DATABASE_URL"),
        (
            {"SHOP_OPT_RETRY_BACKOFF_MAX_SECONDS": "0.01"},
            "retry_backoff_max_seconds must be >= retry_backoff_base_seconds",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    """A bad value raises ExperimentError whose message names the variable and the problem."""
    with pytest.raises(ExperimentError) as caught:
        settings_from_env({**BASE_ENV, **env})
    assert needle in str(caught.value)
    assert caught.value.exit_code == 2


def test_bad_value_message_shows_what_arrived() -> None:
    """The message carries the offending input."""
    with pytest.raises(ExperimentError, match=r"SHOP_OPT_DB_POOL_SIZE: .*'many'"):
        settings_from_env({**BASE_ENV, "SHOP_OPT_DB_POOL_SIZE": "many"})


def test_service_disagreement_is_an_error() -> None:
    """SHOP_SERVICE and the argument must agree when both are given."""
    with pytest.raises(ExperimentError, match="disagrees"):
        settings_from_env(BASE_ENV, service="orders")


def test_options_for_applies_overrides_by_option_name() -> None:
    """options_for validates overrides given by option name, and rejects unknown names."""
    assert options_for("fragile", {"db_pool_size": 2}).db_pool_size == 2
    with pytest.raises(ExperimentError, match="unknown shop option"):
        options_for("fragile", {"pool_sise": 2})
    with pytest.raises(ExperimentError, match="db_pool_size"):
        options_for("hardened", {"db_pool_size": -1})


def test_option_env_name() -> None:
    """The override variable of an option is SHOP_OPT_ plus its upper-case name."""
    assert option_env_name("breaker_recovery_seconds") == "SHOP_OPT_BREAKER_RECOVERY_SECONDS"


def test_main_exits_2_on_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """python -m resilience.shop with a bad option returns 2 and logs which variable."""
    for key in [*BASE_ENV, "SHOP_OTLP_ENDPOINT"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SHOP_OPT_DB_POOL_SIZE", "lots")
    with caplog.at_level(logging.ERROR):
        assert main(["orders"]) == 2
    assert "SHOP_OPT_DB_POOL_SIZE" in caplog.text


def test_main_exits_2_on_a_bad_argument() -> None:
    """More than one argument is a usage error (exit 2)."""
    assert main(["orders", "gateway"]) == 2


def test_docs_list_every_option_with_its_defaults() -> None:
    """docs/shop.md has a row per option showing both modes' defaults."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "shop.md").read_text()
    rows = {
        line.split("`")[1]: line
        for line in docs.splitlines()
        if line.startswith("| `") and "` (" in line.split("|")[1]
    }
    assert set(rows) == set(OPTION_NAMES)
    for name, line in rows.items():
        cells = [c.strip() for c in line.split("|")[2:4]]
        for mode, cell in zip(("fragile", "hardened"), cells, strict=True):
            value = getattr(MODE_DEFAULTS[mode], name)
            if value is None:
                shown = "none"
            elif isinstance(value, bool):
                shown = str(value).lower()
            else:
                shown = str(value)
            assert cell == shown, f"{name} ({mode}): docs say {cell}, code says {shown}"
