"""The stack's footprint: how long `resilience stack up` and `down` take, and how much
memory the whole running stack holds.

    .venv/bin/python benchmarks/stack_footprint.py [--rounds 3] [--offset 2200] [--settle 10]

On a private stack (state in /tmp/resilience-bench-stack, ports shifted by the offset),
each round times, through the real command line: `stack up` from nothing (an empty state
directory, so PostgreSQL's initdb is included), `stack down`, `stack up` with the state
already there, `stack up` again while everything runs (a no-op), and `stack down`. After
the second `up` and ``--settle`` seconds idle, it reads the resident memory of every
process of every component (each component's process and its descendants) from
/proc/PID/smaps_rollup: RSS, and PSS, which counts pages shared between processes (such
as PostgreSQL's shared memory) once. Writes the "Stack footprint" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _runs import RESILIENCE, bench_env, machine, stack, write_section


def timed(env: dict[str, str], *args: str) -> float:
    start = time.monotonic()
    subprocess.run(
        [RESILIENCE, "stack", *args], env=env, capture_output=True, check=True, timeout=300
    )
    return time.monotonic() - start


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def memory(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Component -> (RSS KiB, PSS KiB) over the component's process tree."""
    status = subprocess.run(
        [RESILIENCE, "stack", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    document = json.loads(status.stdout)
    components = document["components"] if isinstance(document, dict) else document
    tree = _children()
    result: dict[str, tuple[int, int]] = {}
    for component in components:
        pid = component.get("pid")
        if not pid:
            raise SystemExit(f"{component.get('name')} is not running")
        rss = pss = 0
        for process in _descendants(int(pid), tree):
            try:
                lines = Path(f"/proc/{process}/smaps_rollup").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss += int(rest.split()[0])
                elif key == "Pss":
                    pss += int(rest.split()[0])
        result[str(component["name"])] = (rss, pss)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--offset", type=int, default=2200)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-stack"))
    args = parser.parse_args()
    env = bench_env(args.state / "stack", args.offset)
    nothing, state_there, already_up, down = (
        "`stack up` from nothing (initdb included)",
        "`stack up`, state already there",
        "`stack up`, everything already up",
        "`stack down`, everything up",
    )
    times: dict[str, list[float]] = {nothing: [], state_there: [], already_up: [], down: []}
    memories: list[dict[str, tuple[int, int]]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            stack(env, "down")
            shutil.rmtree(args.state, ignore_errors=True)
            times[nothing].append(timed(env, "up"))
            times[down].append(timed(env, "down"))
            times[state_there].append(timed(env, "up"))
            time.sleep(args.settle)  # idle: let start-up allocations settle before reading
            memories.append(memory(env))
            times[already_up].append(timed(env, "up"))
            times[down].append(timed(env, "down"))
            print(
                f"round {round_no}: "
                + ", ".join(f"{k.split(',')[-1].strip()} {v[-1]:.1f} s" for k, v in times.items())
                + f"; RSS {sum(r for r, _ in memories[-1].values()) / 1024:.0f} MiB",
                flush=True,
            )
    finally:
        stack(env, "down")
    time_rows = [
        f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        for name, values in times.items()
    ]
    names = list(memories[0])
    memory_rows = [
        f"| {name} | {statistics.median(m[name][0] for m in memories) / 1024:.0f} | "
        f"{statistics.median(m[name][1] for m in memories) / 1024:.0f} |"
        for name in names
    ]
    total_rss = statistics.median(sum(r for r, _ in m.values()) for m in memories) / 1024
    total_pss = statistics.median(sum(p for _, p in m.values()) for m in memories) / 1024
    body = f"""
`benchmarks/stack_footprint.py`, {machine()}. {args.rounds} rounds on a private stack
(hardened shop); times through the command line, memory of the idle stack {args.settle:.0f} s
after `up`, every process of each component.

| command | median s | min s | max s |
| --- | ---: | ---: | ---: |
{chr(10).join(time_rows)}

| component | RSS MiB | PSS MiB |
| --- | ---: | ---: |
{chr(10).join(memory_rows)}
| **whole stack** | **{total_rss:.0f}** | **{total_pss:.0f}** |

RSS counts a page once per process that maps it; PSS shares it out, so the PSS total is
what the stack costs the machine.
"""
    write_section("Stack footprint", body)
    print(body)


if __name__ == "__main__":
    main()
