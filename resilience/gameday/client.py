"""The terminal side of a session: find it through its session file, call its API.

The session file (``<state>/gameday.json``, mode 0600) holds the console's base URL, the
token and the session's pid; only its owner can read it, so only they can drive the
session from a terminal. Every call has a timeout; errors become the toolkit's own.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from resilience.errors import ExperimentError, ResilienceError, StackError
from resilience.gameday.session import SESSION_FILE, read_session_file
from resilience.runner.target import process_alive

TIMEOUT = 10.0


class SessionClient:
    """Calls one running session's API with its token."""

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / SESSION_FILE
        info = read_session_file(state_dir)
        if info is None:
            raise StackError(
                f"no game-day session is running for this state directory ({state_dir}); "
                "start one with `resilience gameday start`",
                component="gameday",
            )
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StackError(f"{path} is readable by others (mode {oct(mode & 0o777)}); refusing")
        raw_pid = info.get("pid", 0)
        pid = int(raw_pid) if isinstance(raw_pid, int | float | str) else 0
        if pid and not process_alive(pid):
            raise StackError(
                f"the game-day session (pid {pid}) is gone; `resilience stack status` "
                "heals what it left behind",
                component="gameday",
            )
        self.base = str(info["url_base"])
        self.token = str(info["token"])
        self.info = info

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        timeout: float = TIMEOUT,
    ) -> Any:
        try:
            response = httpx.request(
                method,
                f"{self.base}{path}",
                json=body if method != "GET" else None,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise StackError(f"the game-day session at {self.base} did not answer: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:500]}
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else str(data)
            if response.status_code in (400, 404, 409):
                raise ExperimentError(f"the session refused: {message}")
            raise ResilienceError(f"the session answered {response.status_code}: {message}")
        return data
