"""Interruptions at random times over smoke runs: is every run finished, healed and reaped?

    .venv/bin/python benchmarks/interruptions.py [--trials 56] [--first 0] [--seed 1]
        [--kinds sigint,sigkill] [--experiments db-outage,db-hang] [--offset 2700]

Brings up its own stack (its own state directory and port offset), then for each trial
starts `resilience run EXPERIMENT --profile smoke` in a process group of its own, waits a
random time (reproducible: trial i draws from ``--seed`` and i) and interrupts it one way:

    sigint         SIGINT to the run                      exit 130, journal aborted
    double-sigint  SIGINT twice, 0.2 s apart              exit 130, journal aborted
    sigterm        SIGTERM to the run                     exit 130, journal aborted
    sigkill        SIGKILL to the run's process only;     journal aborted by the sweep
                   then `resilience stack status` (the next start's sweep, as a user runs it)
    toxiproxy      Toxiproxy SIGKILLed in the fault window and at once restarted with
                   `resilience stack up --only toxiproxy`; the run may end error (exit 3)
    prometheus     Prometheus SIGKILLed mid-run           the run finishes (0, 1 or 3)
    jaeger         Jaeger SIGKILLed mid-run               the run finishes (0, 1 or 3)
    gateway        the shop's gateway SIGKILLed mid-run   the run finishes (1 or 3)

A signal falls anywhere in the run (start-up, load, analysis, reports); a component is
killed while the load runs (Toxiproxy: while the fault is applied). A signal that lands
after the run already wrote its final status only hurries the end: the run's own exit
code is then expected. After each trial (the run exited, or was killed after
``--hard-timeout`` and counted as hung; whatever was killed restarted with `stack up`):

    faults left    toxics and disabled proxies in Toxiproxy (GET /proxies)
    journal        journal.json validates (JournalData) with a final status and the exit code
    reports        summary.md, report.html, junit.xml, when the run itself finished
    orphans        the run's descendants (load workers) or processes of this stack's runs
                   still alive 2 s after the run exited
    exit code      against the contract above

Trials are appended to ``--records`` (JSON lines); ``--first 0`` starts it afresh, so a long
benchmark runs in chunks (``--first 0 --trials 14``, ``--first 14 --trials 14``, ...) and
every chunk rewrites the "Interruptions" section of RESULTS.md from all records so far.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _runs import RESILIENCE, bench_env, fresh_dir, machine, write_section

from resilience.rundir.journal import JournalData
from resilience.stack.config import Ports

KINDS = (
    "sigint",
    "double-sigint",
    "sigterm",
    "sigkill",
    "toxiproxy",
    "prometheus",
    "jaeger",
    "gateway",
)
EXPERIMENTS = ("db-outage", "db-hang", "db-latency", "db-flaky")
FINAL = frozenset({"passed", "failed", "inconclusive", "aborted", "error"})
REPORTS = ("summary.md", "report.html", "junit.xml")
SIGNAL_SPAN = 32.0
"""Seconds after the spawn a signal may fall in: about an uninterrupted smoke run's wall
time on this machine (start-up, 26 s of load, evidence, analysis, reports)."""
COMPONENT_WINDOW = (1.0, 24.0)
"""Experiment-clock seconds within which a component is killed (the load is 26 s)."""
ORPHAN_GRACE = 2.0
EXPECTED_EXITS: dict[str, frozenset[int]] = {
    "sigint": frozenset({130}),
    "double-sigint": frozenset({130}),
    "sigterm": frozenset({130}),
    "sigkill": frozenset({-9}),
    "toxiproxy": frozenset({0, 1, 3}),
    "prometheus": frozenset({0, 1, 3}),
    "jaeger": frozenset({0, 1, 3}),
    "gateway": frozenset({1, 3}),
}


@dataclass
class Trial:
    """One interruption and what it left behind."""

    index: int
    kind: str
    experiment: str
    seed: int
    planned: float = 0.0
    """Seconds after the spawn (signals) or on the experiment clock (components)."""
    at: float | None = None
    """Seconds after the spawn the interruption was applied (None: the run ended first)."""
    exit_code: int | None = None
    wall: float = 0.0
    status: str | None = None
    journal_exit: int | None = None
    faults_left: list[str] = field(default_factory=list)
    faults_before_sweep: int = 0
    journal_problem: str | None = None
    reports_missing: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    exit_problem: str | None = None
    hung: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.faults_left
            or self.journal_problem
            or self.reports_missing
            or self.orphans
            or self.exit_problem
            or self.hung
        )


class Bench:
    """The benchmark's private stack and the commands a user would type against it."""

    def __init__(self, state: Path, offset: int, mode: str) -> None:
        self.state = state
        self.stack_state = state / "stack"
        self.env = bench_env(self.stack_state, offset)
        self.ports = Ports.from_env(self.env)
        self.mode = mode
        self.http = httpx.Client(timeout=5.0)

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [RESILIENCE, *args], env=self.env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {timeout} s")

    def up(self, *only: str) -> None:
        extra = ["--only", ",".join(only)] if only else []
        done = self.cli("stack", "up", "--shop-mode", self.mode, *extra)
        if done.returncode != 0:
            raise SystemExit(f"stack up failed ({done.returncode}): {done.stderr[-2000:]}")

    def components(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads((self.stack_state / "stack.json").read_text())
        except (OSError, ValueError):
            return {}
        components: dict[str, dict[str, Any]] = raw.get("components", {})
        return components

    def kill_component(self, name: str) -> str:
        record = self.components().get(name)
        if record is None:
            return f"{name} has no record"
        try:
            os.killpg(int(record["pgid"]), signal.SIGKILL)
        except ProcessLookupError:
            return f"{name} (pgid {record['pgid']}) was already gone"
        return f"killed {name} (pgid {record['pgid']})"

    def leftovers(self) -> list[str]:
        """Toxics and disabled proxies in Toxiproxy, as `proxy: toxic` lines."""
        url = f"http://127.0.0.1:{self.ports.toxiproxy}/proxies"
        try:
            proxies = self.http.get(url).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            return [f"Toxiproxy unreadable: {exc}"]
        left = []
        for name, proxy in sorted(proxies.items()):
            if not proxy.get("enabled", True):
                left.append(f"{name}: disabled")
            left.extend(f"{name}: toxic {t.get('name')}" for t in proxy.get("toxics") or [])
        return left

    def close(self) -> None:
        self.http.close()


# -- processes ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start ticks) of a live process, None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


class Family:
    """The run's descendants, seen by polling /proc while it runs (the load workers sit in
    sessions of their own, so a process group does not find them)."""

    def __init__(self, root: int, exclude: Callable[[], set[int]]) -> None:
        self.root = root
        self.exclude = exclude
        self.seen: dict[int, tuple[int, str]] = {}

    def poll(self) -> None:
        parents: dict[int, tuple[int, int]] = {}
        for pid in _pids():
            stat = _stat(pid)
            if stat is not None:
                parents[pid] = stat
        members = {self.root}
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _) in parents.items():
                if ppid in members and pid not in members:
                    members.add(pid)
                    grew = True
        skip = self.exclude()
        for pid in members - {self.root} - skip:
            if pid not in self.seen:
                self.seen[pid] = (parents[pid][1], _cmdline(pid))

    def alive(self) -> list[str]:
        skip = self.exclude()
        alive = []
        for pid, (ticks, cmd) in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == ticks and pid not in skip:
                alive.append(f"{pid} {cmd[:80]}")
        return alive


