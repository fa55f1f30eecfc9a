"""The terminal's share of logging: warnings by default, everything with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from resilience.cli._common import configure_logging
from resilience.runner.orchestrator import attach_run_log


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("resilience")
    saved = (root.level, list(root.handlers), ours.level)
    ours.setLevel(logging.NOTSET)  # as in a fresh process (an earlier test may have run a run)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])


def test_info_a_run_logs_for_its_file_stays_off_the_terminal(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(verbose=False)
    logging.getLogger("resilience").setLevel(logging.INFO)  # what a run does for run.log
    logger = logging.getLogger("resilience.test")
    logger.info("detail for the run log")
    logger.warning("something to look at")
    err = capsys.readouterr().err
    assert "detail for the run log" not in err
    assert "something to look at" in err


def test_verbose_shows_debug_on_the_terminal(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(verbose=True)
    logging.getLogger("resilience.test").debug("fine detail")
    assert "fine detail" in capsys.readouterr().err


@contextmanager
def run_log(path: Path) -> Iterator[Path]:
    """A run's log file attached as the orchestrator attaches it, detached afterwards."""
    handler = attach_run_log(path)
    try:
        yield path
    finally:
        logging.getLogger("resilience").removeHandler(handler)
        handler.close()


def test_a_runs_log_file_does_not_hide_debug_under_verbose(
    restored_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configure_logging(verbose=True)
    with run_log(tmp_path / "run.log") as log:
        logging.getLogger("resilience.test").debug("still shown")
    assert "still shown" in capsys.readouterr().err
    assert "still shown" in log.read_text()


def test_a_runs_log_file_gets_info_without_putting_it_on_the_terminal(
    restored_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configure_logging(verbose=False)
    with run_log(tmp_path / "run.log") as log:
        logging.getLogger("resilience.test").info("fault applied")
    assert "fault applied" not in capsys.readouterr().err
    assert "fault applied" in log.read_text()
