"""The terminal's share of logging: warnings by default, everything with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from resilience.cli._common import configure_logging, mask_on_terminal
from resilience.runner.files import attach_run_log


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


def test_the_terminal_and_the_run_log_mask_secrets(
    restored_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Log lines and tracebacks reach neither the terminal nor run.log with a secret in them:
    the rules apply from the start, the experiment's literal values once it is loaded."""
    configure_logging(verbose=False)
    redactor = mask_on_terminal(["lit3ral-value"])
    logger = logging.getLogger("resilience.test")
    handler = attach_run_log(tmp_path / "run.log", redactor)
    try:
        logger.warning("target http://u:pa55word@127.0.0.1:1/ with %s", "lit3ral-value")
        try:
            raise ValueError("Authorization: Bearer b3arer-t0ken")
        except ValueError:
            logger.exception("request failed")
    finally:
        logging.getLogger("resilience").removeHandler(handler)
        handler.close()
        mask_on_terminal(())
    terminal, log = capsys.readouterr().err, (tmp_path / "run.log").read_text()
    assert "http://u:***@127.0.0.1:1/ with ***" in log
    assert "ValueError: Authorization: ***" in log
    assert "http://u:***@" in terminal and "Authorization: ***" in terminal
    for secret in ("pa55word", "lit3ral-value", "b3arer-t0ken"):
        assert secret not in terminal
        assert secret not in log