def stray_workers(state: Path) -> list[str]:
    """Load workers and masters of this stack's runs (by their environment), wherever
    they were re-parented."""
    marker = f"RESILIENCE_STATE_DIR={state}".encode()
    found = []
    for pid in _pids():
        cmd = _cmdline(pid)
        if "resilience.load." not in cmd:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and _stat(pid) is not None:
            found.append(f"{pid} {cmd[:80]}")
    return found


# -- one trial -----------------------------------------------------------------------


def _read_journal(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _wait_for_t0(journal: Path, proc: subprocess.Popen[bytes], deadline: float) -> float | None:
    """The run's t0 (epoch seconds) once its journal says running; None if it ended first."""
    while time.monotonic() < deadline and proc.poll() is None:
        data = _read_journal(journal)
        if data.get("status") == "running" and data.get("t0"):
            return float(data["t0"])
        time.sleep(0.05)
    return None


def _fault_window(journal: Path) -> tuple[float, float]:
    faults = _read_journal(journal).get("faults") or []
    if faults:
        return float(faults[0]["scheduled_at"]), float(faults[0]["scheduled_end"])
    return 8.0, 16.0


def _wait_until(moment: float, proc: subprocess.Popen[bytes]) -> bool:
    """Sleep until the monotonic ``moment``; False if the run ended first."""
    while proc.poll() is None:
        left = moment - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))
    return False


