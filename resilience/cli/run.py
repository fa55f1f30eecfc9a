"""`resilience run`: one experiment, a live console, a verdict and an exit code."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from resilience.cli import resume_gc
from resilience.cli._common import (
    as_resilience_error,
    console,
    emit_json,
    err_console,
    error_details,
    mask_on_terminal,
    print_error,
    print_warnings,
    run_command,
    stdout_for_json,
)
from resilience.cli._params import (
    FLAG,
    AllowHostOpt,
    ExperimentArg,
    NoStackOpt,
    SetOpt,
    ShopModeName,
    ShopModeOpt,
    TargetOpt,
    WorkersOpt,
)
from resilience.errors import EXIT_INTERRUPTED, EXIT_PASSED, Interrupted
from resilience.load.pool import PRESTARTED, prestart
from resilience.runner.observer import LiveStatus, RunObserver
from resilience.runner.signals import InterruptGate

if TYPE_CHECKING:
    from rich.progress import TaskID

    from resilience.experiment.model import Experiment
    from resilience.faults.timeline import FaultEvent
    from resilience.observe.guards import GuardTrip
    from resilience.rundir.journal import RecoveryRecord
    from resilience.runner.orchestrator import RunOptions, RunResult

PHASE_STYLE = {"baseline": "green", "fault": "bold red", "spike": "bold red", "recovery": "yellow"}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


class ConsoleObserver(RunObserver):
    """Live console on a terminal; a line every few seconds otherwise (CI logs)."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>5.0f}/{task.total:.0f} s"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: TaskID | None = None
        self.last: LiveStatus | None = None
        self.next_plain = 0.0

    def message(self, text: str) -> None:
        console.print(f"[dim]•[/] {text}", highlight=False)

    def started(self, run_dir: Path, experiment: Experiment, total: float) -> None:
        console.print(f"[bold]{experiment.name}[/]: {experiment.summary()}", highlight=False)
        console.print(f"[dim]run directory: {run_dir}[/]", highlight=False)
        self.task = self.progress.add_task("load", total=total)
        if console.is_terminal:
            self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)
            self.live.start()

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        s = self.last
        if s is None:
            table.add_row("[dim]waiting for the first second of load...[/]")
        else:
            phase = f"[{PHASE_STYLE.get(s.phase, 'white')}]{s.phase}[/]"
            table.add_row(
                f"phase {phase}",
                f"{s.rps:7.1f} req/s",
                f"p95 {_ms(s.p95)}",
                f"errors {_pct(s.error_rate)}",
                f"in flight {s.in_flight}",
                f"users {s.users}",
            )
            faults = ", ".join(s.active_faults) or "none"
            oldest = (
                f" (oldest request waiting {s.oldest_in_flight:.1f} s)"
                if s.oldest_in_flight and s.oldest_in_flight > 1
                else ""
            )
            table.add_row(f"active faults: [red]{faults}[/]{oldest}")
        return Group(self.progress, table)

    def tick(self, status: LiveStatus) -> None:
        self.last = status
        if self.task is not None:
            self.progress.update(self.task, completed=min(status.t, status.total))
        if self.live is not None:
            self.live.update(self._render())
        elif status.t >= self.next_plain:
            self.next_plain = status.t + 5.0
            console.print(
                f"t={status.t:5.1f}s {status.phase:8} {status.rps:7.1f} req/s "
                f"p95 {_ms(status.p95)} errors {_pct(status.error_rate)} "
                f"faults: {', '.join(status.active_faults) or 'none'}",
                highlight=False,
            )

    def fault_event(self, event: FaultEvent) -> None:
        late = f" ({event.timing()})" if event.kind in ("applied", "healed") else ""
        style = {"applied": "red", "healed": "green", "failed": "bold red"}.get(
            event.kind, "yellow"
        )
        console.print(
            f"[{style}]t={event.t:6.2f}s fault {event.kind}[/]: {event.type} on {event.proxy}{late}",
            highlight=False,
        )

    def guard_tripped(self, trip: GuardTrip) -> None:
        console.print(f"[bold red]{trip.message}[/] — healing and aborting", highlight=False)

    def rig_event(self, text: str, *, severe: bool) -> None:
        style = "bold yellow" if severe else "green"
        mark = "⚠" if severe else "•"
        console.print(f"[{style}]{mark} {text}[/]", highlight=False)

    def load_finished(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        console.print("[dim]• load finished; analysing[/]")

    def finished(self, result: RunResult) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        _print_verdict(result)


def recovery_line(rec: RecoveryRecord) -> str:
    """Recovery in words: the time against its budget, or why it was not measured. Never
    a bare "never" beside a PASSED: without a budget a run is not judged on recovery."""
    budget = "" if rec.budget_seconds is None else f" (budget {rec.budget_seconds:.0f} s)"
    if rec.seconds is not None:
        return f"{rec.seconds:.1f} s{budget}"
    note = (rec.model_extra or {}).get("note")
    why = str(note) if note else "error rate and p95 were not back in the baseline band"
    text = f"not measured back to baseline before the load ended: {why}"
    if rec.budget_seconds is None:
        text += " (no recovery budget set, so the verdict does not depend on it)"
    return text + budget


def _print_verdict(result: RunResult) -> None:
    style = {"passed": "green", "failed": "red", "aborted": "yellow", "inconclusive": "yellow"}
    colour = style.get(result.status, "red")
    lines = [
        f"[bold {colour}]{result.status.upper()}[/] (exit {result.exit_code}): {result.reason}"
    ]
    journal = result.journal
    if journal is not None:
        from resilience.report.summary import (
            breaking_point,
            coordinated_omission,
            is_spike_run,
            rig_statements,
        )

        knee = breaking_point(journal)
        if knee and knee not in result.reason:
            lines.append(f"[bold]{escape(knee)}[/]")
        lines.extend(f"[yellow]⚠ {line}[/]" for line in rig_statements(journal))
        omission = coordinated_omission(journal)
        if omission and "understated" in omission:
            lines.append(f"[yellow]⚠ {omission}[/]")
        lines.extend(
            f"[yellow]⚠ {event.detail['text']}[/]"
            for event in journal.events
            if event.kind == "load_worker_lost" and event.detail.get("text")
        )
        if journal.recovery.seconds is not None or journal.recovery.recovered is False:
            after = " after the spike" if is_spike_run(journal) else ""
            lines.append(f"recovery{after}: {recovery_line(journal.recovery)}")
        for slo in journal.slo:
            if slo.passed is False:
                lines.append(f"[red]✗ SLO[/] {getattr(slo, 'summary', slo.metric)}")
        for finding in journal.findings:
            if finding.status == "found":
                mark = "[red]✗[/]" if finding.fails_run else "[yellow]![/]"
                lines.append(f"{mark} {finding.kind} ({finding.severity}): {finding.summary}")
    if result.run_dir is not None:
        lines.append(f"[dim]run directory: {result.run_dir}[/]")
    for path in result.report_files:
        lines.append(f"[dim]report: {path}[/]")
    console.print(Panel("\n".join(lines), title="verdict", expand=False), highlight=False)


@dataclass(frozen=True)
class _Request:
    """What the user asked for, checked and loaded once (the flags stop here)."""

    experiment: Experiment
    options: RunOptions
    overrides: list[str]


def _prepare(
    experiment: str,
    *,
    profile: str | None,
    overrides: list[str],
    out: Path | None,
    shop_mode: ShopModeName | None,
    target: str | None,
    workers: int | None,
    manage_stack: bool,
    parts: dict[str, str | None],
    allow_hosts: list[str],
    expect_workers: int | None = None,
    master_bind: str | None = None,
) -> _Request:
    from resilience.experiment.loader import load_experiment
    from resilience.runner.orchestrator import RunOptions

    options = RunOptions(
        out=out, shop_mode=shop_mode, target=target, workers=workers, manage_stack=manage_stack,
        prometheus=parts["prometheus"], traces=parts["traces"], toxiproxy=parts["toxiproxy"],
        allow_hosts=tuple(allow_hosts), expect_workers=expect_workers, master_bind=master_bind,
    )  # fmt: skip
    loaded = load_experiment(
        experiment, profile=profile, overrides=overrides, allow_hosts=options.allow_hosts
    )
    mask_on_terminal(loaded.secret_values())
    return _Request(loaded, options, overrides)


def _dry_run(request: _Request, as_json: bool) -> int:
    from resilience.cli.dry_run import plan_document, show_plan
    from resilience.load.plan import plan_from_experiment
    from resilience.runner.target import preview_target
    from resilience.stack import StackConfig

    options = request.options
    config = options.config or StackConfig.from_env()
    parts = options.parts_for(request.experiment, config)
    preview = preview_target(
        request.experiment,
        config=config,
        target_url=options.target,
        shop_mode=options.shop_mode,
        manage_stack=options.manage_stack,
        parts=parts,
    )
    plan = plan_from_experiment(request.experiment, preview.url, workers=options.workers)
    # The plan shows the target URL and the endpoint names: masked as a run would mask them.
    doc = mask_on_terminal(request.experiment.secret_values()).redact_json(
        plan_document(request.experiment, plan, preview, request.overrides)
    )
    if as_json:
        emit_json(doc)
    else:
        show_plan(doc)
    return EXIT_PASSED


def _failed_record(exc: Exception, name: str, profile: str | None) -> tuple[int, dict[str, object]]:
    """An exception that ended a --json command before its journal: printed as an error on
    stderr; its exit code and the error record for stdout."""
    from resilience.cli.verdict import error_record

    error = as_resilience_error(exc)
    print_error(error)
    record = error_record(
        experiment=name, profile=profile, status="error", exit_code=error.exit_code,
        reason=str(error), problems=error_details(error),
    )  # fmt: skip
    return error.exit_code, record


def _dry_run_json(prepare: Callable[[], _Request], name: str, profile: str | None) -> int:
    """A dry run's one document, also when the input is refused: then the error record of
    ``run --json`` (its problems as data), not ready."""

    try:
        return _dry_run(prepare(), as_json=True)
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except Exception as exc:
        code, record = _failed_record(exc, name, profile)
        emit_json({"dry_run": True, "ready": False, **record})
        return code


def _execute(
    request: _Request, junit: Path | None, gate: InterruptGate | None = None
) -> tuple[RunResult, float, Path | None]:
    from resilience.runner.orchestrator import run_experiment

    started = time.monotonic()
    result = run_experiment(request.experiment, request.options, ConsoleObserver(), interrupts=gate)
    wall = time.monotonic() - started
    console.print(f"[dim]wall time {wall:.1f} s[/]")
    copied = None
    if junit is not None and result.run_dir is not None:
        source = result.run_dir / "junit.xml"
        if source.exists():
            junit.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, junit)
            copied = junit
    return result, wall, copied


