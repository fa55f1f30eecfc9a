"""Distributed load: the words shared by the run's host, its master and the remote workers.

A distributed run spreads its load over ``resilience worker --master HOST[:PORT]`` processes,
on this machine or others, through Locust's own master/worker messaging (ZeroMQ): the run's
host starts a master (``resilience.load.master``, a child process like the local workers,
because Locust patches the process it is imported into with gevent) that waits for the
workers, measures each one's clock against its own, hands each its share of the plan and
relays everything they record back to the run, unchanged. The fault timeline and the clock
stay on the run's host: t0, phase marks and live commands go out from there.

This module is gevent-free: the CLI and the engine use it as much as the master and the
remote worker do.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from resilience.errors import ExperimentError

logger = logging.getLogger(__name__)

DEFAULT_BIND = "127.0.0.1"
"""The master listens on loopback unless the user names another interface."""
DEFAULT_WAIT_S = 120.0
"""How long a run waits for its workers to join before it gives up (could not run)."""

# Custom message types over Locust's master/worker channel (both directions).
PLAN = "resilience_plan"
"""master -> worker: this worker's plan (its index, the worker count, t0 on its clock)."""
COMMAND = "resilience_command"
"""master -> worker: one command line (``resilience.load.commands``)."""
PING = "resilience_ping"
"""master -> worker: the master's wall clock, for the worker's clock offset."""
PONG = "resilience_pong"
"""worker -> master: the ping's time, the worker's wall clock, its pid and host name."""
EVENTS = "resilience_events"
"""worker -> master: a batch of event lines (``resilience.load.samples``), once a second."""
STOP = "resilience_stop"
"""master -> worker: stop now, flush what was recorded (the run is ending early)."""
BYE = "resilience_bye"
"""master -> worker: your last events arrived, you may go."""
REFUSE = "resilience_refuse"
"""master -> worker: the run does not need you (it has its workers, or it is over)."""


@dataclass(frozen=True)
class Distributed:
    """How a run spreads its load: ``workers`` remote workers joining a master that listens
    on ``bind``:``port``, waited for at most ``wait`` seconds."""

    workers: int
    bind: str = DEFAULT_BIND
    port: int = 5557
    wait: float = DEFAULT_WAIT_S

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 1024:
            raise ExperimentError(
                "invalid number of distributed workers", expected="1 to 1024", got=str(self.workers)
            )
        if not 1 <= self.port <= 65535:
            raise ExperimentError("invalid master port", expected="1 to 65535", got=str(self.port))
        if self.wait <= 0:
            raise ExperimentError(
                "invalid wait for distributed workers", expected="> 0 s", got=f"{self.wait}"
            )

    @property
    def address(self) -> str:
        """``host:port`` as a worker would name it (brackets around an IPv6 address)."""
        return format_address(self.bind, self.port)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str, *, default_port: int, option: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` -> (host, port); an
    ``ExperimentError`` naming ``option`` for anything else."""
    value = text.strip()
    host, port_text = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise _bad_address(option, text)
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                raise _bad_address(option, text)
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        if not port_text:
            raise _bad_address(option, text)
    elif ":" in value:  # a bare IPv6 address
        host = value
    if not host or any(c.isspace() for c in host) or host in ("*",):
        raise _bad_address(option, text)
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise _bad_address(option, text)
        port = int(port_text)
    return host, port


def _bad_address(option: str, text: str) -> ExperimentError:
    return ExperimentError(
        f"invalid {option}",
        expected="HOST, HOST:PORT or [IPv6]:PORT (PORT 1-65535; '*' is not an address: "
        "name the interface, e.g. 0.0.0.0)",
        got=repr(text),
    )