def run_trial(bench: Bench, trial: Trial, runs: Path, hard_timeout: float) -> None:  # noqa: PLR0912, PLR0915 (one trial, step by step)
    rng = random.Random(f"{trial.seed}-{trial.index}")
    out = runs / f"{trial.index:03d}-{trial.kind}-{trial.experiment}"
    logs = runs / f"{trial.index:03d}.log"
    journal = out / "journal.json"

    def stack_pids() -> set[int]:
        return {int(r["pid"]) for r in bench.components().values()}

    argv = [RESILIENCE, "run", trial.experiment, "--profile", "smoke",
            "--shop-mode", bench.mode, "--out", str(out)]  # fmt: skip
    restarter: subprocess.Popen[bytes] | None = None
    with logs.open("wb") as log:
        spawned = time.monotonic()
        proc = subprocess.Popen(
            argv, env=bench.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        family = Family(proc.pid, stack_pids)
        deadline = spawned + hard_timeout
        if trial.kind in ("sigint", "double-sigint", "sigterm", "sigkill"):
            trial.planned = round(rng.uniform(0.0, SIGNAL_SPAN), 3)
            moment = spawned + trial.planned
        else:
            t0 = _wait_for_t0(journal, proc, deadline)
            if t0 is None:
                moment = None
            else:
                low, high = COMPONENT_WINDOW
                if trial.kind == "toxiproxy":
                    start, end = _fault_window(journal)
                    low, high = start + 0.3, end - 0.3
                trial.planned = round(rng.uniform(low, high), 3)
                moment = time.monotonic() + (t0 + trial.planned - time.time())
        landed = False
        if moment is not None:
            while proc.poll() is None and time.monotonic() < moment:
                family.poll()
                _wait_until(min(moment, time.monotonic() + 0.25), proc)
            landed = proc.poll() is None
        if landed:
            family.poll()
            trial.at = round(time.monotonic() - spawned, 3)
            if trial.kind in ("sigint", "double-sigint"):
                proc.send_signal(signal.SIGINT)
                if trial.kind == "double-sigint":
                    time.sleep(0.2)
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGINT)
            elif trial.kind == "sigterm":
                proc.send_signal(signal.SIGTERM)
            elif trial.kind == "sigkill":
                proc.send_signal(signal.SIGKILL)
            else:
                trial.notes.append(bench.kill_component(trial.kind))
                if trial.kind == "toxiproxy":
                    restarter = subprocess.Popen(
                        [RESILIENCE, "stack", "up", "--shop-mode", bench.mode, "--only",
                         "toxiproxy"],
                        env=bench.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    )  # fmt: skip
        else:
            trial.notes.append("the run ended before the interruption")
        while proc.poll() is None and time.monotonic() < deadline:
            family.poll()
            time.sleep(0.1)
        if proc.poll() is None:
            trial.hung = True
            trial.notes.append(f"still running {hard_timeout:.0f} s after the start: killed")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        trial.exit_code = proc.returncode
        trial.wall = round(time.monotonic() - spawned, 2)
    # Orphans: whatever of the run is still alive ORPHAN_GRACE seconds after it exited.
    grace_end = time.monotonic() + ORPHAN_GRACE
    while time.monotonic() < grace_end and (family.alive() or stray_workers(bench.stack_state)):
        time.sleep(0.1)
    trial.orphans = sorted(set(family.alive()) | set(stray_workers(bench.stack_state)))
    if restarter is not None:
        try:
            restarter.wait(60)
        except subprocess.TimeoutExpired:
            restarter.kill()
            restarter.wait(5)
            trial.notes.append("stack up --only toxiproxy took over 60 s")
    # Whatever was killed comes back; then the next start's sweep (`stack status`) for
    # a killed run, as a user would trigger it.
    bench.up()
    if trial.kind == "sigkill":
        trial.faults_before_sweep = len(bench.leftovers())
        status = bench.cli("stack", "status")
        if status.returncode not in (0, 3):
            trial.notes.append(f"stack status exit {status.returncode}")
    trial.faults_left = bench.leftovers()
    _check_journal(trial, journal)
    _check_reports(trial, out)
    _check_exit(trial)


def _check_journal(trial: Trial, path: Path) -> None:
    if not path.exists():
        trial.journal_problem = "no journal.json"
        return
    try:
        data = JournalData.model_validate_json(path.read_bytes())
    except ValueError as exc:
        trial.journal_problem = f"invalid: {str(exc).splitlines()[0]}"
        return
    trial.status = data.status
    trial.journal_exit = data.exit_code
    if data.status not in FINAL:
        trial.journal_problem = f"status {data.status}"
        return
    trial.notes.append(f"reason: {data.reason}")
    trial.journal_problem = _exit_mismatch(trial)


