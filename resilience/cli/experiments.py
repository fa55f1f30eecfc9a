"""Commands about experiment files: ``validate``, ``list`` (the catalogue) and ``schema``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.text import Text

from resilience.cli._common import console, err_console, run_command
from resilience.errors import EXIT_INVALID, ExperimentError


def _checked(action: Callable[[], None]) -> Callable[[], None]:
    """``action`` with experiment errors printed verbatim (exit 2).

    Messages quote the user's own text, which may contain ``[...]`` or ``:name:``; printed
    as plain ``Text`` they cannot be mistaken for rich markup or emoji codes.
    """

    def wrapped() -> None:
        try:
            action()
        except ExperimentError as error:
            message = Text("invalid input: ", style="bold red") + Text(str(error))
            err_console.print(message, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapped


def _validate(file: str, profile: str | None, overrides: list[str]) -> None:
    from resilience.experiment import format_duration, load_all_profiles, load_experiment

    if profile is not None:
        experiment = load_experiment(file, profile=profile, overrides=overrides)
        console.print(
            f"[green]ok:[/] {experiment.name} with profile {profile} ({experiment.summary()})",
            highlight=False,
            soft_wrap=True,
        )
        return
    loaded = load_all_profiles(file, overrides=overrides)
    base = loaded[None]
    profiles = [
        f"{name} {format_duration(exp.total_duration)}"
        for name, exp in loaded.items()
        if name is not None
    ]
    suffix = f"; profiles: {', '.join(profiles)}" if profiles else ""
    console.print(
        f"[green]ok:[/] {base.name} ({base.summary()}{suffix})", highlight=False, soft_wrap=True
    )


def _list(directory: Path | None) -> None:
    from rich.table import Table

    from resilience.experiment import catalogue_entries, find_catalogue_dir, format_duration

    where = directory or find_catalogue_dir()
    where = where.resolve() if where is not None else None
    entries = catalogue_entries(where)
    if not entries:
        err_console.print(f"no experiments found (catalogue: {where or 'not found'})")
        raise typer.Exit(EXIT_INVALID)
    table = Table(title=f"experiments in {where}", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    table.add_column("duration", no_wrap=True, justify="right")
    table.add_column("smoke", no_wrap=True, justify="right")
    table.add_column("faults", overflow="fold")
    invalid = 0
    for entry in entries:
        if entry.error is not None:
            invalid += 1
            problem = Text("invalid: ", style="red") + Text(entry.error)
            table.add_row(entry.name, problem, "-", "-", "-")
            continue
        table.add_row(
            entry.name,
            Text(entry.description),
            format_duration(entry.duration) if entry.duration is not None else "-",
            format_duration(entry.smoke_duration) if entry.smoke_duration is not None else "-",
            ", ".join(entry.faults) or "none",
        )
    console.print(table)
    if invalid:
        raise typer.Exit(EXIT_INVALID)


def _schema() -> None:
    from resilience.experiment import experiment_schema

    typer.echo(json.dumps(experiment_schema(), indent=2, sort_keys=False))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("validate")
    def validate(
        file: str = typer.Argument(..., help="Experiment file, or a catalogue name."),
        profile: str | None = typer.Option(
            None, "--profile", "-p", help="Validate with this profile applied (default: all)."
        ),
        overrides: list[str] = typer.Option(  # noqa: B008
            [], "--set", help="Override a value: key.path=value (repeatable)."
        ),
    ) -> None:
        """Check an experiment file (and its profiles); exit 2 with every problem found."""
        run_command(_checked(lambda: _validate(file, profile, overrides)))

    @app.command("list")
    def list_experiments(
        directory: Path | None = typer.Option(  # noqa: B008
            None, "--dir", help="Catalogue directory (default: the built-in catalogue)."
        ),
    ) -> None:
        """List the catalogue: name, description, duration, smoke duration, faults."""
        run_command(_checked(lambda: _list(directory)))

    @app.command("schema")
    def schema() -> None:
        """Print the JSON Schema of experiment files (for editors)."""
        run_command(_schema)
