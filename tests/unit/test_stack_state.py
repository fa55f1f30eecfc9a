"""Unit tests: stack.json (round trip, atomic writes, bad files) and the up/down lock."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from resilience.errors import StackError
from resilience.stack.state import ComponentRecord, StackState, load_state, locked, save_state


def record(name: str = "toxiproxy", pid: int = 4242) -> ComponentRecord:
    return ComponentRecord(
        name=name,
        pid=pid,
        pgid=pid,
        start_ticks=123456,
        port=8474,
        ports={"toxiproxy": 8474, "postgres_proxy": 25432},
        version="v2.12.0",
        log="/tmp/state/logs/toxiproxy.log",
        started_at="2026-01-01T00:00:00.000Z",
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    """A state saved and loaded again is equal, shop mode and options included."""
    path = tmp_path / "stack.json"
    shop = record("gateway", 99).model_copy(update={"mode": "hardened", "options": {"a": "1"}})
    state = StackState().with_record(record()).with_record(shop)
    save_state(path, state)
    assert load_state(path) == state
    assert json.loads(path.read_text())["components"]["gateway"]["mode"] == "hardened"


def test_missing_file_is_an_empty_stack(tmp_path: Path) -> None:
    """No stack.json means nothing runs."""
    assert load_state(tmp_path / "stack.json").components == {}


def test_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    """An atomic save leaves only stack.json in the directory."""
    path = tmp_path / "stack.json"
    save_state(path, StackState().with_record(record()))
    save_state(path, StackState())
    assert [p.name for p in tmp_path.iterdir()] == ["stack.json"]
    assert load_state(path).components == {}


def test_without_removes_one_component_only() -> None:
    """``without`` drops the named record and keeps the others."""
    state = StackState().with_record(record("postgres", 1)).with_record(record("toxiproxy", 2))
    assert list(state.without("postgres").components) == ["toxiproxy"]


def test_a_corrupt_file_is_a_stack_error_naming_it(tmp_path: Path) -> None:
    """Unreadable JSON raises StackError with the file's path."""
    path = tmp_path / "stack.json"
    path.write_text("{not json")
    with pytest.raises(StackError, match=str(path)):
        load_state(path)


def test_the_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    """A second ``locked`` times out while the first holds the lock, and succeeds after."""
    path = tmp_path / ".lock"
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with locked(path):
            held.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=10)
        with pytest.raises(StackError, match="holds"), locked(path, timeout=0.3):
            pass
    finally:
        release.set()
        holder.join(timeout=10)
    with locked(path, timeout=1):
        pass
