"""Thousands of malformed experiment files: the loader only ever raises ExperimentError.

Random YAML trees, mutated catalogue experiments (wrong types, bad units, unknown keys,
deleted required keys, random overrides and profiles), mangled YAML text, raw bytes and
random ``--set`` options (YAML values, recursive aliases, alias bombs, deep nesting,
undecodable bytes, odd key paths) are thrown at ``load_experiment``; every failure must be
an ``ExperimentError`` that names the file and says what was expected and what was found.
A smaller run drives the same inputs through ``resilience validate`` and checks it exits 2
(or 0) without a traceback, and the worst inputs the limits allow are timed and weighed in
a subprocess of their own: under 2 s of CPU and 200 MB of memory each.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
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
DESCRIBED_SERVICE = yaml.safe_load(
    """
name: described
target: {url: "http://127.0.0.1:9000"}
proxies: [{name: db, listen: "127.0.0.1:25999", upstream: "127.0.0.1:5432"}]
observe: {scrape: [{job: api, url: "http://127.0.0.1:9001/metrics"}]}
load:
  stages: [{duration: 30s, users: 2, spawn_rate: 2}]
  workload:
    setup: [{path: /tenant, capture: {tenant: id}}]
    on_start:
      - {method: POST, path: /login, form: {user: u, tenant: "{tenant}"}, capture: {token: t}}
    requests:
      - {path: /items, headers: {Authorization: "Bearer {token}"}, depends_on: [db]}
      - method: POST
        path: /orders
        body: "<o n='{seq}'/>"
        content_type: application/xml
        expect: [201]
        write: {read_back: "/orders/{id}", headers: {Authorization: "Bearer {token}"}}
