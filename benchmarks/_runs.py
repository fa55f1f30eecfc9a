"""Shared by the run benchmarks: a private stack, the `resilience` command, RESULTS.md sections.

Each benchmark runs the real command line against its own stack (its own state directory
and port offset, so a developer's stack is untouched), reads the journals it wrote, and
replaces its own section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resilience.experiment.catalogue import catalogue_entries

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
RESILIENCE = str(Path(sys.executable).with_name("resilience"))
LOCUST = str(Path(sys.executable).with_name("locust"))


def bench_env(state: Path, offset: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_PORT_")}
    env["RESILIENCE_STATE_DIR"] = str(state)
    env["RESILIENCE_PORT_OFFSET"] = str(offset)
    return env


@dataclass
class Run:
    name: str
    mode: str
    exit_code: int
    wall: float
    journal: dict[str, Any]
    run_dir: Path

    @property
    def found(self) -> list[str]:
        return [
            f"{f['kind']}: {f['summary']}"
            for f in self.journal.get("findings", [])
            if f.get("status") == "found"
        ]

    def lateness(self) -> list[float]:
        late: list[float] = []
        for fault in self.journal.get("faults", []):
            if fault.get("applied_at") is not None:
                late.append(fault["applied_at"] - fault["scheduled_at"])
            if fault.get("healed_at") is not None:
                late.append(fault["healed_at"] - fault["scheduled_end"])
        return late


def run(
    env: dict[str, str], out: Path, experiment: str, mode: str, *extra: str, timeout: float = 600
) -> Run:
    """`resilience run EXPERIMENT --profile smoke --shop-mode MODE`; wall time includes
    whatever the command had to start."""
    started = time.monotonic()
    done = subprocess.run(
        [RESILIENCE, "run", experiment, "--profile", "smoke", "--shop-mode", mode,
         "--out", str(out), *extra],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    journal_path = out / "journal.json"
    journal = json.loads(journal_path.read_text()) if journal_path.exists() else {}
    if not journal:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    return Run(experiment, mode, done.returncode, wall, journal, out)


def catalogue(*, faults: bool) -> list[str]:
    """The catalogue's experiments with faults (or without: the seed load tests)."""
    return [e.name for e in catalogue_entries(ROOT / "experiments") if bool(e.faults) == faults]


def stack(env: dict[str, str], action: str) -> None:
    subprocess.run([RESILIENCE, "stack", action], env=env, capture_output=True, check=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{load:.1f} at the end"
    )


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path
