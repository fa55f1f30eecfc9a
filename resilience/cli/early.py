"""How many load workers `resilience run ARGS` will start, guessed before the app loads.

The console script starts a local run's load workers first thing (``load/pool.py``): each
spends about half a second importing Locust, and the app (typer, rich, every command)
takes about as long to import in this process, so the two overlap only if the workers
start before it. The count comes from the command line and a plain YAML read of the
experiment file, with no model: ``--workers``, else a ``--set load.workers=N``, else the
profile's ``load.workers``, else the file's, else one per core. A guess only: the run
loads the experiment properly and starts what is still missing, and any worker it does
not adopt is stopped. None for a dry run, a distributed run, ``--help`` or a command line
this cannot read. Standard library and PyYAML only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ALIASES = {"-p": "--profile", "-o": "--out"}
VALUE_OPTIONS = frozenset(
    {
        "--profile", "-p", "--out", "-o", "--shop-mode", "--target", "--prometheus",
        "--traces", "--toxiproxy", "--allow-host", "--set", "--workers", "--expect-workers",
        "--master-bind", "--junit",
    }
)  # fmt: skip
"""The `run` options that take a value (a unit test keeps this in step with the app)."""
NO_EARLY = frozenset({"--dry-run", "--expect-workers", "--master-bind", "--help"})
"""Any of these: no worker starts early (nothing runs, or the load runs elsewhere)."""


def early_workers(args: Sequence[str], *, cores: int | None = None) -> int:
    """The local workers ``resilience ARGS`` (a `run` command line) will need; 0 for none."""
    try:
        options, positional = _split(args)
    except ValueError:
        return 0
    if NO_EARLY & options.keys() or len(positional) < 2 or positional[0] != "run":
        return 0
    overridden = [
        value
        for key, _, value in (o.partition("=") for o in options.get("--set", []))
        if key.strip() == "load.workers"
    ]
    written = options.get("--workers") or overridden
    if written:
        return _count(written[-1])
    named = options.get("--profile") or []
    document = _read(positional[1])
    if document is None:
        return 0  # not found or not readable: the run will say why, with nothing started
    found = _from_file(document, named[-1] if named else None)
    if found is not None:
        return min(found, 2 * _cores(cores))  # the rest once the file is known to be valid
    return _cores(cores)


def _cores(given: int | None) -> int:
    if given is not None:
        return given
    from resilience.load.pool import default_workers

    return default_workers()


def _from_file(document: object, profile: str | None) -> int | None:
    """``load.workers`` of the profile, else of the file (0: a distributed run); None when
    neither says."""
    base = _mapping(_mapping(document).get("load"))
    chosen: dict[Any, Any] = {}
    if profile is not None:
        profiles = _mapping(_mapping(document).get("profiles"))
        chosen = _mapping(_mapping(profiles.get(profile)).get("load"))
    if chosen.get("distributed") is not None or (
        base.get("distributed") is not None and "distributed" not in chosen
    ):
        return 0
    for load in (chosen, base):
        if "workers" in load:
            return _count(load["workers"])
    return None


def _split(args: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Options (name → values, flags with none) and positional arguments."""
    options: dict[str, list[str]] = {}
    positional: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == "--":
            positional.extend(items)
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in VALUE_OPTIONS:
            name = ALIASES.get(name, name)
            if not eq:
                value = next(items, None)  # type: ignore[assignment]
                if value is None:
                    raise ValueError(f"{name} without a value")
            options.setdefault(name, []).append(value)
        else:
            options.setdefault(name, [])
    return options, positional


def _count(value: object) -> int:
    """A worker count as written (1 to 1024), else 0: the run will say what is wrong."""
    try:
        count = int(str(value).strip())
    except ValueError:
        return 0
    return count if 1 <= count <= 1024 else 0


def _read(source: str) -> Any:
    """The experiment file's YAML, or None when it cannot be found or read."""
    import yaml

    from resilience.experiment.catalogue import catalogue_file, find_catalogue_dir

    try:
        path = Path(source)
        if not path.is_file() and "/" not in source and os.sep not in source:
            directory = find_catalogue_dir()
            found = catalogue_file(source, directory) if directory is not None else None
            path = found or path
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > 1_000_000:
                return None
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            return yaml.load(handle, Loader=loader)
    except (OSError, yaml.YAMLError, ValueError, RecursionError) as exc:
        logger.debug("no early look at %s: %s", source, exc)
        return None


def _mapping(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}
