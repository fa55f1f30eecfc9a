"""Generator throughput on both cores: our engine's two local workers, Locust's own
``--processes 2``, and our distributed mode (a master and two ``resilience worker``
processes on loopback), side by side.

    .venv/bin/python benchmarks/generator.py [--rounds 5] [--duration 14] [--write-results]

Every mode drives the same Go echo server (benchmarks/echo) on 127.0.0.1 with the same
users (closed model, no think time, one ``GET /``) for the same duration; nothing is
pinned: the two generator processes, their parent and the server share the machine's two
cores, as a run on this machine would. Throughput is the server's own request counter over
a steady window (from ``--warmup`` seconds in to the end); CPU is user + system time of
the mode's whole process tree over the same window (/proc). Modes run in a rotating order
each round; each ratio is the median of the rounds' ratios (paired runs, back to back).

- ``ours``: ``LoadEngine`` with 2 local workers, events consumed by a ``LoadRecorder``
  in this process (the orchestrator's side of a run);
- ``locust``: ``locust -f plain.py --processes 2 --headless`` (a master and 2 forked
  workers), the plain ``FastHttpUser`` of benchmarks/load_engine.py;
- ``dist``: ``LoadEngine`` distributed: its master child and two ``resilience worker``
  processes joining it over ZeroMQ;
- ``session``: ``ours`` with each worker started in a session of its own, as before
  (``start_new_session``): a session is a scheduler autogroup on Linux, and the local
  workers now stay in the run's (their own process group only). The ratio ours / session
  is what that choice is worth.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from _runs import LOCUST, RESILIENCE, machine, write_section  # noqa: E402
from load_engine import build_echo, served  # noqa: E402

PLAIN = """\
from locust import FastHttpUser, constant, task

class Plain(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
"""


@dataclass(frozen=True)
class Measure:
    requests: int
    wall: float
    cpu: float
    parent_cpu: float = 0.0
    """CPU seconds of the tree's root alone (ours: the run's parent; Locust: its master)."""

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def per_cpu(self) -> float:
        return self.requests / self.cpu if self.cpu > 0 else float("nan")

    @property
    def parent_cores(self) -> float:
        return self.parent_cpu / self.wall


def tree_cpu(root: int, exclude: frozenset[int] = frozenset()) -> tuple[float, float]:
    """CPU seconds (user + system) of ``root`` and every descendant alive now, except the
    trees of ``exclude`` (the echo server is a child of this process too); and of ``root``
    alone."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        stats[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total, stats.get(root, 0.0)


class Window:
    """The steady window of one run: the server's count and the tree's CPU at its edges."""

    def __init__(
        self, host: str, root: int, start: float, end: float, exclude: frozenset[int]
    ) -> None:
        self.host, self.root, self.start, self.end = host, root, start, end
        self.exclude = exclude
        self.marks: dict[str, tuple[float, int, tuple[float, float]]] = {}

    def poll(self) -> None:
        now = time.time()
        for name, at in (("begin", self.start), ("end", self.end)):
            if name not in self.marks and now >= at:
                cpu = tree_cpu(self.root, self.exclude)
                self.marks[name] = (time.time(), served(self.host), cpu)

    def measure(self) -> Measure:
        (w0, n0, c0), (w1, n1, c1) = self.marks["begin"], self.marks["end"]
        return Measure(n1 - n0, w1 - w0, c1[0] - c0[0], c1[1] - c0[1])


@contextlib.contextmanager
def own_sessions() -> Iterator[None]:
    """Workers started in this block get a session of their own (the engine's old way)."""
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if kwargs.pop("process_group", None) == 0:
            kwargs["start_new_session"] = True
        return real(*args, **kwargs)

    subprocess.Popen = popen  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def run_engine(
    host: str,
    users: int,
    duration: float,
    warmup: float,
    work: Path,
    *,
    dist: bool,
    exclude: frozenset[int],
) -> Measure:
    from resilience.load import LoadEngine, LoadPlan, LoadRecorder, RequestPlan, Stage
    from resilience.load.distributed import Distributed

    plan = LoadPlan(
        target=host,
        t0=time.time() + 3600,
        stages=[Stage(duration=duration, users=users, spawn_rate=float(users))],
        requests=[RequestPlan(name="GET /", path="/")],
        trace_sample=0.0,
    )
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix="dist-" if dist else "ours-"))
    workers: list[subprocess.Popen[bytes]] = []
    distributed = None
    if dist:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        distributed = Distributed(workers=2, port=port, wait=60)
        argv = [RESILIENCE, "worker", "--master", f"127.0.0.1:{port}"]
        workers = [
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)
        ]
    engine = LoadEngine(plan, workers=None if dist else 2, log_dir=run_dir / "logs",
                        distributed=distributed)  # fmt: skip
    with engine:
        engine.prepare()
        t0 = time.time() + 0.2
        engine.start(t0=t0)
        recorder = LoadRecorder(run_dir, t0=t0, workers=2, plan=engine.plan)
        # The `resilience worker` processes are this process's children: counted once.
        window = Window(host, os.getpid(), t0 + warmup, t0 + duration, exclude)
        while engine.running:
            window.poll()
            recorder.consume(engine.poll(0.05))
        recorder.close()
    for worker in workers:
        worker.wait(timeout=30)
    return window.measure()


