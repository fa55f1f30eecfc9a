"""Start-up: from typing the command to the first request on the wire, ours against Locust's CLI.

    .venv/bin/python benchmarks/startup.py [--rounds 8] [--offset 2400] [--write-results]

On a private stack that is up before the first round (its own state directory and ports,
the shop hardened), each round runs, alternately and in a rotating order:

- ``resilience run FILE --no-stack`` of a two-second experiment (GET /catalog/items, no
  faults, every request's trace id kept) with 1 load worker, and with 2;
- ``locust -f FILE --headless -t 2s`` of the same request with 1 process, and with
  ``--processes 2``.

"Invocation" is the wall clock just before the process is started; "first request" is the
send time of the earliest request: ours from the run directory (t0 plus the earliest kept
trace's send time; every trace is kept), Locust's from its own request event
(``start_time``), written to a file by the locustfile. Everything else the commands do
afterwards (ours: analysis and reports) is not timed. Writes the "Start-up" section of
RESULTS.md with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _runs import LOCUST, RESILIENCE, bench_env, fresh_dir, machine, stack, write_section

EXPERIMENT = """\
name: startup
description: Two seconds of GET /catalog/items, to time the start.
load:
  stages: [{{duration: 2s, users: {users}, spawn_rate: {users}}}]
  workers: {workers}
  trace_sample: 100%
  warmup: 0s
  workload:
    wait: {{min: 100ms, max: 100ms}}
    requests:
      - {{name: GET /catalog/items, path: /catalog/items}}
"""

LOCUSTFILE = """\
import os, time
from locust import FastHttpUser, between, events, task

OUT = os.environ["STARTUP_FIRST_REQUEST"]

@events.request.add_listener
def first(start_time=None, **kwargs):
    if start_time and not os.path.exists(OUT):
        with open(OUT, "w") as handle:
            handle.write(repr(start_time))

class Shop(FastHttpUser):
    wait_time = between(0.1, 0.1)

    @task
    def items(self):
        self.client.get("/catalog/items")
"""


def ours(env: dict[str, str], work: Path, workers: int) -> float:
    """Seconds from invocation to the first request of `resilience run`."""
    experiment = work / f"startup-{workers}.yaml"
    experiment.write_text(EXPERIMENT.format(users=workers, workers=workers))
    out = fresh_dir(work / f"run-{workers}")
    invoked = time.time()
    done = subprocess.run(
        [RESILIENCE, "run", str(experiment), "--no-stack", "--out", str(out)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    traces = out / "trace_ids.jsonl"
    if done.returncode not in (0, 1) or not traces.exists():
        raise SystemExit(f"resilience run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    t0 = json.loads((out / "load.json").read_text())["t0"]
    first = min(json.loads(line)["t"] for line in traces.read_text().splitlines() if line)
    return t0 + first - invoked


def plain(host: str, work: Path, processes: int) -> float:
    """Seconds from invocation to the first request of `locust -f FILE --headless`."""
    locustfile = work / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    marker = work / f"first-{processes}.txt"
    marker.unlink(missing_ok=True)
    extra = ["--processes", str(processes)] if processes > 1 else []
    env = dict(os.environ, STARTUP_FIRST_REQUEST=str(marker))
    invoked = time.time()
    subprocess.run(
        [LOCUST, "-f", str(locustfile), "--headless", "-u", str(processes), "-r",
         str(processes), "-t", "2s", "-H", host, "--only-summary", "--loglevel", "WARNING",
         *extra],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    if not marker.exists():
        raise SystemExit("locust sent no request")
    return float(marker.read_text()) - invoked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--offset", type=int, default=2400)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-startup"))
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument(
        "--old", type=Path, help="also time this checkout's code (PYTHONPATH) beside ours"
    )
    parser.add_argument("--old-label", default="old code")
    args = parser.parse_args()
    env = bench_env(args.state, args.offset)
    old_env = None
    if args.old is not None:
        old_env = dict(env, PYTHONPATH=str(args.old.resolve()))
    fresh_dir(args.state)
    up = subprocess.run(
        [RESILIENCE, "stack", "up", "--shop-mode", "hardened"], env=env, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    if up.returncode != 0:
        raise SystemExit(f"stack up failed:\n{up.stderr[-3000:]}")
    host = f"http://127.0.0.1:{8000 + args.offset}"
    kinds = ["ours-1", "locust-1", "ours-2", "locust-2"]
    if old_env is not None:
        kinds += ["old-1", "old-2"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    loads: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
            work = Path(tmp)
            for round_no in range(args.rounds):
                order = kinds[round_no % len(kinds) :] + kinds[: round_no % len(kinds)]
                for kind in order:
                    who, count = kind.split("-")
                    if who in ("ours", "old"):
                        run_env = old_env if who == "old" and old_env is not None else env
                        seconds = ours(run_env, work, int(count))
                    else:
                        seconds = plain(host, work, int(count))
                    times[kind].append(seconds)
                loads.append(os.getloadavg()[0])
                print(
                    f"round {round_no + 1}: "
                    + "  ".join(f"{k} {times[k][-1]:.3f} s" for k in kinds)
                    + f"  (load {loads[-1]:.1f})",
                    flush=True,
                )
    finally:
        stack(env, "down")
    body = report(times, loads, args)
    print(body)
    if args.write_results:
        write_section("Start-up", body)


def report(times: dict[str, list[float]], loads: list[float], args: argparse.Namespace) -> str:
    rows = [
        "| command | workers | median s | min s | max s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "ours": "`resilience run FILE --no-stack`",
        "locust": "`locust -f FILE --headless`",
        "old": f"`resilience run FILE --no-stack`, {args.old_label}",
    }
    for kind, values in times.items():
        who, count = kind.split("-")
        rows.append(
            f"| {names[who]} | {count} | {statistics.median(values):.3f} | "
            f"{min(values):.3f} | {max(values):.3f} |"
        )
    ratios = []
    for count in ("1", "2"):
        paired = [
            a / b for a, b in zip(times[f"ours-{count}"], times[f"locust-{count}"], strict=True)
        ]
        ratios.append(
            f"{count} worker(s): ours / Locust's CLI **{statistics.median(paired):.2f}** "
            f"(median of the rounds' ratios; {min(paired):.2f}-{max(paired):.2f})"
        )
        if f"old-{count}" in times:
            against = [
                a / b for a, b in zip(times[f"ours-{count}"], times[f"old-{count}"], strict=True)
            ]
            ratios.append(
                f"{count} worker(s): ours / {args.old_label} **{statistics.median(against):.2f}**"
                f" ({min(against):.2f}-{max(against):.2f})"
            )
    return "\n".join(
        [
            f"`benchmarks/startup.py --rounds {args.rounds}"
            + (f" --old OLD` (OLD: {args.old_label})" if args.old is not None else "`")
            + f", {machine()}; load average "
            f"during the rounds {min(loads):.1f}-{max(loads):.1f}. Invocation (the wall "
            "clock before the process starts) to the first request sent, the stack already "
            "up; Locust with `--processes 2` for two workers.",
            "",
            *rows,
            "",
            *[f"- {line}" for line in ratios],
        ]
    )


if __name__ == "__main__":
    main()
