"""What every command shares: the consoles, logging set-up, and errors mapped to exit codes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from resilience.errors import (
    EXIT_INTERRUPTED,
    DependencyUnavailable,
    ExperimentError,
    ResilienceError,
    StackError,
)

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def configure_logging(*, verbose: bool) -> None:
    """The terminal shows warnings and errors (everything with ``--verbose``).

    The level sits on the terminal's handler as well as on the root logger: a run lowers
    the ``resilience`` logger to INFO for its run.log, and that detail belongs in the file,
    not between the live lines on the terminal."""
    level = logging.DEBUG if verbose else logging.WARNING
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h, RichHandler)]
    if not handlers:
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
        handlers = [handler]
    for handler in handlers:
        handler.setLevel(level)
    root.setLevel(level)
    # Our own loggers follow the flag; chatty libraries stay at WARNING.
    for noisy in ("httpx", "httpcore", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(error: ResilienceError) -> NoReturn:
    """Print an error the way users should see it and exit with its code."""
    label = {
        ExperimentError: "invalid input",
        DependencyUnavailable: "missing dependency",
        StackError: "stack error",
    }
    title = next((t for cls, t in label.items() if isinstance(error, cls)), "error")
    # Messages quote user input ([profile 'x'], {int:1:50}, :emoji-like:): print them as
    # plain text, never as markup.
    message = Text(f"{title}: ", style="bold red")
    message.append(str(error))
    err_console.print(message, highlight=False, emoji=False)
    if isinstance(error, StackError) and error.log_tail:
        err_console.print(
            Text(f"--- last lines of {error.component or 'the'} log ---", style="dim")
        )
        err_console.print(Text(error.log_tail), highlight=False, emoji=False)
    raise typer.Exit(error.exit_code)


def run_command(action: Callable[[], T]) -> T:
    """Run a command body, turning our errors into a message and their exit code."""
    try:
        return action()
    except ResilienceError as error:
        fail(error)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
