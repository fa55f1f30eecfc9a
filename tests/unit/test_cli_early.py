"""How many load workers `resilience run` starts before the app loads (cli/early.py)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import typer.main

from resilience.cli import _app, _start_workers_early
from resilience.cli.early import VALUE_OPTIONS, early_workers


def _run_command() -> Any:
    group: Any = typer.main.get_command(_app.app)  # typer's own click: duck-typed
    return group.commands["run"]


def test_the_value_options_are_the_run_commands() -> None:
    """Every `run` option that takes a value is known, so its value is never read as the
    experiment (and a new one added to `run` fails here until it is listed)."""
    taking = {
        name
        for param in _run_command().params
        if getattr(param, "param_type_name", "") == "option" and not param.is_flag
        for name in param.opts
    }
    assert taking == VALUE_OPTIONS


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\n"
        "load: {workers: 3, stages: [{duration: 5s, users: 1, spawn_rate: 1}]}\n"
        "profiles:\n"
        "  smoke: {load: {workers: 1}}\n"
        "  wide: {load: {stages: [{duration: 5s, users: 9, spawn_rate: 9}]}}\n"
        "  spread: {load: {distributed: {workers: 2}}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "{f}"], 3),  # the file's load.workers
        (["run", "{f}", "--profile", "smoke"], 1),  # the profile's wins
        (["run", "-p", "smoke", "{f}"], 1),
        (["run", "--profile=smoke", "{f}"], 1),
        (["run", "{f}", "-p", "wide"], 3),  # the profile says nothing: the file's
        (["run", "{f}", "--workers", "5"], 5),  # the command line wins
        (["run", "{f}", "--set", "load.workers=4"], 4),
        (["run", "{f}", "--workers", "5", "--set", "load.workers=4"], 5),
        (["run", "{f}", "-p", "spread"], 0),  # a distributed run: its workers join it
        (["run", "{f}", "--dry-run"], 0),  # nothing runs
        (["run", "{f}", "--expect-workers", "2"], 0),
        (["run", "{f}", "--help"], 0),
        (["run"], 0),
        (["run", "{f}", "--workers"], 0),  # typer will say what is wrong
        (["run", "{f}", "--workers", "many"], 0),
        (["--verbose", "run", "{f}", "--out", "smoke", "--target", "http://127.0.0.1:9"], 3),
        (["run", "no-such-experiment"], 0),  # the run will refuse it: nothing started
        (["run", "a" * 300], 0),  # a name too long for the file system, no traceback
        (["run", "{f}", "-p", "smoke", "--profile", "wide"], 3),  # the last one counts
    ],
)
def test_the_count_follows_what_the_run_will_start(
    experiment: Path, args: list[str], expected: int
) -> None:
    argv = [str(experiment) if a == "{f}" else a for a in args]
    assert early_workers(argv, cores=2) == expected


def test_a_catalogue_name_reads_the_catalogue_file() -> None:
    """db-outage says nothing of workers (one per core); its smoke profile says 1."""
    assert early_workers(["run", "db-outage"], cores=2) == 2
    assert early_workers(["run", "db-outage", "--profile", "smoke"], cores=2) == 1


def test_a_file_that_is_not_yaml_starts_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("load: [unclosed\n")
    assert early_workers(["run", str(broken)], cores=2) == 0
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000 + "\n")
    assert early_workers(["run", str(deep)], cores=2) == 0


def test_many_workers_start_early_only_up_to_twice_the_cores(tmp_path: Path) -> None:
    """A file asking for 500 workers may still be refused when it loads: 4 start early on
    2 cores, the run starts the rest once the file is valid."""
    many = tmp_path / "many.yaml"
    many.write_text("load: {workers: 500}\n")
    assert early_workers(["run", str(many)], cores=2) == 4
    assert early_workers(["run", str(many), "--workers", "6"], cores=2) == 6


def test_the_console_script_prestarts_the_count(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    monkeypatch.setattr("resilience.load.pool.prestart", started.append)
    _start_workers_early(["run", str(experiment), "-p", "smoke"])
    _start_workers_early(["run", str(experiment), "--dry-run"])
    assert started == [1]


def test_a_run_pauses_the_garbage_collector_only_until_its_experiment_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilience.cli import main
    from resilience.errors import ExperimentError

    collecting: list[bool] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        raise ExperimentError(f"{tmp_path / 'x.yaml'}: not an experiment")

    monkeypatch.setattr("resilience.cli.run._prepare", load)
    monkeypatch.setattr("resilience.load.pool.prestart", lambda count: None)
    monkeypatch.setattr("resilience.cli.run.prestart", lambda count: None)
    monkeypatch.setattr("sys.argv", ["resilience", "run", str(tmp_path / "x.yaml")])
    assert gc.isenabled()
    try:
        with pytest.raises(SystemExit) as ended:
            main()
        # Paused while the experiment loaded; collecting again although loading failed.
        assert collecting == [False]
        assert gc.isenabled()
        assert ended.value.code == 2
    finally:
        gc.enable()
        gc.unfreeze()


def test_other_commands_never_pause_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    from resilience.cli import main

    monkeypatch.setattr("sys.argv", ["resilience", "list"])
    with pytest.raises(SystemExit):
        main()
    assert gc.isenabled()
