"""`resilience run`: one experiment, a live console, a verdict and an exit code."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from resilience.cli._common import console, run_command
from resilience.runner.observer import LiveStatus, RunObserver

if TYPE_CHECKING:
    from resilience.experiment.model import Experiment
    from resilience.faults.timeline import FaultEvent
    from resilience.observe.guards import GuardTrip
    from resilience.runner.orchestrator import RunResult

PHASE_STYLE = {"baseline": "green", "fault": "bold red", "recovery": "yellow"}


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
        self.task: Any = None
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
        late = f" ({event.lateness * 1000:+.0f} ms)" if event.kind in ("applied", "healed") else ""
        style = {"applied": "red", "healed": "green", "failed": "bold red"}.get(
            event.kind, "yellow"
        )
        console.print(
            f"[{style}]t={event.t:6.2f}s fault {event.kind}[/]: {event.type} on {event.proxy}{late}",
            highlight=False,
        )

    def guard_tripped(self, trip: GuardTrip) -> None:
        console.print(f"[bold red]{trip.message}[/] — healing and aborting", highlight=False)

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


def _print_verdict(result: RunResult) -> None:
    style = {"passed": "green", "failed": "red", "aborted": "yellow"}.get(result.status, "red")
    lines = [f"[bold {style}]{result.status.upper()}[/] (exit {result.exit_code}): {result.reason}"]
    journal = result.journal
    if journal is not None:
        if journal.recovery.seconds is not None or journal.recovery.recovered is False:
            rec = journal.recovery
            secs = "never" if rec.seconds is None else f"{rec.seconds:.1f} s"
            budget = "" if rec.budget_seconds is None else f" (budget {rec.budget_seconds:.0f} s)"
            lines.append(f"recovery: {secs}{budget}")
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


def _check_local(url: str) -> None:
    from urllib.parse import urlsplit

    from resilience.errors import ExperimentError
    from resilience.experiment.model import LOCAL_HOSTS

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise ExperimentError(
            "invalid --target: traffic stays on this machine",
            expected="an http(s) URL on 127.0.0.1, localhost or ::1",
            got=url,
        )


def run(  # noqa: PLR0917 - typer maps parameters to options
    experiment: Annotated[
        str, typer.Argument(help="A catalogue name (see `resilience list`) or a YAML file.")
    ],
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="A profile of the experiment, e.g. smoke.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default runs/<UTC>-<name>/).")
    ] = None,
    shop_mode: Annotated[
        str | None, typer.Option("--shop-mode", help="fragile or hardened (the built-in shop).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Base URL of another HTTP service on this machine."),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set load.client_timeout=5s")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Load worker processes (default: one per core)."),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also copy the JUnit XML here.")
    ] = None,
    no_stack: Annotated[
        bool,
        typer.Option("--no-stack", help="Do not start the local stack; fail if it is not running."),
    ] = False,
) -> None:
    """Run an experiment: load, faults on a timeline, a verdict with evidence."""

    def body() -> int:
        from resilience.errors import ExperimentError
        from resilience.experiment.loader import load_experiment
        from resilience.runner.orchestrator import RunOptions, run_experiment

        if shop_mode is not None and shop_mode not in ("fragile", "hardened"):
            raise ExperimentError(
                "invalid --shop-mode", expected="fragile or hardened", got=shop_mode
            )
        if target is not None:
            _check_local(target)
        loaded = load_experiment(experiment, profile=profile, overrides=list(overrides or []))
        options = RunOptions(
            out=out,
            shop_mode=shop_mode,  # type: ignore[arg-type]
            target=target.rstrip("/") if target else None,
            workers=workers,
            manage_stack=not no_stack,
        )
        started = time.monotonic()
        result = run_experiment(loaded, options, ConsoleObserver())
        console.print(f"[dim]wall time {time.monotonic() - started:.1f} s[/]")
        if junit is not None and result.run_dir is not None:
            source = result.run_dir / "junit.xml"
            if source.exists():
                junit.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, junit)
        return result.exit_code

    code = run_command(body)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `run` to the app."""
    app.command("run")(run)
