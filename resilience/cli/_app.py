"""The `resilience` typer app, its commands one module each (``resilience/cli/``).

Commands are thin: parse options, call the library, map our errors to exit codes
(see ``_common.run_command``). Heavy modules are imported inside the command functions
so that ``resilience --help`` (and shell completion, which runs the program on every
<TAB>) stays fast. One style throughout: every parameter is declared as
``Annotated[type, typer.Option(...)]`` with a metavar that names what it takes (``FILE``,
``NAME``, ``KEY=VALUE``, ``URL``, ``N``, ``DIR``, ``MODE``); flags have none.
"""

from __future__ import annotations

from typing import Annotated

import typer

from resilience.cli import analyse as _analyse
from resilience.cli import experiments as _experiments
from resilience.cli import gameday as _gameday
from resilience.cli import proxies as _proxies
from resilience.cli import report as _report
from resilience.cli import run as _run
from resilience.cli import stack as _stack
from resilience.cli import worker as _worker
from resilience.cli._common import configure_logging
from resilience.cli._params import FLAG

app = typer.Typer(
    name="resilience",
    help="Chaos-plus-load experiments: drive load, inject faults, get a verdict with evidence.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", metavar=FLAG, help="Log debug detail to stderr."),
    ] = False,
) -> None:
    configure_logging(verbose=verbose)


_run.register(app)
_experiments.register(app)
_report.register(app)
_analyse.register(app)
_stack.register(app)
_proxies.register(app)
_gameday.register(app)
_worker.register(app)