def _run_json(
    prepare: Callable[[], _Request],
    junit: Path | None,
    name: str,
    profile: str | None,
    gate: InterruptGate,
) -> int:
    """The run with stdout kept for its verdict record; every message goes to stderr."""
    from resilience.cli.verdict import error_record, verdict_record

    with stdout_for_json() as stdout:
        try:
            request = prepare()
            result, wall, copied = _execute(request, junit, gate)
        except (KeyboardInterrupt, Interrupted):
            err_console.print("[yellow]interrupted[/]")
            record = error_record(
                experiment=name, profile=profile, status="aborted", exit_code=EXIT_INTERRUPTED,
                reason="interrupted", problems=[],
            )  # fmt: skip
        except Exception as exc:
            _code, record = _failed_record(exc, name, profile)
        else:
            record = verdict_record(
                result, experiment=request.experiment.name, profile=request.experiment.profile,
                wall_seconds=wall, junit_copy=copied,
            )  # fmt: skip
        emit_json(record, file=stdout)
    code = record["exit_code"]
    assert isinstance(code, int)
    return code


def run(  # noqa: PLR0917 - typer maps parameters to options
    experiment: ExperimentArg,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", metavar="NAME", help="A profile of the experiment, e.g. smoke."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Run directory (default runs/<UTC>-<name>/)."
        ),
    ] = None,
    shop_mode: ShopModeOpt = None,
    target: TargetOpt = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            metavar="URL",
            help="Your own Prometheus (replaces observe.prometheus.url); not started locally.",
        ),
    ] = None,
    traces: Annotated[
        str | None,
        typer.Option(
            "--traces",
            metavar="URL",
            help="Your own Jaeger or Tempo query URL (replaces observe.traces.url; its kind "
            "comes from the file, default jaeger); not started locally.",
        ),
    ] = None,
    toxiproxy: Annotated[
        str | None,
        typer.Option(
            "--toxiproxy",
            metavar="URL",
            help="Your own Toxiproxy API (replaces toxiproxy.url); not started locally.",
        ),
    ] = None,
    allow_hosts: AllowHostOpt = None,
    overrides: SetOpt = None,
    workers: WorkersOpt = None,
    expect_workers: Annotated[
        int | None,
        typer.Option(
            "--expect-workers",
            metavar="N",
            min=1,
            max=1024,
            help="Distributed: wait for N `resilience worker --master HOST:PORT` processes and "
            "run the load in them (this host is the master).",
        ),
    ] = None,
    master_bind: Annotated[
        str | None,
        typer.Option(
            "--master-bind",
            metavar="HOST[:PORT]",
            help="Distributed: where the master listens (default 127.0.0.1 and port 5557 "
            "plus RESILIENCE_PORT_OFFSET); another interface only when you name it.",
        ),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Also copy the JUnit XML here.")
    ] = None,
    no_stack: NoStackOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            metavar=FLAG,
            help="Print the resolved plan and what would be started; start nothing, exit 0.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            metavar=FLAG,
            help="Print one JSON document on stdout (the verdict record, or the plan with "
            "--dry-run); progress goes to stderr.",
        ),
    ] = False,
) -> None:
    """Run an experiment: load, faults on a timeline, a verdict with evidence."""
    # First thing: a SIGINT/SIGTERM from here on ends in a journal (exit 130), never in
    # the default handler's exit without a run directory (runner/signals.py).
    # The gate also takes over what the console script's early gate caught (cli/__init__.py).
    gate = InterruptGate().install()
    if dry_run:
        # A dry run starts nothing: the default handlers back, unless it was already
        # interrupted.
        gate.restore()
        if gate.signal_name is not None:
            raise typer.Exit(EXIT_INTERRUPTED)
    early = not dry_run and expect_workers is None
    if early:
        # A local run needs at least one load worker: it imports Locust (about half a
        # second) while this process loads the experiment and readies the stack.
        prestart(workers or 1)

    def prepare() -> _Request:
        try:
            request = _load_request()
        finally:
            resume_gc()  # paused by the console script for the start-up (cli/__init__.py)
        if not dry_run:
            # What validate and --dry-run warn about, before anything starts (stderr).
            print_warnings(request.experiment.warnings)
        if early:
            _top_up_workers(request)
        return request

    def _load_request() -> _Request:
        return _prepare(
            experiment, profile=profile, overrides=list(overrides or []), out=out,
            shop_mode=shop_mode, target=target, workers=workers, manage_stack=not no_stack,
            parts={"prometheus": prometheus, "traces": traces, "toxiproxy": toxiproxy},
            allow_hosts=list(allow_hosts or []),
            expect_workers=expect_workers, master_bind=master_bind,
        )  # fmt: skip

    try:
        if dry_run and as_json:
            code = _dry_run_json(prepare, experiment, profile)
        elif dry_run:
            code = run_command(lambda: _dry_run(prepare(), as_json))
        elif as_json:
            code = _run_json(prepare, junit, experiment, profile, gate)
        else:
            code = run_command(lambda: _execute(prepare(), junit, gate)[0].exit_code)
    finally:
        gate.restore()
        PRESTARTED.close()
    raise typer.Exit(code)


def _top_up_workers(request: _Request) -> None:
    """Start the rest of the run's local workers early too (none for a distributed run)."""
    from resilience.load.plan import planned_workers

    if request.options.expect_workers or request.experiment.load.distributed is not None:
        PRESTARTED.close()
        return
    prestart(planned_workers(request.experiment, request.options.workers))


def register(app: typer.Typer) -> None:
    """Add `run` to the app."""
    app.command("run")(run)
