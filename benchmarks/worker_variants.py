"""One load worker's requests per second, for copies of the package side by side, against
plain Locust: what a change to the request path is worth, without a profiler.

    .venv/bin/python benchmarks/worker_variants.py --rounds 8 NAME=DIR [NAME=DIR ...]

Each DIR holds a copy of the package (``DIR/resilience``), e.g. ``git archive OLD
resilience | tar -x -C /tmp/old``. Every run is one process pinned to CPU 1 (a worker
from that copy, or ``locust -f plain.py --headless``, 10 users, no think time, ``GET /``)
against the Go echo server (benchmarks/echo) pinned to CPU 0; requests per second are the
server's own count from 2 s to 7.5 s of the run. Modes take turns in a rotating order each
round; each ratio is the median of the rounds' ratios (paired runs, back to back). The
worker runs with ``PYTHONPATH=DIR`` from a scratch directory: ``python -m`` from the
checkout would put the checkout first on ``sys.path`` and every copy would run its code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runs import LOCUST, machine  # noqa: E402
from generator import PLAIN  # noqa: E402
from load_engine import build_echo, served, start_echo  # noqa: E402

MAKE_PLAN = """\
import sys, time
from resilience.load import LoadPlan, RequestPlan, Stage
plan = LoadPlan(
    target=sys.argv[1], t0=time.time() + 3,
    stages=[Stage(duration=8, users=10, spawn_rate=10.0)],
    requests=[RequestPlan(name="GET /", path="/")], trace_sample=0.0,
)
open("plan.json", "w").write(plan.to_json())
"""
WINDOW = (2.0, 7.5)


def window_rps(host: str, start: float) -> float:
    while time.time() < start + WINDOW[0]:
        time.sleep(0.01)
    first, t_first = served(host), time.time()
    while time.time() < start + WINDOW[1]:
        time.sleep(0.01)
    last, t_last = served(host), time.time()
    return (last - first) / (t_last - t_first)


def run_worker(copy: Path, host: str, work: Path, cpu: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(copy))
    subprocess.run(
        [sys.executable, "-c", MAKE_PLAN, host], check=True, cwd=work, env=env, timeout=60
    )
    t0 = json.loads((work / "plan.json").read_text())["t0"]
    # The worker reads commands on stdin and stops when it closes: keep it open.
    with subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE) as holder:
        worker = subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, "-m", "resilience.load.worker",
             "--plan", "plan.json"],
            stdin=holder.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=work, env=env,
        )  # fmt: skip
        try:
            return window_rps(host, t0)
        finally:
            worker.wait(timeout=60)
            holder.kill()


def run_plain(host: str, work: Path, cpu: int) -> float:
    before = served(host)
    process = subprocess.Popen(
        ["taskset", "-c", str(cpu), LOCUST, "-f", "plain.py", "--headless", "-u", "10",
         "-r", "10", "-t", "9s", "-H", host, "--only-summary"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while served(host) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        return window_rps(host, time.time())
    finally:
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--port", type=int, default=8597)
    args = parser.parse_args()
    copies: dict[str, Path] = {}
    for item in args.variants:
        name, _, folder = item.partition("=")
        path = Path(folder).resolve()
        if not (path / "resilience" / "load" / "worker.py").is_file():
            parser.error(f"{item}: expected NAME=DIR with DIR/resilience, a copy of the package")
        copies[name] = path
    host = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="resilience-variants-") as scratch:
        work = Path(scratch)
        (work / "plain.py").write_text(PLAIN)
        server = start_echo(build_echo(work), args.port, cpu=0)
        modes: dict[str, Callable[[], float]] = {
            name: (lambda copy=copy: run_worker(copy, host, work, cpu=1))
            for name, copy in copies.items()
        }
        modes["plain"] = lambda: run_plain(host, work, cpu=1)
        results: dict[str, list[float]] = {name: [] for name in modes}
        names = list(modes)
        try:
            for index in range(args.rounds):
                order = names[index % len(names) :] + names[: index % len(names)]
                for name in order:
                    results[name].append(modes[name]())
                print(index + 1, {k: round(v[-1]) for k, v in results.items()}, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    first = names[0]
    print(f"\n`benchmarks/worker_variants.py --rounds {args.rounds}`, {machine()}\n")
    print(f"| mode | req/s median | / {first} | / plain Locust |\n| --- | ---: | ---: | ---: |")
    for name, values in results.items():
        to_first = statistics.median(a / b for a, b in zip(values, results[first], strict=True))
        to_plain = statistics.median(a / b for a, b in zip(values, results["plain"], strict=True))
        print(f"| {name} | {statistics.median(values):.0f} | {to_first:.3f} | {to_plain:.3f} |")


if __name__ == "__main__":
    main()
