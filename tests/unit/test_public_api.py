"""The package's public face: every name in __all__ resolves, and importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import resilience


def test_every_exported_name_resolves() -> None:
    """Each name in resilience.__all__ is an attribute of the package."""
    for name in resilience.__all__:
        assert getattr(resilience, name) is not None, name


def test_import_does_not_load_locust_or_the_runner() -> None:
    """`import resilience` loads neither Locust (gevent patching) nor the orchestrator."""
    code = (
        "import sys, resilience; "
        "print(any(m.startswith(('locust', 'gevent', 'resilience.runner')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
