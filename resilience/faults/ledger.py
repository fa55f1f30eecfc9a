"""The fault ledger: a file listing what a run did to Toxiproxy and has not undone yet.

The timeline writes an entry *before* each apply and drops it after the heal, replacing
the file atomically (write to a temporary file, fsync, rename) so that whatever kills the
run, even SIGKILL between two lines, leaves a complete list behind. The next start reads
it in ``resilience.faults.sweeper`` to remove leftover toxics and re-enable the proxies
the killed run had disabled. A missing file means nothing is outstanding; a corrupt one
is reported and treated as empty (the sweeper still removes every ``resilience-`` toxic).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from resilience.errors import FaultError

logger = logging.getLogger(__name__)

LEDGER_VERSION = 1


@dataclass(frozen=True)
class LedgerEntry:
    """One outstanding action: a toxic we added and/or a proxy we disabled."""

    key: str
    proxy: str
    fault_index: int
    fault_type: str
    toxic: str | None = None
    disabled_proxy: bool = False
    pid: int = 0
    recorded_at: str = ""

    @classmethod
    def from_json(cls, raw: object) -> LedgerEntry:
        if not isinstance(raw, dict):
            raise ValueError(f"a ledger entry must be an object, got {type(raw).__name__}")
        return cls(
            key=str(raw["key"]),
            proxy=str(raw["proxy"]),
            fault_index=int(raw.get("fault_index", -1)),
            fault_type=str(raw.get("fault_type", "")),
            toxic=None if raw.get("toxic") is None else str(raw["toxic"]),
            disabled_proxy=bool(raw.get("disabled_proxy", False)),
            pid=int(raw.get("pid", 0)),
            recorded_at=str(raw.get("recorded_at", "")),
        )


def read_ledger(path: Path) -> list[LedgerEntry]:
    """The entries in a ledger file; [] when it is missing or unreadable (logged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        logger.warning("cannot read the fault ledger %s: %s", path, exc)
        return []
    try:
        data = json.loads(text)
        raw_entries = data["entries"] if isinstance(data, dict) else None
        if not isinstance(raw_entries, list):
            raise ValueError("no 'entries' list")
        return [LedgerEntry.from_json(e) for e in raw_entries]
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("the fault ledger %s is corrupt (%s); treating it as empty", path, exc)
        return []


def write_ledger(path: Path, entries: list[LedgerEntry]) -> None:
    """Replace the ledger atomically; remove the file when nothing is outstanding."""
    try:
        if not entries:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": LEDGER_VERSION, "entries": [asdict(e) for e in entries]}, indent=2
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise FaultError(f"cannot write the fault ledger {path}: {exc}") from exc


class FaultLedger:
    """The ledger of one run: entries kept in memory and mirrored to the file at every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._entries: dict[str, LedgerEntry] = {e.key: e for e in read_ledger(path)}

    def record(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries[entry.key] = entry
            write_ledger(self.path, list(self._entries.values()))

    def discard(self, key: str) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                write_ledger(self.path, list(self._entries.values()))

    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            write_ledger(self.path, [])
