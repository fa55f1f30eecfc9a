"""The experiment's own processes, so the rig's health never counts them as other load: a
process found by the port it listens on, and a process tree with its children."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from resilience.runner.rig import listening_pids, process_tree


def test_a_listening_process_is_found_by_its_port() -> None:
    """A child that listens on a port is the owner of that port; a closed port has none."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import socket, time\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        found: set[int] = set()
        while time.monotonic() < deadline and child.pid not in found:
            found = listening_pids([port])
            time.sleep(0.05)
        assert child.pid in found
        assert listening_pids([1]) == set()
    finally:
        child.kill()
        child.wait(5)


def test_a_process_tree_holds_the_children() -> None:
    """The tree of this process holds a child it started (PostgreSQL's backends, say)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import os

        tree = process_tree([os.getpid()])
        assert os.getpid() in tree and child.pid in tree
        assert process_tree([]) == set()
    finally:
        child.kill()
        child.wait(5)
