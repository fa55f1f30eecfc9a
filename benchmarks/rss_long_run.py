"""Memory over a long run: the orchestrator's and the load workers' RSS, sampled every 5 s.

    python benchmarks/rss_long_run.py --minutes 30 [--old CHECKOUT] [--users 40]

Runs ``resilience run normal --profile smoke`` stretched to ``--minutes`` with ``--users``
closed-model users waiting 100-150 ms between requests (about 300 req/s on the built-in
shop), on its own stack (``RESILIENCE_STATE_DIR`` / ``RESILIENCE_PORT_OFFSET`` from the
environment, else a private one), and samples ``VmRSS`` of the ``resilience`` process and
of each load worker (its children) from /proc. Flat means: after the first 2 minutes, every
sample within ±10 % of the one at 2 minutes. ``--old``: the same run with another
checkout's code (``PYTHONPATH=CHECKOUT``), before it. Writes the samples as CSV beside the
run directory and replaces the "RSS over a long run" section of RESULTS.md. Long: run it
under ``flock /work/locks/heavy.lock`` on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import RESILIENCE, machine, stack, write_section

SAMPLE_S = 5.0
SETTLED_S = 120.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_workers(pid: int) -> list[int]:
    """The run's load workers: its children running ``resilience.load.worker`` (the stack's
    processes may be its children too)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    workers = []
    for child in found:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resilience.load.worker" in command:
            workers.append(child)
    return workers


@dataclass
class Samples:
    label: str
    rows: list[tuple[float, float, float]] = field(default_factory=list)
    """(seconds since start, orchestrator MB, largest worker MB)."""
    exit_code: int | None = None
    load_avg: list[float] = field(default_factory=list)

    def settled(self, column: int) -> tuple[float, float, float, float] | None:
        """(value at 2 min, min and max after it while the load ran, last while it ran) of
        a column (1: orchestrator, 2: worker); the load runs while a worker lives."""
        after = [r for r in self.rows if r[0] >= SETTLED_S and r[2] > 0 and r[column] > 0]
        if not after:
            return None
        values = [r[column] for r in after]
        return values[0], min(values), max(values), values[-1]

    def after_load(self) -> float:
        """The orchestrator's largest RSS once the workers were gone (evidence, analysis,
        reports)."""
        last_worker = max((r[0] for r in self.rows if r[2] > 0), default=0.0)
        return max((r[1] for r in self.rows if r[0] > last_worker), default=0.0)

    @classmethod
    def read(cls, label: str, path: Path) -> Samples:
        """Samples written by a run (the CSV, and its exit code and load averages)."""
        with path.open(newline="") as handle:
            rows = [tuple(float(v) for v in row) for row in list(csv.reader(handle))[1:]]
        meta_path = path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(
            label,
            [(r[0], r[1], r[2]) for r in rows],
            meta.get("exit_code"),
            list(meta.get("load_avg", [])),
        )


def run_once(
    label: str, args: argparse.Namespace, env: dict[str, str], out: Path, minutes: int
) -> Samples:
    command = [
        RESILIENCE, "run", "normal", "--profile", "smoke", "--shop-mode", "hardened",
        "--out", str(out),
        "--set", f"load.stages=[{{duration: {minutes}m, users: {args.users}, spawn_rate: 10}}]",
        "--set", "load.workload.wait={min: 100ms, max: 150ms}",
    ]  # fmt: skip
    samples = Samples(label)
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    next_at = started
    while process.poll() is None:
        now = time.monotonic()
        if now >= next_at:
            parent = rss_mb(process.pid) or 0.0
            workers = [m for c in load_workers(process.pid) if (m := rss_mb(c)) is not None]
            samples.rows.append(
                (round(now - started, 1), round(parent, 1), max(workers, default=0.0))
            )
            samples.load_avg.append(os.getloadavg()[0])
            next_at += SAMPLE_S
        time.sleep(0.2)
    samples.exit_code = process.returncode
    with (out.parent / f"{out.name}-rss.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seconds", "orchestrator_mb", "worker_mb"])
        writer.writerows(samples.rows)
    meta = {"exit_code": samples.exit_code, "load_avg": samples.load_avg}
    (out.parent / f"{out.name}-rss.json").write_text(json.dumps(meta))
    return samples


