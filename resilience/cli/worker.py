"""`resilience worker --master HOST[:PORT]`: lend this machine's cores to a distributed run.

The command checks its options and then becomes the load worker process itself
(``python -m resilience.load.worker --master ...``, by ``exec``): Locust patches the
process it is imported into with gevent, which the CLI's own process must never be, and a
worker should not carry the CLI's modules around. It joins the run's master, runs its
share of the plan, and exits when the run is over (0), when the master refused it (0: the
run had its workers), or when no master answered (3).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from resilience.cli._common import run_command
from resilience.cli._params import FLAG


def worker_argv(
    master: str, *, connect_timeout: float, record: Path | None, verbose: bool
) -> list[str]:
    """The worker process's command line (checked: ``ExperimentError`` for a bad address)."""
    from resilience.load.distributed import format_address, parse_address
    from resilience.stack.config import Ports

    host, port = parse_address(master, default_port=Ports.from_env().load_master, option="--master")
    argv = [
        sys.executable, "-m", "resilience.load.worker", "--master", format_address(host, port),
        "--connect-timeout", f"{connect_timeout:g}", "--log-level", "DEBUG" if verbose else "INFO",
    ]  # fmt: skip
    if record is not None:
        argv += ["--record", str(record)]
    return argv


def worker(
    master: Annotated[
        str,
        typer.Option(
            "--master",
            metavar="HOST[:PORT]",
            help="The run's master (the machine running `resilience run --expect-workers N`); "
            "PORT defaults to 5557 plus RESILIENCE_PORT_OFFSET.",
        ),
    ],
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            metavar="SECONDS",
            min=1.0,
            max=86400.0,
            help="Give up when no master answers within this long.",
        ),
    ] = 300.0,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            metavar="FILE",
            help="Also append every event this worker sends (JSON lines) to FILE.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar=FLAG, help="Log debug detail.")
    ] = False,
) -> None:
    """Join a distributed run as a load worker; logs go to stderr."""
    args = run_command(
        lambda: worker_argv(master, connect_timeout=connect_timeout, record=record, verbose=verbose)
    )
    sys.stdout.flush()
    sys.stderr.flush()
    run_command(lambda: os.execv(sys.executable, args))


def register(app: typer.Typer) -> None:
    """Add `worker` to the app."""
    app.command("worker")(worker)