def _exit_mismatch(trial: Trial) -> str | None:
    """The journal's exit code must be the process's, except after SIGKILL: the sweep
    writes none, and a kill that lands after the run wrote its verdict (while it writes the
    reports or takes down what it started) leaves that verdict's code."""
    if trial.exit_code == -9:
        return None
    if trial.journal_exit != trial.exit_code:
        return f"journal exit_code {trial.journal_exit}, process {trial.exit_code}"
    return None


def _check_reports(trial: Trial, out: Path) -> None:
    """Reports are due when the run itself wrote its final status (not after SIGKILL)."""
    if trial.kind == "sigkill" or trial.status not in FINAL or trial.hung:
        return
    trial.reports_missing = [name for name in REPORTS if not (out / name).exists()]


def _check_exit(trial: Trial) -> None:
    expected = EXPECTED_EXITS[trial.kind]
    if trial.at is None:
        # The interruption never landed: the run's own ending is the contract.
        expected = frozenset({0, 1, 3})
    elif trial.kind in ("sigint", "double-sigint", "sigterm") and trial.status not in (
        None,
        "aborted",
    ):
        # The signal came after the run had written its verdict: it only hurried the end.
        expected = frozenset({trial.journal_exit or 0})
    elif trial.kind == "sigkill" and trial.status not in (None, "aborted"):
        expected = frozenset({-9})
    if trial.exit_code not in expected:
        trial.exit_problem = f"exit {trial.exit_code}, expected {sorted(expected)}"


# -- results ---------------------------------------------------------------------------


