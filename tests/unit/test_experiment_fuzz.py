"""Thousands of malformed experiment files: the loader only ever raises ExperimentError.

Random YAML trees, mutated catalogue experiments (wrong types, bad units, unknown keys,
deleted required keys, random overrides and profiles), mangled YAML text and raw bytes are
thrown at ``load_experiment``; every failure must be an ``ExperimentError`` that names the
file and says what was expected and what was found. A smaller run drives the same inputs
through ``resilience validate`` and checks it exits 2 (or 0) without a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from resilience.cli import experiments as experiments_cli
from resilience.errors import ExperimentError
from resilience.experiment import Experiment, load_experiment

REPO = Path(__file__).resolve().parents[2]
DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
CATALOGUE_DOCS = [
    yaml.safe_load(path.read_text()) for path in sorted((REPO / "experiments").glob("*.yaml"))
]
FIELD_NAMES = [
    "name", "description", "tags", "target", "url", "proxies", "listen", "upstream", "shop",
    "mode", "options", "load", "preset", "stages", "duration", "users", "spawn_rate",
    "arrival_rate", "rps", "workers", "client_timeout", "max_in_flight", "workload",
    "requests", "method", "path", "weight", "json", "headers", "expect", "capture", "write",
    "id_field", "read_back", "list", "wait", "min", "max", "locustfile", "user_classes",
    "trace_sample", "slow_threshold", "faults", "at", "proxy", "type", "stream", "toxicity",
    "attributes", "latency", "slo", "baseline", "fault", "recovery", "p95", "error_rate",
    "endpoints", "within", "checks", "promql", "phase", "guards", "for", "grace",
    "detectors", "profiles", "smoke",
]  # fmt: skip
NASTY_STRINGS = [
    "30 sec", "-5s", "1h1h", "500", "0.1%", "150%", "{int:5:1}", "{oops}", "{", "}", "nan",
    "inf", "-inf", "1e309", "", " ", "~", "null", "yes", "NO", "2024-01-01", "!!binary",
    "< 5", "between 5 and 1", "[bold]x[/]", ":a:", "\x00", "é", "💥", "a" * 300,
    "http://example.com", "127.0.0.1:99999", "postgres", "latency", "GET", "/orders/{id}",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=12))
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=12,
)
documents = st.one_of(st.dictionaries(keys, trees, max_size=8), trees)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _mutate(document: Any, path: tuple[Any, ...], action: str, value: Any, key: str) -> Any:
    if not path:
        return value if action == "replace" else document
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif action == "add" and isinstance(parent, dict):
        parent[key] = value
    elif action == "typo" and isinstance(parent, dict) and isinstance(last, str) and last:
        parent[last[:-1] + last[-1] * 2] = parent.pop(last)
    return document


GARBAGE_VALUES: list[Any] = [
    *NASTY_STRINGS, None, True, False, 0, -1, 1.5, 10**30, float("nan"), float("inf"),
    [], [1, "a"], {}, {"x": 1}, {"duration": "1s"}, [{"at": "1s"}], "x" * 5,
]  # fmt: skip
OVERRIDE_KEYS = ["load.workers", "faults.0.at", "name", "slo.x", "a..b", "faults[9].type", "load"]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str | None, list[str]]:
    """A catalogue experiment with 1-4 mutations, a profile choice and maybe overrides.

    Mutations are derived from one seeded ``random.Random`` (cheap to generate, still
    reproducible and shrinkable by Hypothesis)."""
    rng = draw(st.randoms(use_true_random=False))
    document = copy.deepcopy(rng.choice(CATALOGUE_DOCS))
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(_paths(document))
        action = rng.choice(["delete", "replace", "rename", "add", "typo"])
        value = copy.deepcopy(rng.choice(GARBAGE_VALUES))
        key = rng.choice([*FIELD_NAMES, "duraton", "x-extra", "", "0"])
        document = _mutate(document, path, action, value, key)
    profile = rng.choice([None, None, "smoke", "missing"])
    overrides = [
        f"{rng.choice(OVERRIDE_KEYS)}={rng.choice(NASTY_STRINGS)}"
        for _ in range(rng.choice([0, 0, 1, 2]))
    ]
    text = yaml.dump(document, Dumper=DUMPER, allow_unicode=rng.random() < 0.5)
    return text, profile, overrides


@st.composite
def mangled_text(draw: st.DrawFn) -> bytes:
    """Valid experiment YAML with random bytes inserted, deleted or replaced."""
    path = draw(st.sampled_from(sorted((REPO / "experiments").glob("*.yaml"))))
    data = bytearray(path.read_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        junk = draw(st.binary(max_size=6) | st.sampled_from([b"\t", b":", b"- ", b"{", b"&a *a"]))
        if draw(st.booleans()):
            data[position:position] = junk
        else:
            data[position : position + len(junk) + 1] = junk
    return bytes(data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check(path: Path, profile: str | None = None, overrides: list[str] | None = None) -> None:
    try:
        result = load_experiment(path, profile=profile, overrides=overrides or [])
    except ExperimentError as error:
        text = str(error)
        assert path.name in text, text
        assert "expected" in text, text
        assert "got" in text, text
    else:
        assert isinstance(result, Experiment)


FUZZ = settings(
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ, max_examples=500)
@given(document=documents)
def test_random_yaml_trees(workdir: Path, document: Any) -> None:
    """Arbitrary YAML data never escapes as anything but ExperimentError."""
    path = workdir / "tree.yaml"
    path.write_text(yaml.dump(document, Dumper=DUMPER, allow_unicode=True), encoding="utf-8")
    _check(path)


@FUZZ
@given(case=mutated())
def test_mutated_catalogue_experiments(
    workdir: Path, case: tuple[str, str | None, list[str]]
) -> None:
    """Catalogue files with wrong types, bad units, unknown and deleted keys: ExperimentError."""
    text, profile, overrides = case
    path = workdir / "mutated.yaml"
    path.write_text(text, encoding="utf-8")
    _check(path, profile, overrides)


@settings(FUZZ, max_examples=500)
@given(data=st.one_of(mangled_text(), st.binary(max_size=200)))
def test_garbage_bytes(workdir: Path, data: bytes) -> None:
    """Mangled YAML text and raw bytes: ExperimentError with file, expected and got."""
    path = workdir / "garbage.yaml"
    path.write_bytes(data)
    _check(path)


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    experiments_cli.register(app)
    return app


@settings(FUZZ, max_examples=100)
@given(case=mutated(), data=st.one_of(st.none(), mangled_text()))
def test_validate_command_never_shows_a_traceback(
    workdir: Path, cli: typer.Typer, case: tuple[str, str | None, list[str]], data: bytes | None
) -> None:
    """`resilience validate` on a malformed file exits 2 (or 0) and prints no traceback."""
    text, profile, overrides = case
    path = workdir / "cli.yaml"
    if data is None:
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(data)
    args = ["validate", str(path)]
    if profile:
        args += ["--profile", profile]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "invalid input" in result.output
