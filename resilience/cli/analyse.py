"""Command ``analyse``: judge a finished run again from its run directory."""

from __future__ import annotations

import json

import typer
from rich.text import Text

from resilience.cli._common import console, run_command
from resilience.cli._params import JsonOpt, RunDirArg, SetOpt


def analyse(run_dir: RunDirArg, overrides: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Judge a run again from its directory alone (new rules, changed SLOs or detector
    settings with --set), keep the old verdict beside the new one in journal.json, and
    rewrite the reports. Exit code: the new verdict's."""
    from resilience.runner.rejudge import rejudge

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


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command("analyse")(analyse)
