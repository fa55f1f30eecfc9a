"""The stall test: how much of a 3-second stall each way of driving load shows in p99.

    .venv/bin/python benchmarks/stall.py [--rounds 3] [--write-results]

The Go echo server (benchmarks/echo) is frozen for 3 s (``/_freeze``), 3 s into a 10 s
run offered about 100 requests per second: every request that arrives while it is frozen
is answered when the freeze ends. Three ways of driving it take turns each round:

- ``ours, open model``: 100 req/s by arrival rate; latency counts from when each request
  was due;
- ``ours, closed model``: 5 users with 45-55 ms of think time; also its p99 corrected by the
  run's own coordinated-omission estimate (``analysis.omission``, as the run reports it);
- ``Locust``: 5 ``FastHttpUser`` with ``between(0.045, 0.055)``, p99 of its own response
  times (its request event).

The schedule's p99 is what a request due every 10 ms would see: one due during the freeze
is answered when it ends, measured from when it was due; any other at once. Each figure is
the median over the rounds and its ratio to the schedule's (1.0 = nothing hidden).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _runs import LOCUST, machine, write_section  # noqa: E402
from load_engine import build_echo, served, start_echo  # noqa: E402

from resilience import histogram as hist  # noqa: E402
from resilience.analysis.omission import estimate_omission  # noqa: E402
from resilience.experiment.loader import parse_experiment  # noqa: E402
from resilience.load import ArrivalStage, LoadEngine, LoadPlan, LoadRecorder, RequestPlan, Stage  # noqa: E402
from resilience.load.schedule import intended_times  # noqa: E402
from resilience.rundir.load import LoadData  # noqa: E402
from resilience.vocabulary import Phase  # noqa: E402

RPS, RUN_S, STALL_AT, STALL_S, USERS = 100, 10.0, 3.0, 3.0, 5
PHASES = [Phase("baseline", 1.0, STALL_AT), Phase("fault", STALL_AT, STALL_AT + STALL_S),
          Phase("recovery", STALL_AT + STALL_S, RUN_S)]  # fmt: skip
CLOSED_EXPERIMENT = f"""
name: stall
load:
  stages: [{{duration: 10s, users: {USERS}, spawn_rate: 50}}]
  workload:
    requests:
      - {{name: GET /x, path: /x}}
"""
LOCUSTFILE = """\
import json, os
from locust import FastHttpUser, between, events, task

TIMES = []

@events.request.add_listener
def _record(response_time, **_kwargs):
    TIMES.append(response_time)

@events.quitting.add_listener
def _write(**_kwargs):
    with open(os.environ["STALL_OUT"], "w") as out:
        json.dump(TIMES, out)

class Waiter(FastHttpUser):
    wait_time = between(0.045, 0.055)

    @task
    def x(self):
        self.client.get("/x")
