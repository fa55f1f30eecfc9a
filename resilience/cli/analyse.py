"""Command ``analyse``: judge a finished run again from its run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from resilience.cli._common import console, run_command


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""

    @app.command("analyse")
    def analyse(
        run_dir: Annotated[
            Path, typer.Argument(metavar="DIR", help="A run directory (it holds journal.json).")
        ],
        overrides: Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                metavar="KEY=VALUE",
                help="Change the recorded experiment before judging, e.g. slo.baseline.p95=300ms.",
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the new verdict as JSON.")
        ] = False,
    ) -> None:
        """Judge a run again from its directory alone (new rules, changed SLOs or detector
        settings), keep the old verdict beside the new one, and rewrite the reports.
        Exit code: the new verdict's."""
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
