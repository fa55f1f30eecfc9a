"""The exception tree of the toolkit, and the exit code each branch maps to.

Callers catch these and only these: errors from Toxiproxy, Prometheus, Jaeger, the
subprocesses and the file system are translated at the boundary where they happen,
with the endpoint and what we were doing.

    ResilienceError                     root; exit 1 unless a subclass says otherwise
    ├── ExperimentError                 bad input (experiment file, flags, --set); exit 2
    ├── StackError                      a stack component cannot start or answer; exit 3
    │   └── DependencyUnavailable       a program or service is missing; exit 3
    ├── FaultError                      Toxiproxy refused or failed an action; exit 3
    │   ├── ToxiproxyError              the API answered with an error (faults/toxiproxy.py)
    │   │   ├── ToxiproxyNotFound       404: no such proxy or toxic
    │   │   └── ToxiproxyConflict       409: it exists already
    │   └── FaultRefused                a game day refused an injection; exit 2 (gameday/faults.py)
    ├── ObserveError                    Prometheus, Jaeger or the gathered evidence failed; exit 3
    │   ├── PrometheusUnavailable       no answer in time: stop asking (observe/prometheus.py)
    │   ├── PrometheusQueryError        Prometheus answered and refused the query
    │   ├── TraceBackendUnavailable     no answer from the trace backend (observe/traces.py)
    │   └── SeriesNotGathered           the run did not gather that series (rundir/series.py)
    ├── LoadError                       the load engine's worker processes failed; exit 3
    │   └── LoadRefused                 a worker refused a captured URL off the target's host; exit 2
    ├── GuardTripped                    a guard aborted the run (faults healed first); exit 1
    └── Interrupted                     SIGINT or SIGTERM during a run; exit 130

Not in this tree on purpose: the experiment loader's internal ``ValueProblem``,
``CrossFieldError`` and ``InputProblems`` (collected into one ``ExperimentError`` before they
leave ``resilience/experiment``), ``MissingVariable`` (a placeholder without a value while a
request is built), and the reference shop's own ``ShopError`` family (the shop is a target,
not the toolkit). ``tests/unit/test_errors.py`` keeps this picture complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class ResilienceError(Exception):
    """Root of every error the toolkit raises on purpose."""

    exit_code: int = EXIT_FAILED


@dataclass(frozen=True)
class ErrorLocation:
    """Where in an input a problem is: the file, the line (1-based) and the key path."""

    file: str | None = None
    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.path:
            parts.append(f"at {self.path}")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class ErrorDetail:
    """One problem of an ``ExperimentError`` as data (``validate --json`` prints these)."""

    file: str | None = None
    line: int | None = None
    path: str | None = None
    message: str
    expected: str | None = None
    got: str | None = None


class ExperimentError(ResilienceError):
    """An experiment file, profile, flag or override is invalid (exit 2).

    The message always names where (file, line, key path), what was expected and what
    was found; ``problems`` holds one line per problem when there are several, and
    ``details`` the same problems as data (one ``ErrorDetail`` each).
    """

    exit_code = EXIT_INVALID

    def __init__(
        self,
        message: str,
        *,
        location: ErrorLocation | None = None,
        expected: str | None = None,
        got: str | None = None,
        problems: list[str] | None = None,
        details: Sequence[ErrorDetail] | None = None,
    ) -> None:
        self.location = location or ErrorLocation()
        self.expected = expected
        self.got = got
        self.problems = problems or []
        if details is None:
            file = self.location.file
            details = [ErrorDetail(file=file, message=p) for p in self.problems] or [
                ErrorDetail(
                    file=file,
                    message=message,
                    line=self.location.line,
                    path=self.location.path,
                    expected=expected,
                    got=got,
                )
            ]
        self.details: tuple[ErrorDetail, ...] = tuple(details)
        text = message
        where = str(self.location)
        if where:
            text = f"{where}: {text}"
        if expected is not None:
            text += f" (expected {expected}"
            text += f", got {got})" if got is not None else ")"
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class StackError(ResilienceError):
    """A stack component could not start, stop or answer (exit 3).

    ``log_tail`` carries the last lines of the component's log when there is one.
    """

    exit_code = EXIT_UNAVAILABLE

    def __init__(self, message: str, *, component: str | None = None, log_tail: str = "") -> None:
        self.component = component
        self.log_tail = log_tail
        super().__init__(message)


class DependencyUnavailable(StackError):
    """A program or service the run needs is missing; the message says how to get it."""

    def __init__(self, message: str, *, fix: str, component: str | None = None) -> None:
        self.fix = fix
        super().__init__(f"{message}\n  fix: {fix}", component=component)


class FaultError(ResilienceError):
    """Toxiproxy refused or failed an action (create, update, delete, enable)."""

    exit_code = EXIT_UNAVAILABLE


class ObserveError(ResilienceError):
    """Prometheus or Jaeger could not answer a query."""

    exit_code = EXIT_UNAVAILABLE


class LoadError(ResilienceError):
    """The load engine's worker processes failed to start or died."""

    exit_code = EXIT_UNAVAILABLE


class LoadRefused(LoadError):
    """A load worker refused to send where the service pointed it: a captured URL (a
    ``Location``) off the target's host. The description leads off the target: exit 2."""

    exit_code = EXIT_INVALID


class GuardTripped(ResilienceError):
    """A guard's condition held for its duration; the run was aborted after healing."""

    exit_code = EXIT_FAILED


class Interrupted(ResilienceError):
    """The run received SIGINT or SIGTERM; every fault was healed before exit."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")
