"""The built-in shop as somebody else's service, on the real stack: a form login, no traces,
/metrics on a port of its own, and an experiment file that says all the toolkit knows of
it (tests/integration/experiments/external-shop.yaml): the target URL, the proxy the
database goes through (created with `resilience proxies up`), the login in on_start, the
bearer token in headers, depends_on instead of traces, and its own scrape job. Under a
database hang the cascade is decided from depends_on, the writes are read back through the
login, and the reports say the target exported no spans.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.stack.topology import stack_proxies
from resilience.testing.loopback import LoopbackServer, QuietHandler
from tests.integration._runs import RESILIENCE, cli, cli_env, leftovers
from tests.integration.conftest import StackHandle

pytestmark = pytest.mark.integration

FILE = Path(__file__).parent / "experiments" / "external-shop.yaml"
PASSWORD = "s3cret"
OPTIONS = {
    "auth_login": "true",
    "auth_username": "shopper",
    "auth_password": PASSWORD,
    "tracing": "false",
    "separate_metrics_port": "true",
}
CATALOG = ("GET /catalog/items", "GET /catalog/items/{item_id}")


@pytest.fixture
def ordinary_shop(stack: StackHandle) -> Iterator[StackHandle]:
    """The shop restarted as an ordinary service (fragile + OPTIONS); put back after."""
    stack.stack.up(shop_mode="fragile", shop_options=OPTIONS)
    yield stack
    stack.stack.up(shop_mode="fragile")


def env(handle: StackHandle) -> dict[str, str]:
    """The `resilience` command's environment, with the file's ${env:...} values."""
    postgres = next(p for p in stack_proxies(handle.config.ports) if p.name == "postgres")
    return {
        **cli_env(handle),
        "EXT_SHOP_URL": handle.gateway_url,
        "EXT_PG_PROXY_PORT": str(postgres.listen_port),
        "EXT_PG_PORT": str(postgres.upstream_port),
        "EXT_GATEWAY_METRICS_PORT": str(handle.config.ports.gateway_metrics),
        "EXT_SHOP_PASSWORD": PASSWORD,
    }


def resilience(
    handle: StackHandle, *args: str, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RESILIENCE, *args], env=env(handle), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_an_external_service_is_described_completely_and_judged_honestly(
    ordinary_shop: StackHandle, tmp_path: Path
) -> None:
    """proxies up keeps the (identical) proxy; the run logs in, sends the token, scrapes the
    service's metrics with its own job; the cascade onto the catalog is decided from
    depends_on; every write is read back through the login (no 401) with its counts; the
    evidence, the finding and summary.md say the target exported no spans; the run's
    scrape job is gone afterwards and no fault is left behind."""
    up = resilience(ordinary_shop, "proxies", "up", str(FILE), "--json")
    assert up.returncode == 0, up.stderr
    assert [(p["name"], p["action"]) for p in json.loads(up.stdout)["proxies"]] == [
        ("postgres", "kept")
    ]

    out = tmp_path / "run"
    began = time.monotonic()
    run = resilience(
        ordinary_shop, "run", str(FILE), "--target", ordinary_shop.gateway_url,
        "--out", str(out), "--json",
    )  # fmt: skip
    seconds = time.monotonic() - began
    print(f"external-target run: {seconds:.1f}s, exit {run.returncode}")
    assert run.returncode in (0, 1), run.stderr[-3000:]
    journal = json.loads((out / "journal.json").read_text())
    assert not [e for e in journal["events"] if e["kind"] == "setup_failed"], journal["events"]

    findings = {f["kind"]: f for f in journal["findings"]}
    cascade = findings["cascading_failure"]
    assert cascade["status"] == "found", cascade
    footprint = cascade["evidence"]["footprint"]
    assert footprint["POST /orders"] == {"touches": True, "decided_by": "depends_on"}
    for endpoint in cascade["evidence"]["endpoints"]:
        assert endpoint in CATALOG
        assert footprint[endpoint] == {"touches": False, "decided_by": "depends_on"}
    assert "the target exported no spans" in cascade["summary"]
    assert run.returncode == 1

    # No finding cites a trace id: the saved traces hold only the load generator's spans.
    for finding in journal["findings"]:
        assert not finding["evidence"].get("trace_ids"), finding
        assert "trace_id" not in finding["evidence"], finding

    readback = json.loads((out / "readback.json").read_text())
    reads = [r for e in readback["endpoints"].values() for r in e["reads"].values()]
    listing = readback["endpoints"]["POST /orders"]["listing"]
    assert listing["status"] == 200
    assert all(r["status"] != 401 for r in reads)
    data_loss = findings["data_loss"]
    assert data_loss["status"] in ("held", "found")
    assert data_loss["status"] != "inconclusive", data_loss
    assert " acknowledged writes" in data_loss["summary"], data_loss

    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["traces"]["reason"].startswith("the target exported no spans: none of ")
    assert evidence["readback"]["status"] in ("gathered", "partial")
    summary = (out / "summary.md").read_text()
    assert "the target exported no spans" in summary
    assert "the target exported no spans" in (out / "report.html").read_text()

    [check] = [c for c in journal["checks"] if c["name"] == "the service's own metrics are scraped"]
    assert check["status"] == "passed", check
    assert "external-gateway" not in ordinary_shop.stack.scrape_jobs()
    assert leftovers(ordinary_shop) == []


NEVER_READY = """
name: never-ready
target: {{url: "http://127.0.0.1:{port}", ready: {{path: /health, within: 2s}}}}
load:
  stages: [{{duration: 5s, users: 1, spawn_rate: 1}}]
  workload:
    requests:
      - {{name: GET /x, path: /x}}
"""


def test_a_target_never_ready_is_could_not_run_and_gets_no_load(
    stack: StackHandle, tmp_path: Path
) -> None:
    """``target.ready`` on the real stack: a service whose /health keeps answering 503 is
    exit 3 (could not run, not failed), said with what it answered, and is sent no load."""
    seen: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(503 if self.path == "/health" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with LoopbackServer(Handler) as server:
        file = tmp_path / "never-ready.yaml"
        file.write_text(NEVER_READY.format(port=server.port))
        out = tmp_path / "run"
        started = time.monotonic()
        run = cli(stack, "run", str(file), "--no-stack", "--out", str(out), timeout=120)
        took = time.monotonic() - started
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "the target is not ready: GET /health answered 503 for 2s" in run.stderr + run.stdout
    assert seen and set(seen) == {"/health"}, seen
    assert took < 60
