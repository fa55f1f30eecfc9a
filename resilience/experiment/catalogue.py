"""The catalogue of ready-made experiments (db-outage, db-hang, ..., normal, stress, ...).

The files live in the repository's ``experiments/`` directory; the package reaches them
through ``resilience/experiment/catalogue`` (a link to that directory in a checkout, a
copy in an installed package) and ``RESILIENCE_CATALOGUE`` can point anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from resilience.errors import ExperimentError

ENV_VAR = "RESILIENCE_CATALOGUE"
SMOKE_PROFILE = "smoke"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    found: list[Path] = []
    if os.environ.get(ENV_VAR):
        found.append(Path(os.environ[ENV_VAR]))
    found.append(here / "catalogue")
    found.append(here.parent.parent / "experiments")
    return found


def find_catalogue_dir() -> Path | None:
    """The first catalogue directory that exists (env var, package, checkout)."""
    for candidate in _candidates():
        if candidate.is_dir():
            return candidate
    return None


def catalogue_file(name: str, directory: Path) -> Path | None:
    """The file of catalogue entry ``name`` (``db-outage``, ``db-outage.yaml``) in
    ``directory``, or None."""
    stem = name.removesuffix(".yaml").removesuffix(".yml")
    for suffix in (".yaml", ".yml"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def catalogue_names(directory: Path | None = None) -> list[str]:
    """Names of the catalogue's experiments (file stems), sorted."""
    directory = directory or find_catalogue_dir()
    if directory is None or not directory.is_dir():
        return []
    files = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    return sorted({f.stem for f in files if f.is_file()})


@dataclass(frozen=True)
class CatalogueEntry:
    """One catalogue experiment as ``resilience list`` shows it."""

    name: str
    path: Path
    description: str = ""
    duration: float | None = None
    smoke_duration: float | None = None
    faults: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    error: str | None = None


def first_sentence(text: str) -> str:
    """The description's first line or sentence, for one-line listings."""
    line = " ".join(text.split())
    for end in (". ", "; "):
        if end in line:
            return line.split(end, 1)[0] + "."
    return line


def catalogue_entries(directory: Path | None = None) -> list[CatalogueEntry]:
    """Every catalogue experiment, loaded and validated (invalid ones carry ``error``)."""
    from resilience.experiment.loader import load_all_profiles

    directory = directory or find_catalogue_dir()
    if directory is None:
        return []
    entries: list[CatalogueEntry] = []
    for name in catalogue_names(directory):
        path = directory / f"{name}.yaml"
        if not path.is_file():
            path = directory / f"{name}.yml"
        try:
            loaded = load_all_profiles(path)
        except ExperimentError as exc:
            entries.append(CatalogueEntry(name=name, path=path, error=str(exc)))
            continue
        base = loaded[None]
        smoke = loaded.get(SMOKE_PROFILE)
        entries.append(
            CatalogueEntry(
                name=base.name,
                path=path,
                description=first_sentence(base.description),
                duration=base.total_duration,
                smoke_duration=smoke.total_duration if smoke else None,
                faults=tuple(f"{f.type}@{f.proxy}" for f in base.faults),
                profiles=tuple(base.profiles),
            )
        )
    return entries
