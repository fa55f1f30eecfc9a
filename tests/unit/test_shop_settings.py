"""Shop settings: the per-mode defaults table, SHOP_* parsing and validation messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

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


def test_a_service_must_be_told_the_addresses_it_uses() -> None:
    """The stack supervisor sets every address; without them a service names what it needs
    (its port, and the gateway its upstreams, orders its database)."""
    with pytest.raises(ExperimentError, match="SHOP_PORT"):
        settings_from_env({"SHOP_SERVICE": "catalog"})
    with pytest.raises(ExperimentError, match="SHOP_DATABASE_URL"):
        settings_from_env({"SHOP_SERVICE": "orders", "SHOP_PORT": "8001"})
    with pytest.raises(ExperimentError, match="SHOP_CATALOG_URL, SHOP_ORDERS_URL"):
        settings_from_env({"SHOP_SERVICE": "gateway", "SHOP_PORT": "8000"})
    settings = settings_from_env({"SHOP_SERVICE": "catalog", "SHOP_PORT": "8002"})
    assert settings.mode == "fragile" and settings.port == 8002


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
        ({"SHOP_OPT_AUTH_LOGIN": "sometimes"}, "SHOP_OPT_AUTH_LOGIN: Input should be a valid"),
        ({"SHOP_OPT_AUTH_USERNAME": ""}, "SHOP_OPT_AUTH_USERNAME: String should have at least"),
        ({"SHOP_OPT_AUTH_PASSWORD": ""}, "SHOP_OPT_AUTH_PASSWORD: Value should have at least"),
        ({"SHOP_OPT_AUTH_TOKEN_TTL_SECONDS": "0"}, "SHOP_OPT_AUTH_TOKEN_TTL_SECONDS"),
        ({"SHOP_OPT_AUTH_TOKEN_TTL_SECONDS": "soon"}, "SHOP_OPT_AUTH_TOKEN_TTL_SECONDS"),
        ({"SHOP_OPT_TRACING": "maybe"}, "SHOP_OPT_TRACING: Input should be a valid boolean"),
        ({"SHOP_OPT_SEPARATE_METRICS_PORT": "2"}, "SHOP_OPT_SEPARATE_METRICS_PORT"),
        ({"SHOP_METRICS_PORT": "metrics"}, "SHOP_METRICS_PORT: Input should be a valid integer"),
        ({"SHOP_METRICS_PORT": "70000"}, "SHOP_METRICS_PORT: Input should be less than"),
        (
            {"SHOP_OPT_SEPARATE_METRICS_PORT": "true", "SHOP_METRICS_PORT": "8200"},
            "SHOP_METRICS_PORT must differ from SHOP_PORT",
        ),
        ({"SHOP_OPT_METRICS_PORT": "true"}, "SHOP_OPT_METRICS_PORT: unknown option"),
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
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None:
                shown = "none"
            elif isinstance(value, bool):
                shown = str(value).lower()
            else:
                shown = str(value)
            assert cell == shown, f"{name} ({mode}): docs say {cell}, code says {shown}"


def test_ordinary_service_options_are_off_by_default_in_both_modes() -> None:
    """Both modes: no login, tracing on, /metrics on the app port (today's behaviour)."""
    for mode, options in MODE_DEFAULTS.items():
        assert options.auth_login is False, mode
        assert options.tracing is True, mode
        assert options.separate_metrics_port is False, mode
        assert options.auth_username == "shopper", mode
        assert options.auth_password.get_secret_value() == "s3cret", mode
        assert options.auth_token_ttl_seconds == 86400.0, mode


def test_ordinary_service_options_read_from_env() -> None:
    """SHOP_OPT_AUTH_*, SHOP_OPT_TRACING and SHOP_OPT_SEPARATE_METRICS_PORT land typed."""
    env = {
        **BASE_ENV,
        "SHOP_OPT_AUTH_LOGIN": "true",
        "SHOP_OPT_AUTH_USERNAME": "alice",
        "SHOP_OPT_AUTH_PASSWORD": "correct horse",
        "SHOP_OPT_AUTH_TOKEN_TTL_SECONDS": "none",
        "SHOP_OPT_TRACING": "false",
        "SHOP_OPT_SEPARATE_METRICS_PORT": "1",
        "SHOP_METRICS_PORT": "18200",
    }
    settings = settings_from_env(env)
    options = settings.options
    assert options.auth_login is True
    assert options.auth_username == "alice"
    assert options.auth_password.get_secret_value() == "correct horse"
    assert options.auth_token_ttl_seconds is None
    assert options.tracing is False
    assert options.separate_metrics_port is True
    assert settings.metrics_port == 18200


def test_the_password_never_shows_in_reprs_or_json_dumps() -> None:
    """The demo password is a secret: repr and JSON dumps of the options mask it."""
    settings = settings_from_env({**BASE_ENV, "SHOP_OPT_AUTH_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.options.model_dump_json()
    assert settings.options.model_dump(mode="json")["auth_password"] == "**********"


def test_a_separate_metrics_port_must_be_given() -> None:
    """separate_metrics_port without SHOP_METRICS_PORT names the variable."""
    env = {"SHOP_SERVICE": "catalog", "SHOP_PORT": "8002", "SHOP_OPT_SEPARATE_METRICS_PORT": "true"}
    with pytest.raises(ExperimentError, match="SHOP_METRICS_PORT"):
        settings_from_env(env)
    assert settings_from_env({**env, "SHOP_METRICS_PORT": "18002"}).metrics_port == 18002


def test_same_metrics_and_app_port_is_allowed_while_the_option_is_off() -> None:
    """SHOP_METRICS_PORT is ignored (not checked against SHOP_PORT) without the option."""
    settings = settings_from_env({**BASE_ENV, "SHOP_METRICS_PORT": BASE_ENV["SHOP_PORT"]})
    assert settings.metrics_port == settings.port


def test_options_for_names_the_option_of_a_bad_value() -> None:
    """options_for (what the stack checks before starting the shop) names the option."""
    with pytest.raises(ExperimentError, match="tracing") as caught:
        options_for("hardened", {"tracing": "sometimes"})
    assert caught.value.exit_code == 2
    assert options_for("fragile", {"separate_metrics_port": "true"}).separate_metrics_port


def test_docs_example_shop_options_are_valid() -> None:
    """The experiment snippet in docs/shop.md names real options with valid values."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "shop.md").read_text()
    block = docs.split("## Looking like an ordinary service", 1)[1].split("```yaml", 1)[1]
    shop = yaml.safe_load(block.split("```", 1)[0])["shop"]
    options = options_for(shop["mode"], shop["options"])
    assert options.auth_login and not options.tracing and options.separate_metrics_port


def test_services_keep_idle_connections_longer_than_the_gateway_reuses_them() -> None:
    """Equal idle limits race (the server closes a connection as the gateway reuses it: a
    502 on a POST in a quiet baseline); the gateway's client must give up first, by a
    margin wider than a busy machine's scheduling delay."""
    from resilience.shop import __main__ as served
    from resilience.shop import gateway

    assert served.KEEP_ALIVE_SECONDS >= gateway.KEEPALIVE_EXPIRY_SECONDS + 30