def run_locust(
    host: str, users: int, duration: float, warmup: float, work: Path, *, exclude: frozenset[int]
) -> Measure:
    locustfile = work / "plain.py"
    locustfile.write_text(PLAIN)
    process = subprocess.Popen(
        [LOCUST, "-f", str(locustfile), "--processes", "2", "--headless", "-u", str(users),
         "-r", str(users), "-t", f"{duration:g}s", "-H", host, "--only-summary",
         "--loglevel", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Locust's clock starts once both workers joined; find the first request instead.
    before = served(host)
    deadline = time.monotonic() + 60
    while served(host) == before:
        if time.monotonic() > deadline:
            raise SystemExit("locust sent nothing")
        time.sleep(0.02)
    start = time.time()
    window = Window(host, process.pid, start + warmup, start + duration - 0.5, exclude)
    while process.poll() is None:
        window.poll()
        time.sleep(0.05)
    return window.measure()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=14.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=8591)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    host = f"http://127.0.0.1:{args.port}"
    kinds = ["ours", "locust", "dist", "session"]
    results: dict[str, list[Measure]] = {k: [] for k in kinds}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="generator-bench-") as tmp:
        work = Path(tmp)
        binary = build_echo(work)
        server = subprocess.Popen(
            [str(binary), "-addr", f"127.0.0.1:{args.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    served(host)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            exclude = frozenset({server.pid})
            for round_no in range(args.rounds):
                order = kinds[round_no % len(kinds) :] + kinds[: round_no % len(kinds)]
                for kind in order:
                    if kind == "locust":
                        m = run_locust(host, args.users, args.duration, args.warmup, work,
                                       exclude=exclude)  # fmt: skip
                    else:
                        with own_sessions() if kind == "session" else contextlib.nullcontext():
                            m = run_engine(host, args.users, args.duration, args.warmup, work,
                                           dist=kind == "dist", exclude=exclude)  # fmt: skip
                    results[kind].append(m)
                loads.append(os.getloadavg()[0])
                print(
                    f"round {round_no + 1}: "
                    + "  ".join(
                        f"{k} {results[k][-1].rps:6.0f} req/s {results[k][-1].per_cpu:6.0f} req/cpu-s"
                        for k in kinds
                    )
                    + f"  (load {loads[-1]:.1f})",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    body = report(results, loads, args)
    print(body)
    if args.write_results:
        write_section("Generator throughput on both cores", body)


def _ratio(a: list[Measure], b: list[Measure], attr: str) -> str:
    ratios = [getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True)]
    return f"**{statistics.median(ratios):.3f}** ({min(ratios):.2f}-{max(ratios):.2f})"


def report(results: dict[str, list[Measure]], loads: list[float], args: argparse.Namespace) -> str:
    names = {
        "ours": "ours, 2 local workers",
        "locust": "`locust --processes 2`",
        "dist": "ours distributed: master + 2 `resilience worker`",
        "session": "ours, 2 local workers, each in its own session (before)",
    }
    rows = [
        "| mode | req/s median (min-max) | req per CPU-s median | parent's cores median |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, values in results.items():
        rps = [m.rps for m in values]
        rows.append(
            f"| {names[kind]} | {statistics.median(rps):.0f} ({min(rps):.0f}-{max(rps):.0f}) | "
            f"{statistics.median(m.per_cpu for m in values):.0f} | "
            f"{statistics.median(m.parent_cores for m in values):.3f} |"
        )
    ours, plain, dist = results["ours"], results["locust"], results["dist"]
    session = results["session"]
    return "\n".join(
        [
            f"`benchmarks/generator.py --rounds {args.rounds} --duration {args.duration:g}`, "
            f"{machine()}; load average during the rounds {min(loads):.1f}-{max(loads):.1f}. "
            f"{args.users} users, no think time, `GET /` on the Go echo server, nothing "
            f"pinned; measured from {args.warmup:g} s to the end of each "
            f"{args.duration:g} s run by the server's own counter; CPU of each mode's "
            "whole process tree (ours: this process as the run's parent, the echo server "
            "excluded); the parent's cores: CPU of the tree's root alone (ours: this "
            "process, the run's parent; Locust: its master) over the window.",
            "",
            *rows,
            "",
            "| ratio (median of paired rounds, range) | req/s | req per CPU-s |",
            "| --- | ---: | ---: |",
            f"| ours / `locust --processes 2` | {_ratio(ours, plain, 'rps')} | "
            f"{_ratio(ours, plain, 'per_cpu')} |",
            f"| distributed / ours local | {_ratio(dist, ours, 'rps')} | "
            f"{_ratio(dist, ours, 'per_cpu')} |",
            f"| distributed / `locust --processes 2` | {_ratio(dist, plain, 'rps')} | "
            f"{_ratio(dist, plain, 'per_cpu')} |",
            f"| ours / ours with a session per worker (before) | {_ratio(ours, session, 'rps')} | "
            f"{_ratio(ours, session, 'per_cpu')} |",
        ]
    )


if __name__ == "__main__":
    main()
