"""The terminal's way in: a session file only its owner can read, or a clear refusal."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from resilience.errors import StackError
from resilience.gameday.client import SessionClient
from resilience.gameday.session import SESSION_FILE, SessionLock, write_private


def test_the_session_file_is_written_0600(tmp_path: Path) -> None:
    """write_private leaves a file readable by its owner only, whatever the umask."""
    old = os.umask(0)
    try:
        write_private(
            tmp_path / SESSION_FILE,
            json.dumps({"pid": os.getpid(), "url_base": "http://127.0.0.1:1", "token": "t"}),
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / SESSION_FILE).stat().st_mode) == 0o600
    client = SessionClient(tmp_path)
    assert client.token == "t" and client.base == "http://127.0.0.1:1"


def test_no_session_or_a_readable_file_is_refused(tmp_path: Path) -> None:
    """No file: 'no game-day session is running' (exit 3); a group-readable file is refused;
    a file whose process is gone says so."""
    with pytest.raises(StackError, match="no game-day session is running") as info:
        SessionClient(tmp_path)
    assert info.value.exit_code == 3
    path = tmp_path / SESSION_FILE
    path.write_text(json.dumps({"pid": os.getpid(), "url_base": "x", "token": "t"}))
    path.chmod(0o644)
    with pytest.raises(StackError, match="readable by others"):
        SessionClient(tmp_path)
    path.chmod(0o600)
    path.write_text(json.dumps({"pid": 2**22 + 12345, "url_base": "x", "token": "t"}))
    with pytest.raises(StackError, match="is gone"):
        SessionClient(tmp_path)


def test_one_session_lock_per_state_directory(tmp_path: Path) -> None:
    """A second lock on the same state directory is refused until the first is released."""
    first, second = SessionLock(tmp_path), SessionLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StackError, match="already running"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()