"""


@dataclass(frozen=True)
class Result:
    p99_ms: float
    requests: int
    corrected_p99_ms: float | None = None


def schedule_p99_ms() -> float:
    due = list(intended_times([ArrivalStage(duration=RUN_S, rps=RPS)], 0, 1))
    end = STALL_AT + STALL_S
    latencies = sorted(end - t if STALL_AT <= t < end else 0.0 for t in due)
    return latencies[math.ceil(0.99 * len(latencies)) - 1] * 1000


def freeze_at(host: str, at: float) -> threading.Thread:
    def freeze() -> None:
        time.sleep(max(0.0, at - time.time()))
        with urllib.request.urlopen(f"{host}/_freeze?ms={int(STALL_S * 1000)}", timeout=5):
            pass

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    return thread


def run_ours(host: str, work: Path, *, open_model: bool) -> Result:
    shape: dict[str, object] = (
        {"arrival": [ArrivalStage(duration=RUN_S, rps=RPS)]}
        if open_model
        else {
            "stages": [Stage(duration=RUN_S, users=USERS, spawn_rate=50)],
            "wait_min": 0.045,
            "wait_max": 0.055,
        }
    )
    plan = LoadPlan(target=host, t0=0.0, requests=[RequestPlan(name="GET /x", path="/x")], **shape)
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="ours-"))
    with LoadEngine(plan, workers=1, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        t0 = time.time() + 1.0
        engine.start(t0=t0)
        freezer = freeze_at(host, t0 + STALL_AT)
        recorder = LoadRecorder(run_dir, t0=t0, workers=1, endpoints=plan.endpoints())
        deadline = time.monotonic() + RUN_S + 30
        while engine.running and time.monotonic() < deadline:
            recorder.consume(engine.poll(0.2))
        recorder.consume(engine.poll(0))
        recorder.close()
        freezer.join(timeout=10)
    data = LoadData.read(run_dir)
    merged = hist.merge_all(data.histogram(None, s) for s in data.seconds)
    [p99] = merged.percentiles_ms([99.0])
    corrected = None
    if not open_model:
        omission = estimate_omission(data, PHASES, parse_experiment(CLOSED_EXPERIMENT))
        if omission is not None:
            fixed, _added = hist.corrected_for_omission(merged, round(omission.interval * 1e6))
            [corrected] = fixed.percentiles_ms([99.0])
    return Result(p99 or 0.0, data.total_requests(), corrected)


def run_locust(host: str, work: Path) -> Result:
    out = work / "locust-times.json"
    out.unlink(missing_ok=True)
    before = served(host)
    process = subprocess.Popen(
        [LOCUST, "-f", "stall_locustfile.py", "--headless", "-u", str(USERS), "-r", "50",
         "-t", f"{RUN_S:g}s", "-H", host, "--only-summary"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
        env=dict(os.environ, STALL_OUT=str(out)),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while served(host) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        freezer = freeze_at(host, time.time() + STALL_AT)
        process.wait(timeout=RUN_S + 60)
        freezer.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    times = sorted(json.loads(out.read_text()))
    return Result(times[math.ceil(0.99 * len(times)) - 1], len(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8596)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    host = f"http://127.0.0.1:{args.port}"
    expected = schedule_p99_ms()
    modes = ["open", "closed", "locust"]
    results: dict[str, list[Result]] = {m: [] for m in modes}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="resilience-stall-") as scratch:
        work = Path(scratch)
        (work / "stall_locustfile.py").write_text(LOCUSTFILE)
        server = start_echo(build_echo(work), args.port, cpu=0)
        os.sched_setaffinity(server.pid, set(range(os.cpu_count() or 1)))  # not pinned
        try:
            for index in range(args.rounds):
                for mode in modes[index % 3 :] + modes[: index % 3]:
                    if mode == "locust":
                        results[mode].append(run_locust(host, work))
                    else:
                        results[mode].append(run_ours(host, work, open_model=mode == "open"))
                loads.append(os.getloadavg()[0])
                print(
                    f"round {index + 1}: "
                    + "  ".join(f"{m} p99 {results[m][-1].p99_ms:.0f} ms" for m in modes)
                    + f"  (load {loads[-1]:.1f})",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    body = report(results, expected, loads, args.rounds)
    print(body)
    if args.write_results:
        write_section("Stall test: open and closed models", body)


def report(
    results: dict[str, list[Result]], expected: float, loads: list[float], rounds: int
) -> str:
    def row(label: str, values: list[float], requests: list[int]) -> str:
        median = statistics.median(values)
        return (
            f"| {label} | {median:.0f} ({min(values):.0f}-{max(values):.0f}) | "
            f"**{median / expected:.3f}** | {statistics.median(requests):.0f} |"
        )

    lines = [
        f"`benchmarks/stall.py --rounds {rounds}`, {machine()}; load average during the rounds "
        f"{min(loads):.1f}-{max(loads):.1f}. About {RPS} req/s offered for {RUN_S:g} s, the Go "
        f"echo server frozen from {STALL_AT:g} s to {STALL_AT + STALL_S:g} s; nothing pinned. "
        f"The schedule's p99 (a request due every 10 ms, answered when the freeze ends): "
        f"**{expected:.0f} ms**.",
        "",
        "| mode | p99 ms, median (min-max) | p99 / schedule's | requests |",
        "| --- | ---: | ---: | ---: |",
        row("ours, open model (100 req/s)", [r.p99_ms for r in results["open"]],
            [r.requests for r in results["open"]]),
        row(f"ours, closed model ({USERS} users, 45-55 ms think)",
            [r.p99_ms for r in results["closed"]], [r.requests for r in results["closed"]]),
    ]  # fmt: skip
    corrected = [r.corrected_p99_ms for r in results["closed"] if r.corrected_p99_ms is not None]
    if corrected:
        lines.append(
            row(
                "ours, closed model, corrected by the run's omission estimate",
                corrected,
                [r.requests for r in results["closed"]],
            )
        )
    lines.append(
        row(
            f"Locust ({USERS} FastHttpUsers, between(0.045, 0.055))",
            [r.p99_ms for r in results["locust"]],
            [r.requests for r in results["locust"]],
        )
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
