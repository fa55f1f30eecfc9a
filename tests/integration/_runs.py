"""Helpers for tests that run experiments end to end on the session's real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from resilience.experiment.loader import load_experiment
from resilience.runner.orchestrator import RunOptions, RunResult, run_experiment
from resilience.stack._process import proc_info, spawn_detached, stop_group
from resilience.stack.components import Component, Context
from tests.integration.conftest import StackHandle, port_offset

T = TypeVar("T")
RESILIENCE = str(Path(sys.executable).with_name("resilience"))


def wait_for(predicate: Callable[[], T | None], *, timeout: float, every: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.1f}s")
        time.sleep(every)


def start_component(component: Component, ctx: Context) -> int:
    """Start one of the stack's components outside the stack (its own prepare and launch),
    wait until its probe is happy; its process group id (for ``stop_group``)."""
    component.prepare(ctx)
    pid = spawn_detached(component.launch(ctx))
    info = proc_info(pid)
    assert info is not None, f"{component.name} exited at once: {ctx.log(component.name)}"

    def healthy() -> bool:
        return component.probe(ctx) is None

    try:
        wait_for(healthy, timeout=60, every=0.2)
    except AssertionError:
        stop_group(info.pgid)
        log = ctx.log(component.name)
        raise AssertionError(f"{component.name} not healthy:\n{log.read_text()[-2000:]}") from None
    return info.pgid


def cli_env(handle: StackHandle) -> dict[str, str]:
    """Environment that points the `resilience` command at the session's stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_PORT_")}
    env["RESILIENCE_STATE_DIR"] = str(handle.state)
    env["RESILIENCE_PORT_OFFSET"] = str(port_offset())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(handle: StackHandle, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`resilience ARGS...` against the session's stack; output captured, never raises."""
    return subprocess.run(
        [RESILIENCE, *args], env=cli_env(handle), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def toxiproxy_state(handle: StackHandle) -> dict[str, Any]:
    """Toxiproxy's proxies as its API reports them (name -> proxy JSON)."""
    response = httpx.get(f"{handle.toxiproxy_url}/proxies", timeout=3.0)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def leftovers(handle: StackHandle) -> list[str]:
    """Toxics still present and proxies still disabled (empty when the stack is clean)."""
    found: list[str] = []
    for name, proxy in toxiproxy_state(handle).items():
        found.extend(f"{name}/{t['name']}" for t in proxy.get("toxics", []))
        if not proxy.get("enabled", True):
            found.append(f"{name} disabled")
    return found


def read_journal(run_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir / "journal.json").read_text())
    except (OSError, ValueError):
        return None
    return data


@dataclass
class RunCache:
    """Runs each (experiment, profile, mode, options) once per session and shares the result.

    Several tests assert different things about the same run (exit code, SLOs, findings,
    reports); running it once keeps the suite short.
    """

    handle: StackHandle
    root: Path
    results: dict[tuple[Any, ...], RunResult] = field(default_factory=dict)

    def run(
        self,
        experiment: str,
        *,
        mode: str,
        profile: str | None = "smoke",
        overrides: tuple[str, ...] = (),
        key: str = "",
    ) -> RunResult:
        cache_key = (experiment, profile, mode, overrides, key)
        if cache_key not in self.results:
            loaded = load_experiment(experiment, profile=profile, overrides=list(overrides))
            slug = "-".join(filter(None, (experiment, profile, mode, key)))
            options = RunOptions(
                out=self.root / f"{len(self.results):02d}-{slug}",
                shop_mode=mode,  # type: ignore[arg-type]
                config=self.handle.config,
            )
            self.results[cache_key] = run_experiment(loaded, options)
        return self.results[cache_key]
