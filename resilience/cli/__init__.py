"""The `resilience` command: a typer app (``resilience.cli._app``) whose commands live one
module each.

This module stays light on purpose: the console script's ``main`` runs before the app's
modules are imported (typer, rich and every command: about half a second), so a `run`
starts its load workers (cli/early.py) and takes over SIGINT and SIGTERM from its first
moments; a signal that comes while the rest
loads is handed to the run, which ends with a journal and exit 130 (runner/signals.py).
For a run, the cyclic garbage collector also waits until the experiment is loaded
(``resume_gc``): the imports and the experiment's models allocate hundreds of thousands
of objects and almost no garbage, and collecting among them cost about a tenth of the
start-up's CPU (benchmarks/startup.py).
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.cli._app import app


def main() -> None:
    """Console-script entry point."""
    from resilience.runner.signals import InterruptGate

    if _command(sys.argv[1:]) == "run":
        gc.disable()  # until the experiment is loaded: resume_gc
        # The run command's own gate adopts what this one caught (InterruptGate.install).
        InterruptGate().install()
        _start_workers_early(sys.argv[1:])
    from resilience.cli._app import app

    app()


def resume_gc() -> None:
    """The start-up is over (the app imported, the experiment loaded): the garbage
    collector runs again, and what the start-up made stays out of its later passes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _start_workers_early(args: list[str]) -> None:
    """A local run's load workers start now, importing Locust while this process imports
    the app (cli/early.py); the run adopts them, or stops them."""
    try:
        from resilience.cli.early import early_workers
        from resilience.load.pool import prestart

        count = early_workers(args)
        if count:
            prestart(count)
    except Exception:  # only ever a head start: the run starts its workers itself
        import logging

        logging.getLogger(__name__).debug("no workers started early", exc_info=True)


def _command(args: list[str]) -> str | None:
    """The command named on the command line (the root's options are all flags)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def __getattr__(name: str) -> Any:
    if name == "app":
        from resilience.cli._app import app

        return app
    raise AttributeError(f"module 'resilience.cli' has no attribute {name!r}")


__all__ = ["app", "main", "resume_gc"]