faults: [{at: 10s, duration: 5s, proxy: db, type: hang}]
"""
)
"""Every key that describes a service the toolkit has never seen, mutated like the catalogue."""
CATALOGUE_DOCS = [
    yaml.safe_load(path.read_text()) for path in sorted((REPO / "experiments").glob("*.yaml"))
]
# A valid document with every key of the user's own parts and of safety, to mutate too.
PARTS_DOC: dict[str, Any] = {
    "name": "own-parts",
    "target": {"url": "http://shop.internal:8000"},
    "proxies": [{"name": "db", "listen": "127.0.0.1:26000", "upstream": "db.internal:5432"}],
    "observe": {
        "scrape": [{"job": "shop-api", "url": "http://127.0.0.1:9001/metrics"}],
        "prometheus": {
            "url": "https://prom.internal/prometheus",
            "headers": {"X-Scope-OrgID": "a"},
            "auth": {"basic": {"username": "u", "password": "p"}},
            "tls": {"verify": True, "ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"},
            "proxy": "http://proxy.internal:3128",
            "timeout": "10s",
        },
        "traces": {"url": "http://127.0.0.1:3200", "kind": "tempo", "api": "v2",
                   "auth": {"bearer": "t"}},
    },
    "toxiproxy": {"url": "http://127.0.0.1:8474", "timeout": "3s"},
    "safety": {"allow_hosts": ["shop.internal", "prom.internal", "proxy.internal"]},
    "load": {
        "stages": [{"duration": "30s", "users": 2, "spawn_rate": 2}],
        "workload": {"requests": [{"path": "/items"}]},
    },
    "faults": [{"at": "5s", "duration": "5s", "proxy": "db", "type": "outage"}],
    "profiles": {"smoke": {"load": {"stages": [{"duration": "10s", "users": 1, "spawn_rate": 1}]}}},
}  # fmt: skip
SEED_DOCS = [*CATALOGUE_DOCS, PARTS_DOC, DESCRIBED_SERVICE]
FIELD_NAMES = [
    "name", "description", "tags", "target", "url", "proxies", "listen", "upstream", "shop",
    "mode", "options", "load", "preset", "stages", "duration", "users", "spawn_rate",
    "arrival_rate", "rps", "workers", "client_timeout", "max_in_flight", "workload",
    "requests", "method", "path", "weight", "json", "headers", "expect", "capture", "write",
    "id_field", "read_back", "list", "wait", "min", "max", "locustfile", "user_classes",
    "trace_sample", "slow_threshold", "faults", "at", "proxy", "type", "stream", "toxicity",
    "attributes", "latency", "slo", "baseline", "fault", "recovery", "p95", "error_rate",
    "endpoints", "within", "checks", "promql", "phase", "guards", "for", "grace",
    "detectors", "profiles", "smoke", "form", "body", "content_type", "on_start", "setup",
    "depends_on", "observe", "scrape", "job",
]  # fmt: skip
NASTY_STRINGS = [
    "30 sec", "-5s", "1h1h", "500", "0.1%", "150%", "{int:5:1}", "{oops}", "{", "}", "nan",
    "inf", "-inf", "1e309", "", " ", "~", "null", "yes", "NO", "2024-01-01", "!!binary",
    "< 5", "between 5 and 1", "[bold]x[/]", ":a:", "\x00", "é", "💥", "a" * 300,
    "http://example.com", "127.0.0.1:99999", "postgres", "latency", "GET", "/orders/{id}",
    "Bearer {token}", "application/x-www-form-urlencoded", "a=b&c", "text", "gateway",
    "http://127.0.0.1:9/metrics", "x\r\ny",
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
    document = copy.deepcopy(rng.choice(SEED_DOCS))
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


def test_the_parts_document_is_valid() -> None:
    """The seed with every key of the user's own parts loads as it is (so its mutations
    test the keys, not a broken seed)."""
    experiment = Experiment.model_validate(copy.deepcopy(PARTS_DOC))
    assert experiment.observe is not None and experiment.observe.traces is not None
    assert experiment.toxiproxy is not None and experiment.safety is not None


PART_KEYS = [
    ("observe",), ("observe", "prometheus"), ("observe", "traces"), ("observe", "prometheus", "auth"),
    ("observe", "prometheus", "tls"), ("observe", "traces", "auth"), ("toxiproxy",), ("safety",),
    ("safety", "allow_hosts"), ("observe", "prometheus", "headers"), ("target",),
]  # fmt: skip


@FUZZ
@given(
    where=st.sampled_from(PART_KEYS),
    value=trees,
    key=st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=8)),
    replace=st.booleans(),
)
def test_random_values_in_the_parts_sections(
    workdir: Path, where: tuple[str, ...], value: Any, key: str, replace: bool
) -> None:
    """Random values and keys under observe, toxiproxy, safety and target: an
    ExperimentError naming the file (with expected and got), or a valid experiment."""
    document = copy.deepcopy(PARTS_DOC)
    parent: Any = document
    for part in where[:-1]:
        parent = parent[part]
    if replace or not isinstance(parent.get(where[-1]), dict):
        parent[where[-1]] = value
    else:
        parent[where[-1]][key] = value
    path = workdir / "parts.yaml"
    path.write_text(yaml.dump(document, Dumper=DUMPER, allow_unicode=True), encoding="utf-8")
    _check(path)


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


# ---------------------------------------------------------------------------- --set values


def alias_bomb(levels: int, width: int) -> str:
    """A flow list whose aliases expand to width**levels values."""
    parts = [f"&a0 [{','.join(['x'] * width)}]"]
    parts += [f"&a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "[" + ",".join(parts) + "]"


ALIAS_VALUES = [
    "&a [*a]",
    "&a {x: *a}",
    "[&a {k: [*a]}]",
    "*undefined",
    "[&a x, *a, *b]",
    "{<<: *nope}",
    "{<<: [1, 2]}",
    "&a [&b [*a, *b]]",
]
override_values = st.one_of(
    trees.map(lambda tree: yaml.dump(tree, Dumper=DUMPER, default_flow_style=True).strip()),
    st.sampled_from(NASTY_STRINGS + ALIAS_VALUES),
    st.builds(alias_bomb, st.integers(1, 12), st.integers(2, 12)),
    st.integers(1, 200).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 200).map(lambda depth: "{a: " * depth + "1" + "}" * depth),
    st.text(max_size=30),
    st.binary(max_size=20).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)
override_keys = st.one_of(
    st.sampled_from(
        [
            *OVERRIDE_KEYS, "tags", "description", "slo.baseline.p95", "faults.0.attributes",
            "load.stages.0.duration", "load.client_timeout", "faults.\u00b2.at",
            "faults[\u0661].at", 'slo.fault.endpoints."GET /x".p99', "profiles.smoke.load",
            ".".join(["a"] * 70),
        ]
    ),
    st.text(alphabet="ab.[]0\"'\u0665", min_size=1, max_size=12),
)  # fmt: skip
overrides = st.lists(st.tuples(override_keys, override_values), min_size=1, max_size=4).map(
    lambda pairs: [f"{key}={value}" for key, value in pairs]
)
CATALOGUE_FILES = sorted((REPO / "experiments").glob("*.yaml"))


@settings(FUZZ, max_examples=500)
@given(
    source=st.sampled_from(CATALOGUE_FILES),
    profile=st.sampled_from([None, "smoke"]),
    sets=overrides,
)
def test_random_set_options(source: Path, profile: str | None, sets: list[str]) -> None:
    """Random --set options on catalogue files: an ExperimentError or an experiment, nothing
    else (no RecursionError, UnicodeEncodeError or ValueError from int())."""
    _check(source, profile, sets)


@settings(FUZZ, max_examples=100)
@given(source=st.sampled_from(CATALOGUE_FILES), sets=overrides)
def test_validate_with_random_set_options_never_shows_a_traceback(
    cli: typer.Typer, source: Path, sets: list[str]
) -> None:
    """`resilience validate FILE --set ...` exits 2 (or 0) and prints no traceback."""
    args = ["validate", str(source)]
    for override in sets:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "value",
    ["&a [*a]", "&a {x: *a}", alias_bomb(9, 10), alias_bomb(8, 9), "[" * 100 + "]" * 100],
)
def test_set_recursive_aliases_and_bombs_exit_2(cli: typer.Typer, value: str) -> None:
    """The inputs that crashed or ran away (RecursionError; 38 s and 4.6 GB) now exit 2."""
    result = CliRunner().invoke(
        cli, ["validate", str(CATALOGUE_FILES[0]), "--set", f"tags={value}"]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "invalid input" in result.output


# ---------------------------------------------------------------------------- worst cases

CPU_SECONDS = 2.0
MAX_RSS_MB = 200
# Two --set values of this many items nearly reach the cap on values (MAX_NODES, 50,000
# with the file's own); one argument may not exceed 128 KiB on Linux (MAX_ARG_STRLEN).
HALF = 24_900


def _values(item: str, count: int) -> str:
    return "[" + ",".join([item] * count) + "]"


WORST_CASES: dict[str, tuple[list[str], int]] = {
    "recursive alias": (["--set", "tags=&a [*a]"], 2),
    "a 324-character alias bomb (9**8 values)": (["--set", f"tags={alias_bomb(8, 9)}"], 2),
    "alias bomb at the nesting limit": (["--set", f"tags={alias_bomb(60, 2)}"], 2),
    "the most wrong values the cap allows": (
        ["--set", f"tags={_values('1', HALF)}", "--set", f"proxies={_values('1', HALF)}"],
        2,
    ),
    "the most values the cap allows, valid": (
        [
            "--profile", "smoke",
            "--set", f"tags={_values('a', HALF)}",
            "--set", f"profiles.big.tags={_values('a', HALF)}",
        ],
        0,
    ),
    "every profile of a large document": (["--set", f"tags={_values('a', HALF)}"], 0),
    "every profile of a document at the cap": (
        ["--set", f"tags={_values('a', HALF)}", "--set", f"profiles.big.tags={_values('a', HALF)}"],
        2,
    ),
    "one value over the cap": (
        ["--set", f"tags={_values('a', HALF)}", "--set", f"proxies={_values('a', HALF + 200)}"],
        2,
    ),
}  # fmt: skip


# The child reports its own peak RSS: VmHWM belongs to the program after exec, whereas
# wait4's ru_maxrss also counts the moment after fork, when the child still is a copy of
# this (large) pytest process.
_MEASURED_CLI = """
import sys
report = sys.argv.pop(1)
try:
    from resilience.cli import main
    main()
