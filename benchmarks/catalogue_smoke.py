"""The catalogue's smoke runs through the CLI: wall time (stack start included), fault stamp
lateness (p50/p99/max against the schedule), report sizes, verdicts.

    .venv/bin/python benchmarks/catalogue_smoke.py [--modes fragile,hardened] [--offset 2000]

Runs every experiment of the catalogue that has faults on a private stack (state in
/tmp/resilience-bench-catalogue, ports shifted by the offset) that is down before each run:
every run starts it and stops what it started, as `resilience run` does in CI. Writes the
"Catalogue smoke runs" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import (
    Run,
    bench_env,
    catalogue,
    fresh_dir,
    machine,
    percentile,
    run,
    stack,
    write_section,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="hardened,fragile")
    parser.add_argument("--offset", type=int, default=2000)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-catalogue"))
    args = parser.parse_args()
    state = fresh_dir(args.state)
    env = bench_env(state / "stack", args.offset)
    runs: list[Run] = []
    try:
        stack(env, "down")
        for mode in args.modes.split(","):
            for experiment in catalogue(faults=True):
                out = state / "runs" / f"{experiment}-{mode}"
                result = run(env, out, experiment, mode, "--junit", str(out.parent / "j.xml"))
                runs.append(result)
                print(
                    f"{experiment:16} {mode:9} exit {result.exit_code} "
                    f"{result.wall:5.1f} s  late max {max(result.lateness(), default=0):.3f} s",
                    flush=True,
                )
    finally:
        stack(env, "down")
    late = [x for r in runs for x in r.lateness()]
    rows = [
        f"| {r.name} | {r.mode} | {r.exit_code} | {r.journal.get('status', '?')} | "
        f"{r.wall:.1f} | {(r.run_dir / 'report.html').stat().st_size / 1024:.0f} KB | "
        f"{max(r.lateness(), default=0) * 1000:.0f} |"
        for r in runs
    ]
    walls = [r.wall for r in runs]
    body = f"""
`benchmarks/catalogue_smoke.py`, {machine()}. Every fault experiment of the catalogue,
`resilience run NAME --profile smoke --shop-mode MODE --junit FILE` on a private stack
that is down before each run: every run starts it itself and stops what it started, as a
CI job does, so every wall time includes a stack start (the first from nothing, PostgreSQL
initdb included).

| experiment | mode | exit | status | wall s | report.html | worst stamp lateness ms |
| --- | --- | ---: | --- | ---: | ---: | ---: |
{chr(10).join(rows)}

Fault stamps over {len(late)} applies and heals: p50 {percentile(late, 50) * 1000:.1f} ms, \
p99 {percentile(late, 99) * 1000:.1f} ms, max {max(late, default=0) * 1000:.1f} ms after \
their schedule (budget 100 ms). Wall time per smoke run, stack start included: median \
{percentile(walls, 50):.1f} s, first run (PostgreSQL initdb included) {walls[0]:.1f} s, \
max {max(walls):.1f} s (budget 120 s). Largest report.html: \
{max((r.run_dir / "report.html").stat().st_size for r in runs) / 1024:.0f} KB (budget 2 MB).
"""
    write_section("Catalogue smoke runs", body)
    print(body)


if __name__ == "__main__":
    main()
