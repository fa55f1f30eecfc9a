"""detectors.<kind>.params are checked when the file loads, against the one declaration the
detectors read their defaults from (resilience/experiment/detector_params.py)."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resilience.analysis.pipeline import DETECTORS
from resilience.cli import app
from resilience.errors import ExperimentError
from resilience.experiment import parse_experiment
from resilience.experiment.detector_params import DETECTOR_PARAMS
from resilience.experiment.model import DETECTOR_KINDS
from resilience.runner import evidence

BASE = """\
name: demo
load:
  stages: [{duration: 40s, users: 2, spawn_rate: 2}]
  workload:
    requests: [{path: /catalog/items}]
faults: [{at: 10s, duration: 5s, proxy: postgres, type: hang}]
detectors:
  cascading_failure:
    params:
"""


def error_of(params: str) -> ExperimentError:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(BASE + params, file="demo.yaml")
    return info.value


def test_an_unknown_param_is_refused_at_its_key_and_line_with_the_known_ones() -> None:
    """`colour: blue` was silently ignored; now exit 2 naming file, line, key path, the
    known params and the closest one."""
    error = error_of("      colour: blue\n      alhpa: 0.01\n")
    text = str(error)
    assert error.exit_code == 2
    assert "demo.yaml" in text
    assert "line 10, at detectors.cascading_failure.params.colour" in text
    assert "unknown cascading_failure param 'colour'" in text
    assert "error_rate_margin, min_errors, p95_ratio" in text
    assert "line 11, at detectors.cascading_failure.params.alhpa" in text
    assert "did you mean 'alpha'?" in text


def test_a_param_of_the_wrong_type_is_refused_with_what_was_expected() -> None:
    """A number param given text failed the detector only when the run was judged."""
    text = str(error_of("      p95_ratio: three\n      min_errors: 2.5\n"))
    assert "at detectors.cascading_failure.params.p95_ratio" in text
    assert "expected a number, got 'three'" in text
    assert "at detectors.cascading_failure.params.min_errors" in text
    assert "expected a whole number, got 2.5" in text


def test_a_param_out_of_its_range_is_refused_with_the_range() -> None:
    """`alpha: 5` made every test significant and `min_errors: -1` every endpoint degraded,
    silently; now exit 2 naming the range."""
    text = " ".join(
        str(error_of("      alpha: 5\n      min_errors: 0\n      p95_ratio: -2\n")).split()
    )
    assert "params.alpha" in text and "expected a number above 0 and below 1, got 5" in text
    assert "params.min_errors" in text and "expected a whole number at least 1, got 0" in text
    assert "params.p95_ratio" in text and "expected a number above 0, got -2" in text
    assert "expected a number at least 0" in " ".join(
        str(error_of("      p95_floor_ms: -1\n")).split()
    )
    assert "got nan (not a finite number)" in str(error_of("      alpha: .nan\n"))


def test_zero_is_accepted_where_it_means_something() -> None:
    """factor 0 (report any ratio), min_requests 0, max_reads 0 (read nothing back)."""
    for kind, name in (
        ("retry_amplification", "factor"),
        ("retry_amplification", "min_requests"),
        ("data_loss", "max_reads"),
        ("data_loss", "budget_s"),
    ):
        assert DETECTOR_PARAMS[kind][name].problem(0) is None, (kind, name)
    huge = DETECTOR_PARAMS["cascading_failure"]["min_errors"].problem(10**400)
    assert huge is not None  # out of range, never an OverflowError


def test_every_default_is_within_its_own_range() -> None:
    """The declared defaults pass their own check."""
    for kind, params in DETECTOR_PARAMS.items():
        for name, spec in params.items():
            if spec.default is not None:
                assert spec.problem(spec.default) is None, (kind, name)


def test_declared_params_of_every_type_are_accepted() -> None:
    """Numbers, whole numbers (3 or 3.0) and text params load as given."""
    experiment = parse_experiment(
        BASE.replace("cascading_failure:", "pool_exhaustion:")
        + "      wait_threshold_ms: 200\n      min_long_waits: 3.0\n      pool_label: pool\n",
        file="demo.yaml",
    )
    assert experiment.detectors["pool_exhaustion"].params["wait_threshold_ms"] == 200


def test_validate_exits_2_on_a_misspelt_param(tmp_path: Path) -> None:
    """`resilience validate` refuses the file (it said ok before)."""
    path = tmp_path / "demo.yaml"
    path.write_text(BASE + "      colour: blue\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "detectors.cascading_failure.params.colour" in " ".join(result.output.split())


def test_every_detector_kind_has_a_declaration() -> None:
    """The declaration covers exactly the kinds the loader accepts."""
    assert set(DETECTOR_PARAMS) == set(DETECTOR_KINDS)


def _names_read(source: str) -> set[str]:
    """Literal parameter names passed to param(), int_param(), setting() and _setting()."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in ("param", "int_param", "setting", "_setting"):
            names.update(
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return names


def test_every_param_a_detector_reads_is_declared() -> None:
    """The declaration is the one list: a detector reading an undeclared name would be a
    param the loader refuses (and param() raises KeyError for it)."""
    by_module: dict[str, set[str]] = {}
    for kind, cls in DETECTORS.items():
        by_module.setdefault(cls.__module__, set()).update(DETECTOR_PARAMS[kind])
    for module, declared in by_module.items():
        read = _names_read(inspect.getsource(sys.modules[module]))
        assert read - declared == set(), module
    assert _names_read(inspect.getsource(evidence)) <= set(DETECTOR_PARAMS["data_loss"])
