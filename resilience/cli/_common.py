"""What every command shares: consoles, logging set-up, JSON output, errors mapped to exit codes.

Every command body runs inside ``run_command``: our errors become a message on stderr and
their exit code (DESIGN.md: 2 invalid input, 3 could not run, 130 interrupted), and
nothing else escapes as a traceback either — a file-system error is "could not run" (3),
anything unexpected is reported as an internal error (3) with its traceback in the log
under ``--verbose``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict
from typing import IO, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from resilience.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    DependencyUnavailable,
    ErrorDetail,
    ErrorLocation,
    ExperimentError,
    ResilienceError,
    StackError,
)
from resilience.redact import RedactingFilter, Redactor

console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger("resilience.cli")
terminal_filter = RedactingFilter(Redactor())
"""Masks every log record the terminal shows: by the rules, and by the literal values of
the experiment at hand once a command has loaded it (``mask_on_terminal``)."""

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
        if terminal_filter not in handler.filters:
            handler.addFilter(terminal_filter)
    root.setLevel(level)
    # Our own loggers follow the flag; chatty libraries stay at WARNING.
    for noisy in ("httpx", "httpcore", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def mask_on_terminal(secrets: Iterable[str]) -> Redactor:
    """From now on the terminal's log lines also mask ``secrets`` (an experiment's
    ``${env:NAME}`` values); returns the redactor, for what a command prints itself."""
    terminal_filter.redactor = Redactor(secrets)
    return terminal_filter.redactor


def error_title(error: BaseException) -> str:
    """How an error is labelled for users: its kind, in the words of the exit codes."""
    label = {
        ExperimentError: "invalid input",
        DependencyUnavailable: "missing dependency",
        StackError: "stack error",
    }
    return next((t for cls, t in label.items() if isinstance(error, cls)), "error")


def print_error(error: ResilienceError) -> None:
    """The error on stderr, the way users should see it."""
    # Messages quote user input ([profile 'x'], {int:1:50}, :emoji-like:): print them as
    # plain text, never as markup.
    message = Text(f"{error_title(error)}: ", style="bold red")
    message.append(str(error))
    err_console.print(message, highlight=False, emoji=False, soft_wrap=True)
    if isinstance(error, StackError) and error.log_tail:
        err_console.print(
            Text(f"--- last lines of {error.component or 'the'} log ---", style="dim")
        )
        err_console.print(Text(error.log_tail), highlight=False, emoji=False)


def unique_warnings(warnings: Iterable[ErrorDetail]) -> list[ErrorDetail]:
    """Warnings once each: a base value's warning recurs in every profile it reaches."""
    seen: set[tuple[object, ...]] = set()
    out: list[ErrorDetail] = []
    for w in warnings:
        key = (w.file, w.line, w.path, w.expected, w.got)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def print_warnings(warnings: Iterable[ErrorDetail], on: Console | None = None) -> None:
    """Each warning (on stderr unless ``on`` says otherwise) as ``warning: FILE:LINE, at
    PATH: message (expected ..., got ...)``."""
    for w in warnings:
        where = str(ErrorLocation(file=w.file, line=w.line, path=w.path))
        message = Text("warning: ", style="bold yellow")
        message.append(f"{where}: " if where else "")
        message.append(f"{w.message} (expected {w.expected}, got {w.got})")
        (on or err_console).print(message, highlight=False, emoji=False, soft_wrap=True)


def fail(error: ResilienceError) -> NoReturn:
    """Print an error the way users should see it and exit with its code."""
    print_error(error)
    raise typer.Exit(error.exit_code)


def as_resilience_error(exc: Exception) -> ResilienceError:
    """Whatever went wrong, as one of ours (the exit code follows from the class)."""
    if isinstance(exc, ResilienceError):
        return exc
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        error = ResilienceError(f"could not run: {exc.strerror or exc}{where}")
    else:
        logger.debug("internal error", exc_info=exc)
        error = ResilienceError(
            f"internal error: {type(exc).__name__}: {exc} "
            "(please report it; --verbose shows where it happened)"
        )
    error.exit_code = EXIT_UNAVAILABLE
    return error


def run_command(action: Callable[[], T]) -> T:
    """Run a command body, turning every error into a message and its exit code."""
    try:
        return action()
    except (typer.Exit, typer.Abort):
        raise  # typer's own ways out
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        fail(as_resilience_error(exc))


def emit_json(data: object, *, file: IO[str] | None = None) -> None:
    """One JSON document on stdout (or ``file``): the machine-readable answer of a command."""
    stream = file or sys.stdout
    stream.write(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    stream.flush()


def error_details(error: ResilienceError) -> list[dict[str, object]]:
    """The problems of an error as JSON objects (file, line, path, message, expected, got)."""
    if isinstance(error, ExperimentError):
        return [asdict(d) for d in error.details]
    return [
        {"file": None, "line": None, "path": None, "message": str(error), "expected": None,
         "got": None}
    ]  # fmt: skip


@contextmanager
def stdout_for_json() -> Iterator[IO[str]]:
    """Keep stdout for the one JSON document: everything printed meanwhile goes to stderr.

    Yields the real stdout. The consoles look ``sys.stdout`` up when they print, so
    progress lines, live status and warnings all land on stderr inside this block."""
    real = sys.stdout
    with redirect_stdout(sys.stderr):
        yield real
