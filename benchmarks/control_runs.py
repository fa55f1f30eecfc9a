"""Control runs: experiments without faults must give no findings (no false positives).

    .venv/bin/python benchmarks/control_runs.py [--repeats 2] [--offset 2100]

Runs every seed load test of the catalogue (its experiments without faults) in both shop
modes, ``--repeats`` times, on a private stack, plus each fault experiment with its faults
removed (``--set faults=[]``) once per mode, and counts the findings. Writes the "Control
runs" section of RESULTS.md. The suite runs two of these (tests/integration/
test_run_contract.py); this is the larger sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import Run, bench_env, catalogue, fresh_dir, machine, run, stack, write_section

FAULTED = ("db-outage", "db-hang", "pool-exhaustion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--offset", type=int, default=2100)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-controls"))
    args = parser.parse_args()
    state = fresh_dir(args.state)
    env = bench_env(state / "stack", args.offset)
    seeds = catalogue(faults=False)
    plan: list[tuple[str, str, tuple[str, ...]]] = []
    for mode in ("hardened", "fragile"):
        for _ in range(args.repeats):
            plan.extend((seed, mode, ()) for seed in seeds)
        plan.extend((name, mode, ("--set", "faults=[]")) for name in FAULTED)
    runs: list[Run] = []
    try:
        for i, (experiment, mode, extra) in enumerate(plan):
            out = state / "runs" / f"{i:02d}-{experiment}-{mode}"
            result = run(env, out, experiment, mode, *extra)
            runs.append(result)
            print(f"{experiment:16} {mode:9} exit {result.exit_code} findings {result.found}")
    finally:
        stack(env, "down")
    false_positives = [(r, f) for r in runs for f in r.found]
    failed = [r for r in runs if r.exit_code != 0]
    rows = "\n".join(
        f"| {r.name}{' (faults removed)' if r.name in FAULTED else ''} | {r.mode} | "
        f"{r.exit_code} | {len(r.found)} |"
        for r in runs
    )
    listing = "\n".join(f"- {r.name} ({r.mode}): {f}" for r, f in false_positives) or "none"
    body = f"""
`benchmarks/control_runs.py`, {machine()}. {len(runs)} runs without any fault (smoke
profiles; seed load tests x both shop modes x {args.repeats}, plus fault experiments with
`--set faults=[]`). **{len(false_positives)} findings (false positives), {len(failed)}
runs with a non-zero exit.**

| experiment | mode | exit | findings |
| --- | --- | ---: | ---: |
{rows}

Findings: {listing}
"""
    write_section("Control runs", body)
    print(body)


if __name__ == "__main__":
    main()
