"""Commands ``report`` (rebuild a run's reports) and ``compare`` (regression between two runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from resilience.cli._common import console, emit_json, run_command
from resilience.cli._params import FLAG, JsonOpt, RunDirArg
from resilience.errors import EXIT_FAILED, EXIT_PASSED

if TYPE_CHECKING:
    from resilience.report.compare import Comparison, Judgement

_OUTCOME_STYLE = {
    "regression": "bold red",
    "improvement": "green",
    "same": "",
    "inconclusive": "yellow",
    "no data": "dim",
}


def _report(run_dir: Path) -> None:
    from resilience.report import read_run, write_run_reports
    from resilience.report.summary import verdict

    run = read_run(run_dir)
    paths = write_run_reports(run)
    v = verdict(run.journal)
    style = "green" if v.passed else "red"
    line = Text(f"{v.status}", style=f"bold {style}") + Text(
        f" (exit code {v.exit_code}): {v.reason}"
    )
    console.print(line, soft_wrap=True)
    for label, path in (("html", paths.html), ("junit", paths.junit), ("markdown", paths.markdown)):
        console.print(Text(f"  {label:<9}{path}"), soft_wrap=True)


def _cell(judgement: Judgement, text: str) -> Text:
    mark = {"regression": " ▲", "improvement": " ▼"}.get(judgement.outcome, "")
    return Text(text + mark, style=_OUTCOME_STYLE.get(judgement.outcome, ""))


def _show(comparison: Comparison) -> None:
    from rich.table import Table

    from resilience.report.compare import group_by_kind
    from resilience.report.summary import fmt_ms, fmt_ratio

    console.print(
        Text(f"A (reference): {comparison.run_a}\nB (candidate): {comparison.run_b}"),
        soft_wrap=True,
    )
    if comparison.deltas:
        table = Table(title=f"{comparison.experiment_b}: B against A", title_justify="left")
        for name in ("phase", "endpoint", "requests A/B", "error rate A → B"):
            table.add_column(name, overflow="fold")
        for name in ("p50 A → B", "p95 A → B", "p99 A → B", "method"):
            table.add_column(name, justify="right" if name != "method" else "left")
        for d in comparison.deltas:
            table.add_row(
                d.phase,
                Text(d.endpoint or "all endpoints", style="bold" if d.endpoint is None else ""),
                f"{d.a.requests}/{d.b.requests}",
                _cell(d.errors, f"{fmt_ratio(d.a.error_rate)} → {fmt_ratio(d.b.error_rate)}"),
                f"{fmt_ms(d.a.p50)} → {fmt_ms(d.b.p50)}",
                _cell(d.latency, f"{fmt_ms(d.a.p95)} → {fmt_ms(d.b.p95)}"),
                f"{fmt_ms(d.a.p99)} → {fmt_ms(d.b.p99)}",
                d.latency.method,
            )
        console.print(table)
    r = comparison.recovery
    console.print(
        Text("recovery: ") + Text(f"{r.reason} ({r.outcome})", style=_OUTCOME_STYLE[r.outcome]),
        soft_wrap=True,
    )
    for label, changes, style in (
        ("finding added", comparison.findings_added, "red"),
        ("finding removed", comparison.findings_removed, "green"),
    ):
        # One line per kind: a finding about five endpoints is one finding, not five.
        for group in group_by_kind(changes):
            console.print(
                Text(f"{label}: ", style=style)
                + Text(f"{group.kind} ({group.severity}){group.where}: ")
                + Text("; ".join(group.summaries)),
                soft_wrap=True,
            )
    for note in comparison.notes:
        console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    if comparison.regressed:
        console.print(Text("REGRESSION", style="bold red"))
        for reason in comparison.regressions:
            console.print(Text(f"  - {reason}"), soft_wrap=True)
    else:
        console.print(Text("no regression", style="bold green"))


def report(run_dir: RunDirArg) -> None:
    """Rebuild report.html, junit.xml and summary.md from a run directory alone."""
    run_command(lambda: _report(run_dir))


def compare(
    dir_a: Annotated[Path, typer.Argument(metavar="DIR_A", help="Reference run directory (A).")],
    dir_b: Annotated[Path, typer.Argument(metavar="DIR_B", help="Candidate run directory (B).")],
    as_json: JsonOpt = False,
    force: Annotated[
        bool,
        typer.Option("--force", metavar=FLAG, help="Compare runs of different experiments anyway."),
    ] = False,
) -> None:
    """Regression of run B against run A: exit 1 on regression, 0 otherwise, 2 if not comparable."""

    def body() -> int:
        from resilience.report.compare import compare_runs

        comparison = compare_runs(dir_a, dir_b, force=force)
        if as_json:
            emit_json(comparison.to_dict())
        else:
            _show(comparison)
        return EXIT_FAILED if comparison.regressed else EXIT_PASSED

    raise typer.Exit(run_command(body))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("report")(report)
    app.command("compare")(compare)
