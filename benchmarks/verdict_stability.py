"""Verdicts that do not flip on their own: every smoke cell of the ground-truth matrix, many
times, on a quiet machine; then the hardened cells with both cores kept busy by CPU hogs.

    .venv/bin/python benchmarks/verdict_stability.py [--repeat 10] [--busy-repeat 5]
        [--cells db-hang:fragile,db-hang:hardened] [--offset 2000]

Quiet part: each cell (both shop modes x the five database experiments, the expectations of
tests/integration/test_ground_truth.py's MATRIX) is run ``--repeat`` times in a row through
the CLI on a private stack kept up between runs; a cell is stable when every run gave the
expected exit code and the matrix's findings (found, absent, one-of). Busy part: the hardened
cells ``--busy-repeat`` times each while one CPU hog per core spins; a run may pass or report
the rig (exit 3, status inconclusive), but it must never fail with a finding about the
target (exit 1). Writes the "Verdict stability" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _runs import ROOT, Run, bench_env, fresh_dir, machine, run, stack, write_section

sys.path.insert(0, str(ROOT))
from tests.integration.test_ground_truth import MATRIX, Cell


def _spin(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


@contextmanager
def hogs(count: int) -> Iterator[None]:
    """``count`` processes that keep a core each busy until the block ends."""
    stop = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def holds(result: Run, cell: Cell) -> tuple[bool, str]:
    """Whether one run matches its cell: exit code, findings found, absent, one of."""
    found = {f["kind"] for f in result.journal.get("findings", []) if f.get("status") == "found"}
    if result.exit_code != cell.exit_code:
        return False, f"exit {result.exit_code} ({result.journal.get('reason', 'no journal')})"
    if not cell.found <= found:
        return False, f"missing {sorted(cell.found - found)}"
    if cell.absent & found:
        return False, f"unexpected {sorted(cell.absent & found)}"
    if cell.one_of and not cell.one_of & found:
        return False, f"none of {sorted(cell.one_of)}"
    return True, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--busy-repeat", type=int, default=5)
    parser.add_argument("--cells", default="", help="experiment:mode,... (default: all)")
    parser.add_argument("--offset", type=int, default=2000)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-stability"))
    args = parser.parse_args()
    cells = list(MATRIX)
    if args.cells:
        wanted = {tuple(c.split(":")) for c in args.cells.split(",")}
        cells = [c for c in cells if c in wanted]
    state = fresh_dir(args.state)
    env = bench_env(state / "stack", args.offset)
    rows: list[str] = []
    busy_rows: list[str] = []
    started = time.monotonic()
    try:
        for experiment, mode in cells:
            cell = MATRIX[(experiment, mode)]
            codes: list[int] = []
            misses: list[str] = []
            for i in range(args.repeat):
                result = run(env, state / "runs" / f"{experiment}-{mode}-{i}", experiment, mode)
                codes.append(result.exit_code)
                ok, why = holds(result, cell)
                if not ok:
                    misses.append(f"run {i + 1}: {why}")
                print(f"{experiment} {mode} {i + 1}/{args.repeat}: exit {result.exit_code} "
                      f"{'ok' if ok else why}", flush=True)  # fmt: skip
            same = sum(1 for c in codes if c == cell.exit_code)
            rows.append(
                f"| {experiment} | {mode} | {cell.exit_code} | {same}/{len(codes)} | "
                f"{len(codes) - len(misses)}/{len(codes)} | {'; '.join(misses) or '—'} |"
            )
        for experiment, mode in [c for c in cells if c[1] == "hardened"]:
            outcomes: list[str] = []
            failed = 0
            with hogs(os.cpu_count() or 2):
                for i in range(args.busy_repeat):
                    result = run(env, state / "busy" / f"{experiment}-{i}", experiment, mode)
                    status = result.journal.get("status", "?")
                    outcomes.append(f"{result.exit_code}/{status}")
                    failed += result.exit_code == 1
                    print(f"busy {experiment} {i + 1}: exit {result.exit_code} {status}",
                          flush=True)  # fmt: skip
            busy_rows.append(f"| {experiment} | {', '.join(outcomes)} | {failed} |")
    finally:
        stack(env, "down")
    minutes = (time.monotonic() - started) / 60
    body = f"""Command: `.venv/bin/python benchmarks/verdict_stability.py --repeat {args.repeat}
--busy-repeat {args.busy_repeat}` ({machine()}; {minutes:.0f} minutes in all).

Quiet machine: each smoke cell of the ground-truth matrix {args.repeat} times in a row.

| experiment | shop | expected exit | same exit | matrix held | misses |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Both cores kept busy by one CPU hog each, hardened cells {args.busy_repeat} times (exit /
status per run; a run may pass or report the rig, never fail with a target finding):

| experiment | runs | exit 1 |
| --- | --- | --- |
{chr(10).join(busy_rows)}
"""
    write_section("Verdict stability", body)
    print(body)


if __name__ == "__main__":
    main()
