"""Commands about experiment files: ``validate``, ``list`` (the catalogue) and ``schema``.

``validate --json`` and ``list --json`` print one JSON document on stdout; the exit codes
are those of the text output (2 when a file is invalid).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from resilience.cli._common import (
    console,
    emit_json,
    err_console,
    error_details,
    print_error,
    print_warnings,
    run_command,
    unique_warnings,
)
from resilience.cli._params import ExperimentArg, JsonOpt, SetOpt
from resilience.errors import EXIT_INVALID, EXIT_PASSED, ExperimentError

if TYPE_CHECKING:
    from resilience.experiment import CatalogueEntry, Experiment


def _validate(file: str, profile: str | None, overrides: list[str], as_json: bool) -> int:
    from resilience.experiment import format_duration, load_all_profiles, load_experiment

    try:
        loaded: dict[str | None, Experiment]
        if profile is not None:
            loaded = {profile: load_experiment(file, profile=profile, overrides=overrides)}
        else:
            loaded = load_all_profiles(file, overrides=overrides)
    except ExperimentError as error:
        if as_json:
            emit_json({"file": file, "valid": False, "problems": error_details(error)})
        print_error(error)
        return error.exit_code
    base: Experiment = loaded[profile] if profile is not None else loaded[None]
    profiles = {name: exp for name, exp in loaded.items() if name is not None}
    warnings = unique_warnings(w for exp in loaded.values() for w in exp.warnings)
    if as_json:
        emit_json(
            {
                "file": str(base.source or file),
                "valid": True,
                "experiment": base.name,
                "profile": profile,
                "summary": base.summary(),
                "duration_seconds": base.total_duration,
                "profiles": {
                    n: {"duration_seconds": e.total_duration} for n, e in profiles.items()
                },
                "problems": [],
                "warnings": [asdict(w) for w in warnings],
            }
        )
        print_warnings(warnings)
        return EXIT_PASSED
    if profile is not None:
        text = f"{base.name} with profile {profile} ({base.summary()})"
    else:
        listed = [f"{name} {format_duration(exp.total_duration)}" for name, exp in profiles.items()]
        suffix = f"; profiles: {', '.join(listed)}" if listed else ""
        text = f"{base.name} ({base.summary()}{suffix})"
    console.print(Text("ok: ", style="green") + Text(text), highlight=False, soft_wrap=True)
    print_warnings(warnings)
    return EXIT_PASSED


def _entry_json(entry: CatalogueEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "path": str(entry.path),
        "valid": entry.error is None,
        "description": entry.description,
        "duration_seconds": entry.duration,
        "smoke_duration_seconds": entry.smoke_duration,
        "faults": list(entry.faults),
        "profiles": list(entry.profiles),
        "error": entry.error,
    }


def _list(directory: Path | None, as_json: bool) -> int:
    from rich.table import Table

    from resilience.experiment import catalogue_entries, find_catalogue_dir, format_duration

    where = directory or find_catalogue_dir()
    where = where.resolve() if where is not None else None
    entries = catalogue_entries(where)
    invalid = sum(1 for e in entries if e.error is not None)
    code = EXIT_INVALID if invalid or not entries else EXIT_PASSED
    if as_json:
        emit_json(
            {
                "catalogue": str(where) if where else None,
                "experiments": [_entry_json(e) for e in entries],
            }
        )
    if not entries:
        err_console.print(f"no experiments found (catalogue: {where or 'not found'})")
        return code
    if as_json:
        return code
    table = Table(title=f"experiments in {where}", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    table.add_column("duration", no_wrap=True, justify="right")
    table.add_column("smoke", no_wrap=True, justify="right")
    table.add_column("faults", overflow="fold")
    for entry in entries:
        if entry.error is not None:
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
    return code


def _schema() -> None:
    from resilience.experiment import experiment_schema

    typer.echo(json.dumps(experiment_schema(), indent=2, sort_keys=False))


def validate(
    file: ExperimentArg,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", metavar="NAME", help="Validate with this profile (default: all)."
        ),
    ] = None,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an experiment file (and its profiles); exit 2 with every problem found."""
    code = run_command(lambda: _validate(file, profile, list(overrides or []), as_json))
    raise typer.Exit(code)


def list_experiments(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", metavar="DIR", help="Catalogue directory (default: the built-in catalogue)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the catalogue: name, description, duration, smoke duration, faults (exit 2 if one is invalid)."""
    code = run_command(lambda: _list(directory, as_json))
    raise typer.Exit(code)


def schema() -> None:
    """Print the JSON Schema of experiment files (for editors)."""
    run_command(_schema)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("validate")(validate)
    app.command("list")(list_experiments)
    app.command("schema")(schema)
