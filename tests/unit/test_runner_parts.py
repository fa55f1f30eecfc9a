"""The user's own parts for a run (runner/parts.py) and the off-loopback rule at the door:
refusals are exit 2 before any connection or name lookup, an unanswering part is exit 3 with
the fix, and flags win over the file."""

from __future__ import annotations

import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resilience import RunOptions, run_experiment
from resilience.cli import app
from resilience.errors import DependencyUnavailable, ExperimentError
from resilience.experiment import parse_experiment
from resilience.experiment.loader import load_experiment
from resilience.runner.parts import check_parts, resolve_parts, stack_parts
from resilience.stack import Ports, StackConfig, StackPaths

PORTS = Ports().shifted(2210)
CLOSED = PORTS.catalog_proxy  # nothing listens there in unit tests

EXPERIMENT = """
name: byo
target: {url: "http://127.0.0.1:9000"}
proxies: [{name: db, listen: "127.0.0.1:26000", upstream: "127.0.0.1:5432"}]
load:
  stages: [{duration: 20s, users: 2, spawn_rate: 2}]
  workload: {requests: [{path: /items}]}
faults: [{at: 5s, duration: 5s, proxy: db, type: outage}]
"""


@pytest.fixture
def config(tmp_path: Path) -> StackConfig:
    return StackConfig(
        paths=StackPaths(home=tmp_path / "home", state=tmp_path / "state"), ports=PORTS
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name lookup and connection attempt is recorded and refused."""
    attempts: list[str] = []

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"getaddrinfo {host}")
        raise AssertionError(f"name lookup of {host}")

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(f"connect {address}")
        raise AssertionError(f"connection to {address}")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(socket, "gethostbyname", lookup)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    yield attempts


def experiment(extra: str = "", base: str = EXPERIMENT, **kwargs: Any) -> Any:
    return parse_experiment(
        textwrap.dedent(base) + textwrap.dedent(extra), file="byo.yaml", **kwargs
    )


def test_a_target_off_loopback_is_refused_before_any_connection(
    config: StackConfig, tmp_path: Path, no_network: list[str]
) -> None:
    """--target on a host not allowed: exit 2 naming the host and --allow-host; no name
    lookup, no connection, no run directory, no stack started."""
    options = RunOptions(
        target="http://shop.invalid:8000", config=config, out=tmp_path / "run", reports=False
    )
    with pytest.raises(ExperimentError) as info:
        run_experiment(experiment(), options)
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "--target names host 'shop.invalid'" in text
    assert "--allow-host shop.invalid" in text
    assert no_network == []
    assert not (tmp_path / "run").exists()
    assert not config.paths.state.exists()


def test_a_part_off_loopback_is_refused_the_same_way(
    config: StackConfig, tmp_path: Path, no_network: list[str]
) -> None:
    """--prometheus/--traces/--toxiproxy on an unlisted host: exit 2 before anything."""
    for flag in ("prometheus", "traces", "toxiproxy"):
        options = RunOptions(config=config, out=tmp_path / "run", **{flag: "http://10.9.8.7:1"})
        with pytest.raises(ExperimentError, match=f"--{flag} names host '10.9.8.7'"):
            run_experiment(experiment(), options)
    assert no_network == []


def test_the_cli_refuses_a_file_target_off_loopback_with_exit_2(
    tmp_path: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`resilience run FILE` whose target host is not allowed exits 2 with the key, the host
    and both fixes, and sends nothing."""
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "remote.yaml"
    path.write_text(
        textwrap.dedent(EXPERIMENT).replace("http://127.0.0.1:9000", "http://shop.invalid:9000")
    )
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "target.url" in output and "shop.invalid" in output
    assert "--allow-host shop.invalid" in output and "allow_hosts" in output
    assert no_network == []
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


def test_a_game_day_refuses_a_target_off_loopback_unless_allowed(
    tmp_path: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gameday start --target` on a host not allowed: exit 2 naming the host and the fix,
    nothing sent and no session directory; `--allow-host` lets it through to the session
    (its options carry the host, normalized)."""
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "session"
    args = ["gameday", "start", "-e", "normal", "--target", "http://Shop.Invalid:8000"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--no-stack"])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "--target names host 'shop.invalid'" in output, output
    assert "--allow-host shop.invalid" in output
    assert no_network == []
    assert not out.exists()

    import resilience.gameday.session as session_module

    seen: list[Any] = []

    class Recorder:
        def __init__(self, resolved: Any, options: Any, say: Any = None) -> None:
            seen.append(options)
            raise ExperimentError("stopped by the test", expected="nothing", got="options")

    monkeypatch.setattr(session_module, "Session", Recorder)
    allowed = [*args, "--allow-host", "SHOP.invalid", "--out", str(out), "--no-stack"]
    result = CliRunner().invoke(app, allowed)
    assert result.exit_code == 2, result.output
    assert "stopped by the test" in result.output
    assert [o.allow_hosts for o in seen] == [("shop.invalid",)]
    assert seen[0].target == "http://Shop.Invalid:8000"
    assert no_network == []


def test_allow_host_lets_the_file_load_and_is_kept_for_re_analysis(tmp_path: Path) -> None:
    """--allow-host (the loader's allow_hosts) admits the host; RunOptions normalizes it."""
    path = tmp_path / "remote.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT).replace("127.0.0.1:9000", "Shop.Internal:9000"))
    with pytest.raises(ExperimentError, match="off loopback"):
        load_experiment(path)
    loaded = load_experiment(path, allow_hosts=["shop.internal"])
    assert loaded.target is not None and loaded.target.url == "http://Shop.Internal:9000"
    assert RunOptions(allow_hosts=("SHOP.internal.",)).allow_hosts == ("shop.internal",)


def test_flags_replace_the_file_url_and_keep_its_settings(config: StackConfig) -> None:
    """A flag's URL replaces the file's; headers, auth, kind stay; unnamed parts are the
    stack's; the journal record carries where and whose, never credentials."""
    exp = experiment(
        """
        observe:
          traces: {url: "http://127.0.0.1:3200", kind: tempo, api: v2, auth: {bearer: tok}}
          prometheus: {url: "http://127.0.0.1:9999", headers: {X-Org: a}, timeout: 7s}
        """
    )
    parts = resolve_parts(exp, config=config, flags={"traces": "http://127.0.0.1:3300/"})
    assert (parts.traces.url, parts.traces.source, parts.traces.kind) == (
        "http://127.0.0.1:3300", "flag", "tempo",
    )  # fmt: skip
    assert parts.traces.connection.bearer == "tok" and parts.traces.api == "v2"
    assert parts.prometheus.source == "file" and parts.prometheus.connection.timeout == 7.0
    assert parts.prometheus.connection.headers == {"X-Org": "a"}
    assert parts.toxiproxy == stack_parts(config).toxiproxy
    flag_only = resolve_parts(exp, config=config, flags={"toxiproxy": "http://127.0.0.1:1"})
    assert flag_only.toxiproxy.connection.timeout == 3.0
    assert parts.stack_components() == ("toxiproxy",)
    record = parts.to_journal()
    assert record["traces"] == {
        "url": "http://127.0.0.1:3300", "source": "flag", "own": True, "kind": "tempo",
    }  # fmt: skip
    assert record["toxiproxy"]["source"] == "stack" and not record["toxiproxy"]["own"]
    assert "tok" not in str(record)


def test_own_parts_need_a_target_of_ones_own(config: StackConfig) -> None:
    """The built-in shop is wired to the stack's parts: giving one's own is exit 2."""
    builtin = experiment(base=EXPERIMENT.replace('target: {url: "http://127.0.0.1:9000"}\n', ""))
    with pytest.raises(ExperimentError, match="needs a target of your own") as info:
        resolve_parts(builtin, config=config, flags={"prometheus": "http://127.0.0.1:9"})
    assert "--prometheus" in str(info.value)
    parts = resolve_parts(
        builtin, config=config, target="http://127.0.0.1:9000",
        flags={"prometheus": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert parts.prometheus.own


def test_tls_files_are_relative_to_the_file_and_must_exist(
    config: StackConfig, tmp_path: Path
) -> None:
    """tls.ca_file resolves next to the experiment file; a missing one is exit 2."""
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "exp.yaml"
    text = textwrap.dedent(EXPERIMENT) + (
        'observe: {prometheus: {url: "https://127.0.0.1:9090", tls: {ca_file: ca.pem}}}\n'
    )
    path.write_text(text)
    parts = resolve_parts(load_experiment(path), config=config)
    assert parts.prometheus.connection.ca_file == str((tmp_path / "ca.pem").resolve())
    path.write_text(text.replace("ca.pem", "missing.pem"))
    with pytest.raises(ExperimentError, match=r"observe.prometheus.tls.ca_file .*names no file"):
        resolve_parts(load_experiment(path), config=config)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("toxiproxy", "toxiproxy-server"),
        ("prometheus", "/api/v1/query?query=1"),
        ("traces", "/api/v3/services"),
    ],
)
def test_an_own_part_that_does_not_answer_is_exit_3_with_the_fix(
    config: StackConfig, flag: str, needle: str
) -> None:
    """Health check before the run: a closed port is DependencyUnavailable (exit 3) naming
    the part, where it was given and how to start or fix it, within a second."""
    parts = resolve_parts(experiment(), config=config, flags={flag: f"http://127.0.0.1:{CLOSED}"})
    began = time.monotonic()
    with pytest.raises(DependencyUnavailable) as info:
        check_parts(parts)
    assert time.monotonic() - began < 1.0
    text = str(info.value)
    assert info.value.exit_code == 3
    assert f"127.0.0.1:{CLOSED}" in text and f"--{flag}" in text
    assert needle in text and "drop --" in text


def test_target_flag_refuses_faults_on_the_built_in_shops_proxies(
    config: StackConfig, tmp_path: Path, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file without `target:` may fault the shop's `postgres`; run with --target, the
    service is the user's, which does not pass the shop's proxies: exit 2 naming the key
    (as `target:` in the file would), from the dry run too, before anything is sent."""
    base = """
        name: mine
        load:
          stages: [{duration: 20s, users: 2, spawn_rate: 2}]
          workload: {requests: [{path: /items, depends_on: [postgres]}]}
        faults: [{at: 5s, duration: 5s, proxy: postgres, type: outage}]
        """
    exp = experiment(base=base)
    assert resolve_parts(exp, config=config).toxiproxy.source == "stack"  # the shop: fine
    with pytest.raises(ExperimentError) as info:
        resolve_parts(exp, config=config, target="http://127.0.0.1:9000")
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "faults[0].proxy" in text and "depends_on[0]" in text and "'postgres'" in text
    assert "--target" in text and "proxies:" in text
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(base))
    args = ["run", str(path), "--dry-run", "--target", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "faults[0].proxy" in " ".join(result.output.split())
    assert no_network == []
    proxies = (
        '        proxies: [{name: postgres, listen: "127.0.0.1:26001", upstream: "db:5432"}]\n'
    )
    declared = base.replace("        load:", proxies + "        load:")
    resolve_parts(experiment(base=declared), config=config, target="http://127.0.0.1:9000")


def test_target_flag_refuses_a_shop_section(
    config: StackConfig, tmp_path: Path, no_network: list[str]
) -> None:
    """`shop:` configures the built-in shop; with --target the service tested is the user's,
    so the section would silently mean nothing: exit 2 at `shop`, as `target:` in the file
    is refused, and from the dry run too."""
    base = """
        name: mine
        shop: {mode: fragile}
        load:
          stages: [{duration: 20s, users: 2, spawn_rate: 2}]
          workload: {requests: [{path: /items}]}
        """
    exp = experiment(base=base)
    assert resolve_parts(exp, config=config).toxiproxy.source == "stack"  # the shop: fine
    with pytest.raises(ExperimentError) as info:
        resolve_parts(exp, config=config, target="http://127.0.0.1:9000")
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "at shop:" in text and "--target" in text and "mode fragile" in text
    path = tmp_path / "mine.yaml"
    assert "line 3, at shop:" in text
    path.write_text(textwrap.dedent(base))
    args = ["run", str(path), "--dry-run", "--target", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args, env={"RESILIENCE_STATE_DIR": str(tmp_path / "s")})
    assert result.exit_code == 2, result.output
    assert "shop settings apply only to the built-in shop" in " ".join(result.output.split())
    assert no_network == []


def test_a_bad_target_option_is_named_as_the_user_typed_it() -> None:
    """A bad --target (or --workers, --shop-mode) names the option, not RunOptions' field."""
    with pytest.raises(ExperimentError) as info:
        RunOptions(target="ftp://127.0.0.1:9000")
    assert "--target" in str(info.value)
    assert "RunOptions" not in str(info.value)
    with pytest.raises(ExperimentError) as info:
        RunOptions(workers=0)
    assert "RunOptions" not in str(info.value)


def test_shop_mode_with_target_is_refused(tmp_path: Path, no_network: list[str]) -> None:
    """--shop-mode sets the built-in shop's mode; beside --target it would silently change
    nothing: exit 2 naming both options, before anything is reached."""
    with pytest.raises(ExperimentError) as info:
        RunOptions(shop_mode="fragile", target="http://127.0.0.1:9000")
    assert info.value.exit_code == 2
    assert "--shop-mode" in str(info.value) and "--target" in str(info.value)
    args = ["run", "db-outage", "--dry-run", "--shop-mode", "fragile",
            "--target", "http://127.0.0.1:9"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"RESILIENCE_STATE_DIR": str(tmp_path / "s")})
    assert result.exit_code == 2, result.output
    assert "--shop-mode does not go with --target" in " ".join(result.output.split())
    assert no_network == []


def test_shop_mode_with_a_file_that_has_a_target_is_refused(
    tmp_path: Path, no_network: list[str]
) -> None:
    """The file's own target with --shop-mode: exit 2 at the file's `target` line, from
    the dry run too, before anything is reached."""
    path = tmp_path / "byo.yaml"
    path.write_text(EXPERIMENT)
    args = ["run", str(path), "--dry-run", "--shop-mode", "hardened"]
    result = CliRunner().invoke(app, args, env={"RESILIENCE_STATE_DIR": str(tmp_path / "s")})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "byo.yaml:3, at target: --shop-mode sets the built-in shop's mode" in text
    assert no_network == []
