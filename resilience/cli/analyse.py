"""Command ``analyse``: judge a finished run again from its run directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.text import Text

from resilience.cli._common import console, run_command
from resilience.cli._params import JsonOpt, RunDirArg, SetOpt


def analyse(run_dir: RunDirArg, overrides: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Judge a run again from its directory alone (new rules, changed SLOs or detector
    settings with --set), keep the old verdict beside the new one in journal.json, and
    rewrite the reports. Exit code: the new verdict's."""
    from resilience.gameday.report import is_session
    from resilience.runner.rejudge import rejudge

    if is_session(run_dir):
        _rejudge_session(run_dir, overrides or (), as_json)
    result = run_command(lambda: rejudge(run_dir, overrides or ()))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_dir": str(run_dir),
                    "status": result.status,
                    "exit_code": result.exit_code,
                    "reason": result.reason,
                    "previous": {
                        "status": result.previous_status,
                        "exit_code": result.previous_exit_code,
                    },
                },
                indent=2,
            )
        )
    else:
        style = "green" if result.exit_code == 0 else "red"
        console.print(
            Text(f"{result.status.upper()}", style=f"bold {style}")
            + Text(f" (exit code {result.exit_code}): {result.reason}"),
            soft_wrap=True,
        )
        console.print(
            Text(
                f"was {result.previous_status} (exit code {result.previous_exit_code}); "
                "kept in journal.json under previous_verdicts"
            ),
            soft_wrap=True,
        )
    raise typer.Exit(result.exit_code)


def _rejudge_session(session_dir: Path, overrides: Sequence[str], as_json: bool) -> None:
    """A game-day session: each fault window judged again, the session reports rewritten.
    A game day has no verdict: exit 0 once judged (2 or 3 when it cannot be read)."""
    from resilience.gameday.report import rejudge_session

    verdicts = run_command(lambda: rejudge_session(session_dir, overrides))
    if as_json:
        records = [v.to_record() for v in verdicts]
        typer.echo(
            json.dumps(
                {"run_dir": str(session_dir), "kind": "gameday", "windows": records}, indent=2
            )
        )
    else:
        for v in verdicts:
            r = v.verdict.recovery
            recovered = (
                f"recovered in {r.seconds:.1f} s"
                if r is not None and r.recovered and r.seconds is not None
                else "not recovered"
                if r is not None and r.recovered is False
                else "recovery not measured"
            )
            found = [f.kind for f in v.verdict.findings if f.status == "found"]
            console.print(
                Text(f"window {v.window.index}: {v.window.label}: ", style="bold")
                + Text(f"{recovered}; found: {', '.join(found) or 'nothing'}"),
                soft_wrap=True,
            )
        console.print(Text("windows re-judged into journal.json; report.html rewritten"))
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command("analyse")(analyse)