finally:
    with open("/proc/self/status") as status, open(report, "w") as sink:
        sink.write(next(line for line in status if line.startswith("VmHWM:")))
"""


def _run_measured(args: list[str], workdir: Path) -> tuple[int, str, float, float]:
    """Exit code, output, CPU seconds and peak RSS (MB) of ``resilience ARGS`` in a child."""
    out_path, report = workdir / "out.txt", workdir / "hwm.txt"
    with out_path.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", _MEASURED_CLI, str(report), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    peak_kb = int(report.read_text().split()[1])
    return child.returncode, out_path.read_text(errors="replace"), cpu, peak_kb / 1024


@pytest.mark.parametrize("case", list(WORST_CASES))
def test_worst_inputs_stay_within_two_seconds_and_200_mb(workdir: Path, case: str) -> None:
    """The largest and nastiest --set inputs the limits let through finish in under 2 s of
    CPU and 200 MB of peak memory (the whole `resilience validate` process, start-up
    included), with the expected exit code and no traceback."""
    args, expected = WORST_CASES[case]
    assert all(len(arg.encode()) < 128 * 1024 for arg in args)
    code, output, cpu, rss = _run_measured(
        ["validate", str(REPO / "experiments" / "db-hang.yaml"), *args], workdir
    )
    assert code == expected, output[-2000:]
    assert "Traceback" not in output
    assert cpu < CPU_SECONDS, f"{case}: {cpu:.2f} s of CPU"
    assert rss < MAX_RSS_MB, f"{case}: {rss:.0f} MB peak RSS"
