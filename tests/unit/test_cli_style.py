"""One CLI style: readable metavars in every --help, completion on, errors never a traceback."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from resilience.cli import app

WIDE = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}


def _commands() -> list[tuple[str, ...]]:
    """Every command path of the app, e.g. ('run',), ('stack', 'up')."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        paths.extend((name, s) for s in sub) if sub else paths.append((name,))
    return sorted(paths)


def _callbacks() -> list[typing.Callable[..., object]]:
    from resilience.cli.stack import stack_app

    infos = [*app.registered_commands, *stack_app.registered_commands]
    return [info.callback for info in infos if info.callback is not None]


def test_the_app_has_the_contracted_commands() -> None:
    """DESIGN.md's command names are all there."""
    names = {" ".join(p) for p in _commands()}
    assert {"run", "list", "validate", "report", "compare", "doctor", "schema"} <= names
    assert {"stack install", "stack up", "stack down", "stack status"} <= names


def test_every_parameter_is_declared_with_annotated() -> None:
    """No command declares a parameter with a typer.Option/Argument default (the old style)."""
    for callback in _callbacks():
        hints = typing.get_type_hints(callback, include_extras=True)
        for name, parameter in inspect.signature(callback).parameters.items():
            assert typing.get_origin(hints[name]) is typing.Annotated, (callback.__name__, name)
            default = parameter.default
            assert not isinstance(default, typer.models.ParameterInfo), (callback.__name__, name)


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_help_shows_readable_labels_not_python_types(path: tuple[str, ...]) -> None:
    """--help of every command shows metavars (FILE, NAME, ...), never <str>/<list[str]>/<int range>."""
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    after = result.output.split("Options")[-1].splitlines()
    options = "\n".join(line for line in after if "--help" not in line)  # typer's own flag
    for python_label in ("<str>", "<list[str]>", "<int range>", "<int>", "<path>", "<bool>"):
        assert python_label not in options, (path, python_label, result.output)


def test_run_help_names_what_each_option_takes() -> None:
    """run --help: NAME|FILE, NAME, DIR, MODE, URL, KEY=VALUE, N, FILE."""
    result = CliRunner().invoke(app, ["run", "--help"], env=WIDE)
    out = result.output
    for option, metavar in (
        ("--profile", "NAME"), ("--out", "DIR"), ("--shop-mode", "MODE"), ("--target", "URL"),
        ("--set", "KEY=VALUE"), ("--workers", "N"), ("--junit", "FILE"),
    ):  # fmt: skip
        assert re.search(rf"{re.escape(option)}\s+(-\w\s+)?{re.escape(metavar)}\b", out), option
    assert "NAME|FILE" in out


def test_shell_completion_is_on() -> None:
    """The root --help offers --install-completion and --show-completion."""
    result = CliRunner().invoke(app, ["--help"], env=WIDE)
    assert "--install-completion" in result.output
    assert "--show-completion" in result.output


def test_experiment_names_complete_from_the_catalogue() -> None:
    """Completing `resilience run db-` offers the db-* catalogue experiments."""
    from resilience.cli._params import complete_experiment

    names = complete_experiment("db-")
    assert "db-hang" in names and "db-outage" in names
    assert all(n.startswith("db-") for n in names)


def test_a_bad_shop_mode_is_a_usage_error_with_exit_2() -> None:
    """--shop-mode brittle: exit 2, naming the allowed modes, no traceback."""
    result = CliRunner().invoke(app, ["run", "db-hang", "--shop-mode", "brittle"], env=WIDE)
    assert result.exit_code == 2
    assert "fragile" in result.output and "hardened" in result.output
    assert "Traceback" not in result.output


def test_out_naming_a_file_is_invalid_input(tmp_path: Path) -> None:
    """run --out FILE exits 2 with a message naming --out, before anything starts."""
    existing = tmp_path / "a-file"
    existing.write_text("x")
    result = CliRunner().invoke(app, ["run", "db-hang", "--out", str(existing)], env=WIDE)
    assert result.exit_code == 2
    assert "invalid --out" in result.output


def test_a_file_system_error_is_exit_3_without_a_traceback(tmp_path: Path) -> None:
    """A directory where compose wants to write a file: 'could not run', exit 3."""
    result = CliRunner().invoke(app, ["stack", "compose", "--file", str(tmp_path)], env=WIDE)
    assert result.exit_code == 3, result.output
    assert "could not run" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unexpected_error_is_reported_as_internal_with_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug inside a command is an 'internal error' line and exit 3, not a traceback."""
    from resilience import experiment

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(experiment, "load_all_profiles", broken)
    result = CliRunner().invoke(app, ["validate", "db-hang"], env=WIDE)
    assert result.exit_code == 3
    assert "internal error: ZeroDivisionError: boom" in result.output
    assert "Traceback" not in result.output
