"""The package's public face: exactly the names users may import, each resolving, typed and
(for results) frozen; and importing the package is cheap."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import resilience

PUBLIC = {
    "DependencyUnavailable", "Experiment", "ExperimentError", "FaultError", "GuardTripped",
    "Interrupted", "LiveStatus", "LoadError", "ObserveError", "ResilienceError", "RunObserver",
    "RunOptions", "RunResult", "StackError", "Verdict", "__version__", "analyse",
    "load_experiment", "run_experiment",
}  # fmt: skip


def test_the_public_face_is_exactly_the_documented_names() -> None:
    """Adding or removing a public name is a decision: this test changes with it."""
    assert set(resilience.__all__) == PUBLIC
    assert len(resilience.__all__) == len(PUBLIC)


def test_results_are_frozen_and_options_check_themselves(tmp_path: Path) -> None:
    """RunResult and Verdict cannot be changed; RunOptions refuses a bad value by name."""
    result = resilience.RunResult(None, "error", 3, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.exit_code = 0  # type: ignore[misc]
    assert dataclasses.is_dataclass(resilience.Verdict)
    assert resilience.Verdict.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for bad, needle in (
        ({"target": "http://:80"}, "--target"),
        ({"traces": "http://user:pw@127.0.0.1:16686"}, "--traces"),
        ({"prometheus": "ftp://127.0.0.1:9090"}, "--prometheus"),
        ({"target": "ftp://127.0.0.1:21"}, "--target"),
        ({"shop_mode": "brittle"}, "--shop-mode"),
        ({"workers": 0}, "--workers"),
        ({"out": tmp_path / "a-file"}, "--out"),
    ):
        (tmp_path / "a-file").write_text("x")
        with pytest.raises(resilience.ExperimentError, match=needle):
            resilience.RunOptions(**bad)  # type: ignore[arg-type]
    assert resilience.RunOptions(target="http://127.0.0.1:9000/").target == "http://127.0.0.1:9000"


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
