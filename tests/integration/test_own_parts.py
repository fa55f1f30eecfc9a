"""Bring your own parts, on real programs: a run given `--prometheus`, `--traces` and
`--toxiproxy` starts none of its own, records them as the user's, and gathers series and
traces from them; a run whose target host is off loopback and not allowed exits 2 first.

The test starts the parts itself, outside any `resilience stack` (no stack.json records
them), on ports of their own (the stack's defaults shifted by RESILIENCE_TEST_PORT_OFFSET
+ 37), with the stack's own component definitions and generated configuration (the
Toxiproxy, Jaeger and Prometheus components' `prepare`/`launch`/`probe`,
`prometheus_config` scraping the target): Toxiproxy, Jaeger v2 and Debian's Prometheus. The
target is the built-in shop's catalog and gateway run as an ordinary service (no database),
its spans sent to that Jaeger, its calls to the catalog through a proxy the run declares.
The run itself uses another state directory and another port offset, where nothing runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from resilience.stack import Ports, Stack, StackConfig, StackPaths
from resilience.stack._process import stop_group
from resilience.stack.components import (
    Context,
    Jaeger,
    Prometheus,
    ShopService,
    Toxiproxy,
)
from resilience.stack.config import default_home
from resilience.stack.programs import Programs
from tests.integration._runs import RESILIENCE, start_component
from tests.integration.conftest import port_offset

pytestmark = pytest.mark.integration

OWN_SHIFT = 37
RUN_SHIFT = 61


@dataclass(frozen=True)
class OwnParts:
    """The user's parts and target, started by the test."""

    config: StackConfig
    pgids: dict[str, int]

    @property
    def ports(self) -> Ports:
        return self.config.ports

    def url(self, port: str) -> str:
        return self.config.url(port)


@pytest.fixture(scope="module")
def own_parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnParts]:
    state = tmp_path_factory.mktemp("own-parts")
    config = StackConfig(
        paths=StackPaths(home=default_home(), state=state),
        ports=Ports().shifted(port_offset() + OWN_SHIFT),
    )
    config.paths.logs.mkdir(parents=True, exist_ok=True)
    pgids: dict[str, int] = {}
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        ctx = Context(config=config, programs=Programs(config), http=http, shop_mode="hardened")
        try:
            for component in (
                Toxiproxy(),
                Jaeger(),
                Prometheus(),
                ShopService("catalog", needs=()),
                ShopService("gateway", needs=()),
            ):
                pgids[component.name] = start_component(component, ctx)
            yield OwnParts(config, pgids)
        finally:
            for pgid in reversed(pgids.values()):
                stop_group(pgid)


def _experiment(parts: OwnParts, path: Path) -> Path:
    ports = parts.ports
    path.write_text(
        textwrap.dedent(
            f"""
            name: own-parts
            target: {{url: "http://127.0.0.1:{ports.gateway}"}}
            proxies:
              - {{name: catalog, listen: "127.0.0.1:{ports.catalog_proxy}",
                  upstream: "127.0.0.1:{ports.catalog}"}}
            load:
              stages: [{{duration: 14s, users: 4, spawn_rate: 4}}]
              trace_sample: 20%
              workload: {{requests: [{{path: /catalog/items}}]}}
            faults:
              - {{at: 6s, duration: 4s, proxy: catalog, type: latency,
                  attributes: {{latency: 50ms}}}}
            checks:
              - {{name: gateway scraped, promql: 'up{{job="gateway"}}', phase: run,
                  expect: "== 1", severity: info}}
            """
        )
    )
    return path


