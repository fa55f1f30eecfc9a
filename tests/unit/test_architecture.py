"""The package graph of docs/architecture.md, held by a test: an import between packages
that the drawing does not allow fails here, with the module that made it."""

from __future__ import annotations

import ast
from pathlib import Path

import resilience

ROOT = Path(resilience.__file__).parent

ALLOWED: dict[str, set[str]] = {
    # The bottom: imported by everyone, importing nothing of the toolkit.
    "errors": set(),
    "vocabulary": set(),
    "histogram": set(),
    "redact": {"errors"},
    "tls": set(),
    # Inputs and infrastructure.
    "experiment": {"errors", "vocabulary"},
    "stack": {"errors", "vocabulary", "shop", "tls"},
    "shop": {"errors", "vocabulary"},
    "faults": {"errors", "vocabulary", "tls"},
    "observe": {"errors", "vocabulary", "experiment", "tls"},
    # The run directory, and the two sides that write and read it.
    "rundir": {"errors", "vocabulary", "histogram", "redact", "observe"},
    "load": {"errors", "vocabulary", "histogram", "redact", "experiment", "rundir"},
    "analysis": {"errors", "vocabulary", "histogram", "experiment", "observe", "rundir"},
    "report": {
        "errors", "vocabulary", "histogram", "redact", "experiment", "observe", "rundir",
        "analysis",
    },
    # One run, and the live game day, put the rooms together.
    "runner": {
        "errors", "vocabulary", "histogram", "redact", "experiment", "stack", "faults",
        "observe", "rundir", "load", "analysis", "report", "tls",
    },
    "gameday": {
        "errors", "vocabulary", "histogram", "redact", "experiment", "stack", "faults",
        "observe", "rundir", "load", "analysis", "report", "runner",
    },
    # The terminal, and the fixtures for tests (which may use anything).
    "cli": {
        "errors", "vocabulary", "histogram", "redact", "experiment", "stack", "faults",
        "observe", "rundir", "load", "analysis", "report", "runner", "gameday",
    },
    "testing": {
        "errors", "vocabulary", "histogram", "redact", "experiment", "stack", "faults",
        "observe", "rundir", "load", "analysis", "report", "runner", "shop",
    },
    "__init__": {"errors", "experiment", "runner", "analysis"},
    "__main__": {"cli"},
}  # fmt: skip


def _package(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "resilience":
                found.extend((node.lineno, f"resilience.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("resilience.")]


def _edges() -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for path in sorted(ROOT.rglob("*.py")):
        source = _package(path)
        for line, name in _imports(path):
            target = name.split(".")[1]
            if target != source:
                edges.append((source, target, f"{path.relative_to(ROOT.parent)}:{line} {name}"))
    return edges


def test_every_package_is_in_the_drawing() -> None:
    """A new package (or top-level module) must be placed in the graph before it is used."""
    packages = {_package(p) for p in ROOT.rglob("*.py")}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_imports_follow_the_documented_graph() -> None:
    """Every import between packages is an edge docs/architecture.md draws."""
    outside = [where for source, target, where in _edges() if target not in ALLOWED[source]]
    assert outside == [], "\n".join(outside)


def test_the_product_never_imports_the_test_fixtures() -> None:
    """resilience/testing is for tests and previews; no shipped module imports it."""
    users = [where for source, target, where in _edges() if target == "testing"]
    assert [u for u in users if not u.startswith("resilience/testing")] == []


def test_locust_and_gevent_stay_in_the_worker_modules() -> None:
    """Only the worker process's modules import Locust or gevent (they patch the process)."""
    offenders: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("locust", "gevent", "geventhttpclient") for n in names):
                offenders.append(str(path.relative_to(ROOT.parent)))
    assert sorted(set(offenders)) == [
        "resilience/load/master.py",
        "resilience/load/remote.py",
        "resilience/load/runtime.py",
        "resilience/load/worker.py",
    ]
