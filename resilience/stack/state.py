"""The running stack's record, ``<state>/stack.json``: which processes are ours, on which ports.

Written atomically (a temporary file renamed over the old one) after every component
that starts or stops, so a crash in the middle still leaves a record that ``down`` can
act on. A lock file serialises ``up`` and ``down`` between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resilience.errors import StackError

STATE_FORMAT = 1


class ComponentRecord(BaseModel):
    """One process we started: enough to find it again, check it, and stop it."""

    model_config = ConfigDict(frozen=True)

    name: str
    pid: int
    pgid: int
    start_ticks: int = Field(description="process start time from /proc/PID/stat (PID reuse check)")
    port: int
    ports: dict[str, int] = Field(default_factory=dict)
    version: str = "unknown"
    mode: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    log: str
    started_at: str


class StackState(BaseModel):
    """Everything in stack.json."""

    format: int = STATE_FORMAT
    components: dict[str, ComponentRecord] = Field(default_factory=dict)

    def with_record(self, record: ComponentRecord) -> StackState:
        return StackState(components={**self.components, record.name: record})

    def without(self, name: str) -> StackState:
        return StackState(components={k: v for k, v in self.components.items() if k != name})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def load_state(path: Path) -> StackState:
    """Read stack.json; a missing file is an empty stack."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return StackState()
    try:
        return StackState.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise StackError(
            f"{path} is not a valid stack record ({exc.__class__.__name__}: {exc}); "
            "stop the processes it listed by hand, then delete it"
        ) from exc


def load_scrape_jobs(path: Path) -> dict[str, str]:
    """The extra Prometheus scrape jobs (job name -> /metrics URL); none without the file."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); delete it") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise StackError(f"{path} is not a mapping of job names to URLs; delete it")
    return dict(raw)


def save_scrape_jobs(path: Path, jobs: dict[str, str]) -> None:
    """Write the extra scrape jobs atomically (no jobs: the file is removed)."""
    if not jobs:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(jobs.items())), indent=2) + "\n")
    tmp.replace(path)


def save_state(path: Path, state: StackState) -> None:
    """Write stack.json atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = state.model_dump_json(indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".stack-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(path: Path, *, timeout: float = 300.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (another ``up``/``down`` waits up to ``timeout``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"another resilience command holds {path} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