def rate(run_dir: Path, rows: list[tuple[float, float, float]]) -> str:
    """Requests per second the run sent (load.json over the seconds a worker lived)."""
    try:
        requests = json.loads((run_dir / "load.json").read_text())["requests"]
    except (OSError, ValueError, KeyError):
        return "-"
    alive = [r[0] for r in rows if r[2] > 0]
    seconds = (max(alive) - min(alive)) if len(alive) > 1 else 0.0
    return f"{requests / seconds:.0f}" if seconds else "-"


def describe(samples: Samples, run_dir: Path) -> list[str]:
    lines: list[str] = []
    req_s = rate(run_dir, samples.rows)
    for column, who in ((1, "orchestrator"), (2, "load worker")):
        found = samples.settled(column)
        if found is None:
            lines.append(f"| {samples.label} | {req_s} | {who} | - | - | - | - | - | - | - |")
            continue
        at2, low, high, last = found
        first = next((r[column] for r in samples.rows if r[column] > 0), 0.0)
        spread = max(high / at2 - 1, 1 - low / at2)
        flat = "yes" if spread <= 0.10 else "**no**"
        after = f"{samples.after_load():.0f}" if column == 1 else "-"
        lines.append(
            f"| {samples.label} | {req_s} | {who} | {first:.0f} | {at2:.0f} | {low:.0f}-{high:.0f} | "
            f"{last:.0f} | {spread:+.1%} | {flat} | {after} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--old", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--old-minutes", type=int, help="the old code's run (default: --minutes)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rss-long-run"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the section from --work's CSVs"
    )
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("RESILIENCE_STATE_DIR", str(args.work / "state"))
    env.setdefault("RESILIENCE_PORT_OFFSET", "3200")
    args.work.mkdir(parents=True, exist_ok=True)
    results: list[Samples] = []
    if args.report_only:
        labels = (["old"] if args.old is not None else []) + ["new"]
        results = [Samples.read(label, args.work / f"{label}-rss.csv") for label in labels]
        write_results(args, results)
        return
    try:
        if args.old is not None:
            old_env = {**env, "PYTHONPATH": str(args.old)}
            minutes = args.old_minutes or args.minutes
            results.append(run_once("old", args, old_env, args.work / "old", minutes))
        results.append(run_once("new", args, env, args.work / "new", args.minutes))
    finally:
        stack(env, "down")
    write_results(args, results)


def write_results(args: argparse.Namespace, results: list[Samples]) -> None:
    loads = [v for s in results for v in s.load_avg] or [float("nan")]
    lines = [
        f"`benchmarks/rss_long_run.py --minutes {args.minutes} --users {args.users}"
        f"{' --old OLD' if args.old else ''}"
        f"{f' --old-minutes {args.old_minutes}' if args.old_minutes else ''}`, {machine()}; "
        "load average during the runs "
        f"{min(loads):.1f}-{max(loads):.1f} (median {sorted(loads)[len(loads) // 2]:.1f}). "
        f"`resilience run normal --profile smoke` stretched to {args.minutes} min (old: "
        f"{args.old_minutes or args.minutes} min), "
        f"{args.users} closed-model users, 100-150 ms think time, hardened shop; VmRSS every "
        f"{SAMPLE_S:g} s; flat = every sample after {SETTLED_S / 60:g} min within ±10 % of "
        "the one at 2 min. Exit codes: "
        + ", ".join(f"{s.label} {s.exit_code}" for s in results)
        + ".",
        "",
        "| code | req/s | process | first MB | at 2 min | after 2 min, min-max | load's end "
        "| spread | flat | after the load, max |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for samples in results:
        lines.extend(describe(samples, args.work / samples.label))
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("RSS over a long run", body)


if __name__ == "__main__":
    main()