def _table(trials: list[Trial]) -> str:
    rows = []
    for kind in KINDS:
        mine = [t for t in trials if t.kind == kind]
        if not mine:
            continue
        exits = Counter(str(t.exit_code) for t in mine)
        statuses = Counter(t.status or "none" for t in mine)
        rows.append(
            f"| {kind} | {len(mine)} | {sum(t.at is not None for t in mine)} | "
            f"{sum(len(t.faults_left) for t in mine)} | "
            f"{sum(t.journal_problem is not None for t in mine)} | "
            f"{sum(bool(t.reports_missing) for t in mine)} | "
            f"{sum(len(t.orphans) for t in mine)} | "
            f"{', '.join(f'{c} ({n})' for c, n in sorted(exits.items()))} | "
            f"{', '.join(f'{s} ({n})' for s, n in sorted(statuses.items()))} | "
            f"{sum(t.exit_problem is not None or t.hung for t in mine)} |"
        )
    total = (
        f"| **all** | **{len(trials)}** | **{sum(t.at is not None for t in trials)}** | "
        f"**{sum(len(t.faults_left) for t in trials)}** | "
        f"**{sum(t.journal_problem is not None for t in trials)}** | "
        f"**{sum(bool(t.reports_missing) for t in trials)}** | "
        f"**{sum(len(t.orphans) for t in trials)}** | | | "
        f"**{sum(t.exit_problem is not None or t.hung for t in trials)}** |"
    )
    head = (
        "| interruption | trials | landed | faults left | invalid journals | reports missing "
        "| orphans | exit codes | final status | wrong exit / hung |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    return "\n".join([head, *rows, total])


def _problems(trials: list[Trial]) -> str:
    lines = []
    for t in trials:
        if t.clean:
            continue
        what = [
            *(f"fault left: {f}" for f in t.faults_left),
            *([f"journal: {t.journal_problem}"] if t.journal_problem else []),
            *([f"reports missing: {', '.join(t.reports_missing)}"] if t.reports_missing else []),
            *(f"orphan: {o}" for o in t.orphans),
            *([t.exit_problem] if t.exit_problem else []),
            *(["hung"] if t.hung else []),
        ]
        lines.append(
            f"- trial {t.index} ({t.kind}, {t.experiment}, at {t.at} s): {'; '.join(what)}"
        )
    return "\n".join(lines) or "None."


def _sigkill_line(sigkills: list[Trial]) -> str:
    before = sum(t.faults_before_sweep for t in sigkills)
    after = sum(len(t.faults_left) for t in sigkills)
    healed = "all healed" if after == 0 else f"{after} still there"
    return (
        f"SIGKILL: {before} toxic(s) or disabled proxies left before the sweep in "
        f"{sum(t.faults_before_sweep > 0 for t in sigkills)} of {len(sigkills)} trials (killed "
        f"while a fault was applied); after `stack status`: {healed}."
    )


def write_results(records: Path) -> str:
    trials: list[Trial] = []
    chunks: list[dict[str, Any]] = []
    for line in records.read_text().splitlines():
        raw = json.loads(line)
        if raw.pop("record", "trial") == "chunk":
            chunks.append(raw)
        else:
            trial = Trial(**raw)
            if (trial.journal_problem or "").startswith("journal exit_code"):
                trial.journal_problem = _exit_mismatch(trial)  # the rule as it is now
            trials.append(trial)
    trials.sort(key=lambda t: t.index)
    commands = "\n".join(
        f"- `{c['command']}` ({c['trials']} trials, {c['minutes']:.1f} min; {c['machine']})"
        for c in chunks
    )
    landed = [t for t in trials if t.at is not None]
    sigkills = [t for t in trials if t.kind == "sigkill" and t.at is not None]
    body = f"""Commands (each chunk holds the exclusive lock only for its own trials, and
rewrites this section from all records so far):

{commands}

Each trial is one `resilience run db-* --profile smoke --shop-mode hardened` on the
benchmark's own stack, interrupted at a seeded random moment: a signal anywhere from the
spawn to {SIGNAL_SPAN:.0f} s after it (start-up, load, analysis, reports), a component
killed {COMPONENT_WINDOW[0]:.0f}-{COMPONENT_WINDOW[1]:.0f} s into the load (Toxiproxy:
inside the fault window, then restarted at once with `stack up --only toxiproxy`). "landed": the interruption came before the run ended by itself. After each:
toxics and disabled proxies in Toxiproxy (after `stack up`, and for SIGKILL after the sweep
of `stack status`), the journal against the model with a final status and the process's exit
code, the three reports when the run itself wrote its final status, descendants of the run
and this stack's load workers alive {ORPHAN_GRACE:.0f} s after the exit, and the exit code
(130 for a signal; the verdict's code when the signal came after the verdict, which it only
hurries; -9 for SIGKILL; 0, 1 or 3 when a component dies).

{_table(trials)}

{_sigkill_line(sigkills)} {len(landed)} of {len(trials)} interruptions landed while the run
was going.

Problems:

{_problems(trials)}
"""
    write_section("Interruptions", body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=8 * len(KINDS))
    parser.add_argument("--first", type=int, default=0, help="index of the first trial")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--shop-mode", default="hardened", choices=("hardened", "fragile"))
    parser.add_argument("--offset", type=int, default=2700)
    parser.add_argument("--hard-timeout", type=float, default=150.0)
    parser.add_argument("--state", type=Path, default=Path("/tmp/resilience-bench-interrupt"))
    parser.add_argument(
        "--records", type=Path, default=Path("/tmp/resilience-bench-interrupt.jsonl")
    )
    parser.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    experiments = [e for e in args.experiments.split(",") if e]
    state = fresh_dir(args.state)
    runs = state / "runs"
    runs.mkdir()
    bench = Bench(state, args.offset, args.shop_mode)
    if args.first == 0:
        args.records.unlink(missing_ok=True)
    started = time.monotonic()
    done: list[Trial] = []
    try:
        bench.up()
        for index in range(args.first, args.first + args.trials):
            trial = Trial(
                index=index,
                kind=kinds[index % len(kinds)],
                experiment=experiments[(index // len(kinds)) % len(experiments)],
                seed=args.seed,
            )
            run_trial(bench, trial, runs, args.hard_timeout)
            done.append(trial)
            with args.records.open("a") as records:
                records.write(json.dumps(asdict(trial)) + "\n")
            verdict = "ok" if trial.clean else _problems([trial])
            print(
                f"trial {index} {trial.kind} {trial.experiment} at {trial.at} s: exit "
                f"{trial.exit_code} status {trial.status} ({trial.wall} s) {verdict}",
                flush=True,
            )
    finally:
        bench.cli("stack", "down")
        bench.close()
    minutes = (time.monotonic() - started) / 60
    command = " ".join(["benchmarks/interruptions.py", *sys.argv[1:]])
    chunk = {"record": "chunk", "command": command, "trials": len(done), "minutes": minutes,
             "machine": machine()}  # fmt: skip
    with args.records.open("a") as records:
        records.write(json.dumps(chunk) + "\n")
    if not args.no_results:
        print(write_results(args.records))


if __name__ == "__main__":
    main()
