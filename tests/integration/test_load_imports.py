"""The parent side of the load engine never imports Locust or gevent (they patch a process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

PARENT_SIDE = [
    "resilience.load",
    "resilience.load.engine",
    "resilience.load.distributed",
    "resilience.load.samples",
    "resilience.load.recorder",
    "resilience.load.plan",
    "resilience.load.schedule",
    "resilience.load.template",
    "resilience.load.collector",
    "resilience.histogram",
    "resilience.load.worker",
]


def test_parent_side_modules_do_not_import_locust_or_gevent() -> None:
    """Importing every gevent-free module in a fresh interpreter leaves locust/gevent out."""
    code = (
        f"import importlib, sys\n"
        f"for name in {PARENT_SIDE!r}:\n"
        f"    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'))\n"
        f"print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"


def test_the_worker_runtime_does_import_locust() -> None:
    """The check above can fail: the worker runtime module pulls Locust in."""
    code = "import sys, resilience.load.runtime; print('locust' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "True"
