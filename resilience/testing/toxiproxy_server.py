"""Helpers for tests that need a real Toxiproxy: a server in its own process group, an echo upstream.

``ToxiproxyServer`` starts ``toxiproxy-server`` on a given port in a new session (its own
process group), waits for ``/version`` with a deadline, and stops the whole group on exit,
so a test never leaves a server behind and never touches one it did not start.
``EchoServer`` is a tiny threaded TCP echo upstream to send traffic through a proxy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

from resilience.errors import DependencyUnavailable, StackError

logger = logging.getLogger(__name__)

DEFAULT_BINARY = Path("/var/lib/resilience/bin/toxiproxy-server")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


class ToxiproxyServer:
    """A toxiproxy-server process owned by the caller (context manager)."""

    def __init__(
        self,
        port: int,
        *,
        binary: Path = DEFAULT_BINARY,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
    ) -> None:
        self.port = port
        self.host = host
        self.binary = binary
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ToxiproxyServer:
        if not self.binary.exists():
            raise DependencyUnavailable(
                f"toxiproxy-server not found at {self.binary}",
                fix="resilience stack install",
                component="toxiproxy",
            )
        if not port_is_free(self.port, self.host):
            raise StackError(
                f"port {self.port} is already in use; refusing to start a second Toxiproxy there",
                component="toxiproxy",
            )
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "LOG_LEVEL": os.environ.get("TOXIPROXY_LOG_LEVEL", "warn")}
        try:
            self.process = subprocess.Popen(
                [str(self.binary), "-host", self.host, "-port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        finally:
            if not isinstance(log, int):
                log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(
                    f"toxiproxy-server exited with {self.process.returncode} at start",
                    component="toxiproxy",
                )
            try:
                httpx.get(f"{self.url}/version", timeout=0.5).raise_for_status()
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            return self
        self.stop()
        raise StackError(
            f"toxiproxy-server did not answer on {self.url} within {self.start_timeout}s",
            component="toxiproxy",
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def __enter__(self) -> ToxiproxyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 (context manager); bounded by ``max_clients``."""

    def __init__(self, port: int, *, max_clients: int = 256) -> None:
        self.port = port
        self.max_clients = max_clients
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> EchoServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name="echo-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        accepted = 0
        while not self._stop.is_set() and accepted < self.max_clients:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted += 1
            with self._lock:
                self._clients.append(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        with client:
            while not self._stop.is_set():
                try:
                    data = client.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    client.sendall(data)
                except OSError:
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(OSError):
                    client.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
