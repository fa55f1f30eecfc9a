"""Shared integration fixtures: the real stack, brought up once per test session.

Fixtures (all yield a ``StackHandle``: ``.config`` is the StackConfig, ``.stack`` the
``resilience.stack.Stack``, plus URL helpers):

``stack``
    The whole stack: PostgreSQL, Toxiproxy (with the proxies postgres, orders, catalog),
    Jaeger, Prometheus and the shop (catalog, orders, gateway) in ``fragile`` mode.
    Session-scoped: started on first use, stopped at the end of the session.
``infra_stack``
    Only PostgreSQL, Toxiproxy, Jaeger and Prometheus, for tests that need no shop.
    Same session stack: if ``stack`` already runs, the shop keeps running.
``fragile_shop`` / ``hardened_shop``
    Function-scoped: the whole stack with the shop in that mode (the shop alone is
    restarted when the mode differs, ~4 s; everything else stays up).
``private_stack``
    Function-scoped, not started: a stack of the test's own (own state directory, ports
    shifted 50 further), for tests that stop, break or restart things.

A test that needs shop options calls ``stack.stack.up(shop_mode=..., shop_options={...})``
itself (only the shop restarts) and should put the mode back with the fixture it uses
next. A test that disables a proxy or adds a toxic must heal it before it returns.

Where and on which ports:
- ports: the defaults shifted by ``RESILIENCE_TEST_PORT_OFFSET`` (default 1000);
  ``RESILIENCE_PORT_*`` variables are ignored here on purpose;
- state: a fresh directory ``resilience-stack-XXXX`` (mode 0755, so PostgreSQL's user
  can reach it) under ``RESILIENCE_TEST_STATE_ROOT``, else ``RESILIENCE_STATE_DIR``,
  else the system temporary directory. Its ``logs/`` hold each component's output; it
  is kept after the session for post-mortems and removed by the next session, which
  also stops whatever a killed earlier session left running there;
- programs: from ``RESILIENCE_HOME`` (``resilience stack install`` puts them there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from resilience.stack import Ports, Stack, StackConfig, StackPaths
from resilience.stack.config import default_home

SESSION_PREFIX = "resilience-stack-"
SESSION_LOCK = "session.lock"


@dataclass(frozen=True)
class StackHandle:
    """A running test stack: its configuration and its supervisor."""

    config: StackConfig
    stack: Stack

    @property
    def state(self) -> Path:
        return self.config.paths.state

    def url(self, component: str) -> str:
        """``http://127.0.0.1:<port>`` of a ``Ports`` field, e.g. ``gateway``, ``toxiproxy``."""
        return self.config.url(component)

    @property
    def gateway_url(self) -> str:
        return self.config.gateway_url

    @property
    def toxiproxy_url(self) -> str:
        return self.config.toxiproxy_url

    @property
    def prometheus_url(self) -> str:
        return self.config.prometheus_url

    @property
    def jaeger_query_url(self) -> str:
        return self.config.jaeger_query_url

    @property
    def database_password(self) -> str:
        """The stack's database password (made by its first start, in the state directory)."""
        return self.config.paths.database_password.read_text().strip()

    @property
    def database_url(self) -> str:
        """The shop's database, directly (not through Toxiproxy), with the password."""
        port = self.config.ports.postgres
        return f"postgresql://resilience:{self.database_password}@127.0.0.1:{port}/shop"

    @property
    def proxied_database_url(self) -> str:
        """The shop's database through the Toxiproxy ``postgres`` proxy, with the password."""
        port = self.config.ports.postgres_proxy
        return f"postgresql://resilience:{self.database_password}@127.0.0.1:{port}/shop"


def port_offset() -> int:
    """The test stack's port offset: RESILIENCE_TEST_PORT_OFFSET, default 1000."""
    return int(os.environ.get("RESILIENCE_TEST_PORT_OFFSET") or 1000)


def state_root() -> Path:
    root = Path(
        os.environ.get("RESILIENCE_TEST_STATE_ROOT")
        or os.environ.get("RESILIENCE_STATE_DIR")
        or tempfile.gettempdir()
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_config(state: Path, offset: int) -> StackConfig:
    """A StackConfig for a test stack in ``state`` with the default ports + ``offset``."""
    return StackConfig(
        paths=StackPaths(home=default_home(), state=state),
        ports=Ports().shifted(offset),
    )


@contextlib.contextmanager
def session_directory(root: Path, offset: int) -> Iterator[Path]:
    """A fresh state directory, held with a lock for as long as the session lives.

    Directories of earlier sessions whose lock is free (their pytest is gone) are
    cleaned: their stacks stopped, their files removed.
    """
    for old in sorted(root.glob(f"{SESSION_PREFIX}*")):
        lock = _try_lock(old / SESSION_LOCK)
        if lock is None:
            continue  # a live session
        try:
            if (old / "stack.json").exists():
                # Ports matter only for the wait after stopping; the record has them.
                Stack(make_config(old, offset)).down()
        finally:
            lock.close()
        shutil.rmtree(old, ignore_errors=True)
    state = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=root))
    state.chmod(0o755)
    lock = _try_lock(state / SESSION_LOCK)
    assert lock is not None
    try:
        yield state
    finally:
        lock.close()


def _try_lock(path: Path) -> IO[str] | None:
    try:
        handle = path.open("a")
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@pytest.fixture(scope="session")
def _session_stack() -> Iterator[StackHandle]:
    """The session's stack, not started; everything it started is stopped at the end."""
    offset = port_offset()
    with session_directory(state_root(), offset) as state:
        config = make_config(state, offset)
        handle = StackHandle(config=config, stack=Stack(config))
        try:
            yield handle
        finally:
            handle.stack.down()


@pytest.fixture(scope="session")
def infra_stack(_session_stack: StackHandle) -> StackHandle:
    """PostgreSQL, Toxiproxy (with its proxies), Jaeger and Prometheus; no shop needed."""
    _session_stack.stack.up(components=["infra"])
    return _session_stack


@pytest.fixture(scope="session")
def stack(_session_stack: StackHandle) -> StackHandle:
    """The whole stack; the shop starts in fragile mode (later tests may have switched it)."""
    _session_stack.stack.up(shop_mode="fragile")
    return _session_stack


@pytest.fixture
def fragile_shop(stack: StackHandle) -> StackHandle:
    """The whole stack with the shop in fragile mode (default options)."""
    stack.stack.up(shop_mode="fragile")
    return stack


@pytest.fixture
def hardened_shop(stack: StackHandle) -> StackHandle:
    """The whole stack with the shop in hardened mode (default options)."""
    stack.stack.up(shop_mode="hardened")
    return stack


ISOLATED_OFFSET_DELTA = 50  # no two default ports differ by 50: no clash with the session stack


@pytest.fixture
def private_stack() -> Iterator[StackHandle]:
    """A stack of the test's own, not started; stopped and removed afterwards."""
    state = Path(tempfile.mkdtemp(prefix="resilience-private-", dir=state_root()))
    state.chmod(0o755)
    config = make_config(state, port_offset() + ISOLATED_OFFSET_DELTA)
    handle = StackHandle(config=config, stack=Stack(config))
    try:
        yield handle
    finally:
        handle.stack.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def runs(stack: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A session cache of experiment runs on the real stack (see tests/integration/_runs.py)."""
    from tests.integration._runs import RunCache

    yield RunCache(stack, tmp_path_factory.mktemp("runs"))
