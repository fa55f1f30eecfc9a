"""The terminal's share of logging: warnings by default, everything with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from resilience.cli._common import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("resilience")
    saved = (root.level, list(root.handlers), ours.level)
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
