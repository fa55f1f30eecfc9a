"""Benchmark: our load worker against plain Locust FastHttpUser, one core each.

Both generators drive the same local Go echo server (benchmarks/echo, standard library
only) on 127.0.0.1 with the same number of users, no think time, for the same duration;
the server runs on one core and the generator under test on the other. The two run
alternately (ours, plain, ours, plain, ...) in one invocation so that drift on a shared
machine hits both. Throughput is counted over the same steady window (after the warm-up
second(s)) for both: ours from the per-second samples by send time, plain Locust from its
request counter. The ratio ours / plain is the number to watch (target >= 0.9).

    .venv/bin/python benchmarks/load_engine.py                  # print the table
    .venv/bin/python benchmarks/load_engine.py --write-results  # and update RESULTS.md

``--plain-child`` is the plain-Locust side, run in its own pinned process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Load engine"


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def build_echo(out_dir: Path) -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = out_dir / "echo"
    subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=HERE / "echo", check=True, timeout=300
    )
    return binary


def start_echo(binary: Path, port: int, cpu: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(binary), "-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: _pin(cpu),  # noqa: PLW1509 - single-threaded parent
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the echo server did not start")


def run_ours(
    host: str, users: int, duration: float, warmup: float, *, cpu: int, work: Path
) -> float:
    from resilience.load import LoadEngine, LoadPlan, LoadRecorder, RequestPlan, Stage

    plan = LoadPlan(
        target=host,
        t0=time.time() + 3600,  # replaced at start, once the worker is ready
        stages=[Stage(duration=duration, users=users, spawn_rate=float(users))],
        requests=[RequestPlan(name="GET /", path="/")],
    )
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="ours-"))
    with LoadEngine(plan, workers=1, log_dir=run_dir / "logs") as engine:
        engine.prepare()
        for pid in engine.pids:
            os.sched_setaffinity(pid, {cpu})
        t0 = time.time() + 0.5
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=1)
        deadline = time.monotonic() + duration + 30
        while engine.running and time.monotonic() < deadline:
            recorder.consume(engine.poll(1.0))
        recorder.consume(engine.poll(0))
        recorder.close()
    from resilience.load import LoadData

    data = LoadData.read(run_dir)
    first, last = int(warmup), int(duration)
    counted = sum(sum(data.counts(None, s).values()) for s in range(first, last))
    return counted / (last - first)


def run_plain(host: str, users: int, duration: float, warmup: float, cpu: int) -> float:
    process = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--plain-child",
            "--host",
            host,
            "--users",
            str(users),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=lambda: _pin(cpu),
        check=True,
    )
    return float(json.loads(process.stdout.strip().splitlines()[-1])["rps"])


def plain_child(host: str, users: int, duration: float, warmup: float) -> None:
    """Plain Locust in library mode: a minimal FastHttpUser, headless, no web UI."""
    import gevent
    from locust import FastHttpUser, constant, task
    from locust.env import Environment

    class Plain(FastHttpUser):
        wait_time = constant(0)

        @task
        def index(self) -> None:
            self.client.get("/")

    env = Environment(user_classes=[Plain], host=host)
    runner = env.create_local_runner()
    start = time.monotonic()
    runner.start(users, spawn_rate=float(users))
    gevent.sleep(max(0.0, start + warmup - time.monotonic()))
    begin_count, begin = env.stats.total.num_requests, time.monotonic()
    gevent.sleep(max(0.0, start + duration - time.monotonic()))
    end_count, end = env.stats.total.num_requests, time.monotonic()
    runner.quit()
    print(json.dumps({"rps": (end_count - begin_count) / (end - begin)}))


def write_results(table: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    block = f"{SECTION}\n\n{table}\n"
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        following = rest.find("\n## ")
        tail = rest[following + 1 :] if following >= 0 else ""
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8590)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.host, args.users, args.duration, args.warmup)
        return

    sys.path.insert(0, str(ROOT))
    host = f"http://127.0.0.1:{args.port}"
    _pin(args.server_cpu)  # this process only reads events once a second
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        work = Path(tmp)
        server = start_echo(build_echo(work), args.port, args.server_cpu)
        ours: list[float] = []
        plain: list[float] = []
        try:
            for round_no in range(1, args.rounds + 1):
                a = run_ours(
                    host, args.users, args.duration, args.warmup, cpu=args.client_cpu, work=work
                )
                b = run_plain(host, args.users, args.duration, args.warmup, args.client_cpu)
                ours.append(a)
                plain.append(b)
                print(
                    f"round {round_no}: ours {a:8.1f} req/s   plain {b:8.1f} req/s   "
                    f"ratio {a / b:.3f}",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    rows = [
        "| round | ours (req/s) | plain Locust (req/s) | ours / plain |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for i, (a, b) in enumerate(zip(ours, plain, strict=True), start=1):
        rows.append(f"| {i} | {a:.0f} | {b:.0f} | {a / b:.3f} |")
    med_a, med_b = statistics.median(ours), statistics.median(plain)
    rows.append(f"| median | {med_a:.0f} | {med_b:.0f} | {med_a / med_b:.3f} |")
    table = "\n".join(
        [
            f"`benchmarks/load_engine.py`, {time.strftime('%Y-%m-%d')}: {args.users} users, "
            f"no think time, {args.duration:.0f} s per run (throughput over seconds "
            f"{args.warmup:.0f}-{args.duration:.0f}), {args.rounds} alternating rounds; "
            f"Go echo server pinned to CPU {args.server_cpu}, generator to CPU "
            f"{args.client_cpu}; Python {platform.python_version()}, {os.cpu_count()} CPUs "
            "(shared with other work, so absolute numbers move; the ratio is the point).",
            "",
            *rows,
        ]
    )
    print()
    print(table)
    if args.write_results:
        write_results(table)
        print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