def _run(parts: OwnParts, tmp_path: Path, *args: str) -> tuple[int, str, StackConfig]:
    run_config = StackConfig(
        paths=StackPaths(home=default_home(), state=tmp_path / "run-state"),
        ports=Ports().shifted(port_offset() + RUN_SHIFT),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_PORT_")}
    env["RESILIENCE_STATE_DIR"] = str(run_config.paths.state)
    env["RESILIENCE_PORT_OFFSET"] = str(port_offset() + RUN_SHIFT)
    done = subprocess.run(
        [
            RESILIENCE, "run", str(_experiment(parts, tmp_path / "own.yaml")),
            "--prometheus", parts.url("prometheus"),
            "--traces", parts.url("jaeger_query"),
            "--toxiproxy", parts.url("toxiproxy"),
            *args,
        ],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, run_config


def test_a_run_on_your_own_parts_starts_none_and_gathers_from_them(
    own_parts: OwnParts, tmp_path: Path
) -> None:
    """--prometheus, --traces and --toxiproxy at parts started outside the stack: no stack
    component is started or recorded, the journal says the three parts were the user's,
    the fault went through the user's Toxiproxy and was healed, and series and traces were
    gathered from the user's Prometheus and Jaeger."""
    out = tmp_path / "run"
    code, output, run_config = _run(own_parts, tmp_path, "--out", str(out))
    assert code in (0, 1), output[-3000:]
    assert Stack(run_config).records() == {}
    assert Stack(run_config).processes() == []
    assert not run_config.paths.stack_file.exists()
    assert "started " not in output
    journal = json.loads((out / "journal.json").read_text())
    expected = {
        "toxiproxy": own_parts.url("toxiproxy"),
        "prometheus": own_parts.url("prometheus"),
        "traces": own_parts.url("jaeger_query"),
    }
    for name, url in expected.items():
        part = journal["parts"][name]
        assert (part["url"], part["source"], part["own"]) == (url, "flag", True), part
    assert [
        f["applied_at"] is not None and f["healed_at"] is not None for f in journal["faults"]
    ] == [True]
    proxies = httpx.get(f"{own_parts.url('toxiproxy')}/proxies", timeout=3).json()
    assert proxies["catalog"]["toxics"] == [] and proxies["catalog"]["enabled"]
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["prometheus"]["status"] == "gathered", evidence["prometheus"]
    assert evidence["prometheus"]["endpoint"] == own_parts.url("prometheus")
    assert evidence["traces"]["status"] in ("gathered", "partial"), evidence["traces"]
    assert evidence["traces"]["endpoint"] == own_parts.url("jaeger_query")
    assert evidence["traces"]["gathered"] > 0
    check = next(c for c in journal["checks"] if c["name"] == "gateway scraped")
    assert check["status"] != "not_evaluated", check
    assert check["passed"] is True, check
    saved = [p for p in (out / "traces").glob("*.json") if p.name != "index.json"]
    assert saved


def test_a_target_off_loopback_and_not_allowed_exits_2_before_anything(
    own_parts: OwnParts, tmp_path: Path
) -> None:
    """--target on a host that is not loopback and not allowed: exit 2 naming it and
    --allow-host; no run directory, no stack state, and the user's Toxiproxy untouched."""
    before = httpx.get(f"{own_parts.url('toxiproxy')}/proxies", timeout=3).json()
    out = tmp_path / "refused"
    code, output, run_config = _run(
        own_parts, tmp_path, "--target", "http://shop.invalid:8000", "--out", str(out)
    )
    flat = " ".join(output.split())
    assert code == 2, output[-3000:]
    assert "shop.invalid" in flat and "--allow-host shop.invalid" in flat
    assert not out.exists()
    assert not run_config.paths.state.exists()
    assert httpx.get(f"{own_parts.url('toxiproxy')}/proxies", timeout=3).json() == before


def test_proxies_up_uses_the_files_own_toxiproxy(own_parts: OwnParts, tmp_path: Path) -> None:
    """`resilience proxies up FILE` with toxiproxy.url creates the declared proxy in that
    Toxiproxy and starts no stack Toxiproxy; `proxies down` takes it out again."""
    path = _experiment(own_parts, tmp_path / "own.yaml")
    text = path.read_text().replace(
        "proxies:\n", f'toxiproxy: {{url: "{own_parts.url("toxiproxy")}"}}\nproxies:\n', 1
    )
    path.write_text(
        text.replace("name: catalog,", "name: catalog-up,")
        .replace(
            f"127.0.0.1:{own_parts.ports.catalog_proxy}",
            f"127.0.0.1:{own_parts.ports.catalog_proxy + 7}",
        )
        .replace("proxy: catalog,", "proxy: catalog-up,")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_PORT_")}
    env["RESILIENCE_STATE_DIR"] = str(tmp_path / "run-state")
    env["RESILIENCE_PORT_OFFSET"] = str(port_offset() + RUN_SHIFT)

    def proxies(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RESILIENCE, "proxies", *args, str(path)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    up = proxies("up")
    assert up.returncode == 0, up.stdout + up.stderr
    listed = httpx.get(f"{own_parts.url('toxiproxy')}/proxies", timeout=3).json()
    assert listed["catalog-up"]["listen"] == f"127.0.0.1:{own_parts.ports.catalog_proxy + 7}"
    assert not (tmp_path / "run-state" / "stack.json").exists()
    down = proxies("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "catalog-up" not in httpx.get(f"{own_parts.url('toxiproxy')}/proxies", timeout=3).json()
