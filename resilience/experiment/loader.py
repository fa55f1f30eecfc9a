"""Experiment files in, validated ``Experiment`` objects out, or one error that says exactly why.

``load_experiment`` accepts a path or a catalogue name (``db-outage``), applies a profile
and ``--set`` overrides to the raw document, and validates the result as a whole. Every
failure, from a missing file or bad UTF-8 to an unknown key deep in a profile, is an
``ExperimentError`` naming the file, the line, the key path, what was expected and what
was found; several problems are reported together.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from resilience.errors import ErrorDetail, ErrorLocation, ExperimentError
from resilience.experiment._env import hide_secrets, record, resolve_env
from resilience.experiment._overlay import (
    Origins,
    Override,
    Provenance,
    apply_overrides,
    base_origins,
    deep_merge,
    origin_of,
    parse_overrides,
    profile_origins,
)
from resilience.experiment._problems import (
    InputProblems,
    KeyPath,
    Locator,
    Problem,
    describe,
    experiment_error,
    format_path,
)
from resilience.experiment._translate import translate, untranslated
from resilience.experiment._yaml import MAX_BYTES, MAX_NODES, YAMLValue, parse_yaml
from resilience.experiment.advice import input_warnings
from resilience.experiment.catalogue import catalogue_file, catalogue_names, find_catalogue_dir
from resilience.experiment.model import Experiment

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = MAX_BYTES
MAX_VALIDATED = 2 * MAX_NODES
"""``load_all_profiles`` validates the base and every profile: (profiles + 1) x values."""
_TOP_KEYS = ", ".join(info.alias or name for name, info in Experiment.model_fields.items())


def display_name(path: Path) -> str:
    """The path as the user will recognise it: relative to the working directory if inside."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return str(path)
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(resolved)


def resolve_source(source: str | Path, catalogue_dir: Path | None = None) -> Path:
    """The file behind a path or a catalogue name; ``ExperimentError`` if there is none."""
    path = Path(source)
    text = str(source)
    try:
        if path.is_file():
            return path
        if path.exists():
            raise ExperimentError(
                "not a file",
                location=ErrorLocation(file=text),
                expected="an experiment file (YAML)",
                got="a directory" if path.is_dir() else "something else",
            )
    except OSError as exc:
        raise ExperimentError(
            "cannot read the experiment file",
            location=ErrorLocation(file=text),
            expected="a readable file",
            got=exc.strerror or str(exc),
        ) from None
    is_name = isinstance(source, str) and "/" not in text and os.sep not in text and text
    directory = catalogue_dir or find_catalogue_dir()
    available = catalogue_names(directory) if directory else []
    if is_name and directory is not None:
        found = catalogue_file(text, directory)
        if found is not None:
            return found
    listing = f" (catalogue: {', '.join(available)})" if available else ""
    raise ExperimentError(
        "no such experiment file or catalogue entry",
        location=ErrorLocation(file=text),
        expected=f"an existing file or a catalogue name{listing}",
        got=f"nothing at {text!r}",
    )


def read_source(path: Path, file: str) -> str:
    """The file's text; size, encoding and OS errors become ``ExperimentError``."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ExperimentError(
            "cannot read the experiment file",
            location=ErrorLocation(file=file),
            expected="a readable file",
            got=exc.strerror or str(exc),
        ) from None
    return decode_source(raw, file)


def decode_source(raw: bytes, file: str) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise ExperimentError(
            "the file is too large",
            location=ErrorLocation(file=file),
            expected=f"at most {MAX_FILE_BYTES // 1024} KiB",
            got="more",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ExperimentError(
            "the file is not UTF-8 text",
            location=ErrorLocation(file=file, line=line),
            expected="UTF-8 text",
            got=f"byte 0x{raw[exc.start]:02x} at offset {exc.start}",
        ) from None


def load_experiment(
    source: str | Path,
    *,
    profile: str | None = None,
    overrides: Sequence[str] = (),
    catalogue_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> Experiment:
    """Load, resolve (profile, then overrides, then ``${env:NAME}``) and validate one
    experiment.

    ``source`` is a path or a catalogue name (``db-outage`` → ``experiments/db-outage.yaml``);
    ``environ`` (default ``os.environ``) resolves ``${env:NAME}`` references;
    ``allow_hosts`` (the CLI's ``--allow-host``) adds to the file's ``safety.allow_hosts``.
    Raises ``ExperimentError`` for every kind of bad input.
    """
    path = resolve_source(source, catalogue_dir)
    file = display_name(path)
    text = read_source(path, file)
    try:
        experiment = _parse(
            text,
            profile,
            overrides,
            source=path,
            environ=environ,
            allow_hosts=allow_hosts,
            file=file,
        )
    except InputProblems as exc:
        raise experiment_error(
            file, exc.problems, context=exc.context, omitted=exc.omitted
        ) from None
    experiment._source = path
    logger.debug("loaded %s (profile %s): %s", file, profile, experiment.summary())
    return experiment


def load_experiment_bytes(
    raw: bytes,
    *,
    file: str = "<bytes>",
    profile: str | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> Experiment:
    """Like ``load_experiment`` for file contents already in memory."""
    return parse_experiment(
        decode_source(raw, file),
        file=file,
        profile=profile,
        overrides=overrides,
        environ=environ,
        allow_hosts=allow_hosts,
    )


@dataclass
class _Prepared:
    data: dict[str, YAMLValue]
    origins: Origins
    profiles: list[str]
    count: int
    """Values the file used of the budget (``MAX_NODES``) it shares with its overrides."""


def parse_experiment(
    text: str,
    *,
    file: str = "<string>",
    profile: str | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> Experiment:
    """Validate experiment YAML text; ``file`` names it in errors."""
    try:
        return _parse(text, profile, overrides, environ=environ, allow_hosts=allow_hosts, file=file)
    except InputProblems as exc:
        raise experiment_error(
            file, exc.problems, context=exc.context, omitted=exc.omitted
        ) from None


def _context(profile: str | None) -> str | None:
    return f"with profile {profile!r}" if profile is not None else None


def _parse(
    text: str,
    profile: str | None,
    overrides: Sequence[str],
    *,
    source: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
    file: str | None = None,
) -> Experiment:
    prepared = _prepare(text)
    parsed = parse_overrides(overrides, budget=MAX_NODES - prepared.count)
    return _resolve(
        prepared,
        profile,
        parsed,
        source=source,
        environ=environ,
        allow_hosts=allow_hosts,
        file=file,
    )


def _resolve(
    prepared: _Prepared,
    profile: str | None,
    overrides: Sequence[Override],
    *,
    source: Path | None,
    environ: Mapping[str, str] | None,
    tag_profile: bool = False,
    allow_hosts: Sequence[str] = (),
    file: str | None = None,
) -> Experiment:
    """The parsed file with a profile and the overrides applied, validated.

    ``prepared`` and ``overrides`` are read, never changed: one parse serves every profile.
    """
    data: YAMLValue
    data, origins = prepared.data, prepared.origins
    if profile is not None:
        data, origins = _apply_profile(data, origins, prepared, profile)
    data, provenance = apply_overrides(data, origins, overrides)
    tag = profile if tag_profile else None
    written = data  # before ${env:...}: a value from the environment is a secret
    data, env = resolve_env(data, os.environ if environ is None else environ)
    if env.problems:
        problems = [_locate(p, provenance, tag) for p in env.problems]
        raise InputProblems(problems, context=_context(profile))
    try:
        experiment = Experiment.model_validate(data, context={"allow_hosts": tuple(allow_hosts)})
    except ValidationError as exc:
        problems = [
            _locate(hide_secrets(p, env), provenance, tag) for p in translate(exc, Experiment, data)
        ]
        raise InputProblems(
            problems, context=_context(profile), omitted=untranslated(exc)
        ) from None
    if env.references:
        experiment._env = record(
            env.references,
            env.secrets,
            experiment.model_dump(
                mode="json", by_alias=True, exclude_none=True, exclude={"profiles"}
            ),
        )
    experiment._profile = profile
    experiment._locator = Locator(lambda problem: _locate(problem, provenance, tag))
    if source is not None:
        _resolve_locustfile(experiment, source, provenance, tag)
        experiment._source = source
    experiment._warnings = [
        _detail(file, _locate(w, provenance, tag)) for w in input_warnings(experiment, written)
    ]
    return experiment


def _prepare(text: str) -> _Prepared:
    document = parse_yaml(text)
    data = document.data
    if data is None:
        raise InputProblems(
            [
                Problem(
                    "the file is empty",
                    expected=f"a mapping with keys such as {_TOP_KEYS}",
                    got="an empty document",
                    line=1,
                )
            ],
        )
    if not isinstance(data, dict):
        raise InputProblems(
            [
                Problem(
                    "the top level must be a mapping",
                    expected=f"a mapping with keys such as {_TOP_KEYS}",
                    got=describe(data),
                    line=document.lines.get(()),
                )
            ],
        )
    raw_profiles = data.get("profiles")
    profiles = list(raw_profiles) if isinstance(raw_profiles, dict) else []
    origins = base_origins(document.lines)
    return _Prepared(data=data, origins=origins, profiles=profiles, count=document.count)


def _apply_profile(
    data: dict[str, YAMLValue], origins: Origins, prepared: _Prepared, profile: str
) -> tuple[YAMLValue, Origins]:
    raw_profiles = data.get("profiles")
    if not isinstance(raw_profiles, dict) or profile not in raw_profiles:
        available = ", ".join(prepared.profiles) if prepared.profiles else "none defined"
        raise InputProblems(
            [
                Problem(
                    f"unknown profile {profile!r}",
                    expected=f"one of the file's profiles ({available})",
                    got=repr(profile),
                    path=("profiles",),
                    line=_line(origins, ("profiles",)),
                )
            ],
        )
    overlay = raw_profiles[profile]
    if not isinstance(overlay, dict):
        raise InputProblems(
            [
                Problem(
                    f"profile {profile!r} must be a mapping of keys to change",
                    expected="a mapping like {load: {...}, faults: [...]}",
                    got=describe(overlay),
                    path=("profiles", profile),
                    line=_line(origins, ("profiles", profile)),
                )
            ],
        )
    if "profiles" in overlay:
        raise InputProblems(
            [
                Problem(
                    "a profile cannot define profiles",
                    expected="profile keys other than 'profiles'",
                    got="a 'profiles' key",
                    path=("profiles", profile, "profiles"),
                    line=_line(origins, ("profiles", profile, "profiles")),
                )
            ],
        )
    lines = {path: o.line for path, o in origins.items() if o.line is not None}
    return deep_merge(data, overlay, origins, profile_origins(lines, profile))


def _detail(file: str | None, problem: Problem) -> ErrorDetail:
    """A located warning as data, in the shape of an error's problems."""
    origin = f" ({problem.origin})" if problem.origin else ""
    return ErrorDetail(
        file=file,
        line=problem.line,
        path=format_path(problem.path) if problem.path else None,
        message=problem.message + origin,
        expected=problem.expected,
        got=problem.got,
    )


def _line(origins: Origins, path: KeyPath) -> int | None:
    found = origin_of(origins, path)
    return found.line if found else None


def _locate(problem: Problem, provenance: Provenance, tag_profile: str | None) -> Problem:
    found = provenance.origin(problem.path)
    label = found.label if found else None
    if label is None and tag_profile is not None:
        # The base file's value, reported among problems of several profiles.
        label = f"with profile {tag_profile!r}"
    return Problem(
        problem.message,
        problem.expected,
        problem.got,
        problem.path,
        line=found.line if found else None,
        origin=label,
    )


def _resolve_locustfile(
    experiment: Experiment, path: Path, provenance: Provenance, tag_profile: str | None
) -> None:
    """Make the workload's locustfile absolute (relative paths are to the experiment file)."""
    workload = experiment.load.workload
    if workload.locustfile is None:
        return
    candidate = Path(workload.locustfile)
    if not candidate.is_absolute():
        candidate = path.parent / candidate
    try:
        exists = candidate.is_file()
    except (OSError, ValueError):
        exists = False
    if not exists:
        problem = Problem(
            "the locustfile does not exist",
            expected="a Locust file path relative to the experiment file",
            got=f"nothing at {candidate}",
            path=("load", "workload", "locustfile"),
        )
        raise InputProblems([_locate(problem, provenance, tag_profile)])
    workload.locustfile = str(candidate.resolve())


def load_all_profiles(
    source: str | Path,
    *,
    overrides: Sequence[str] = (),
    catalogue_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> dict[str | None, Experiment]:
    """The base experiment (key None) and each of its profiles, every one validated.

    Problems from all of them are reported in one ``ExperimentError`` (each tagged with
    its profile), so a single ``resilience validate`` shows everything wrong.
    """
    path = resolve_source(source, catalogue_dir)
    file = display_name(path)
    text = read_source(path, file)
    try:
        prepared = _prepare(text)
        parsed = parse_overrides(overrides, budget=MAX_NODES - prepared.count)
        base = _resolve(
            prepared,
            None,
            parsed,
            source=path,
            environ=environ,
            allow_hosts=allow_hosts,
            file=file,
        )
        _check_work(prepared, parsed, len(base.profiles))
    except InputProblems as exc:
        raise experiment_error(
            file, exc.problems, context=exc.context, omitted=exc.omitted
        ) from None
    results: dict[str | None, Experiment] = {None: base}
    problems: list[Problem] = []
    omitted = 0
    for name in base.profiles:
        try:
            experiment = _resolve(
                prepared,
                name,
                parsed,
                source=path,
                environ=environ,
                tag_profile=True,
                allow_hosts=allow_hosts,
                file=file,
            )
        except InputProblems as exc:
            problems.extend(exc.problems)
            omitted += exc.omitted
            continue
        results[name] = experiment
    if problems:
        raise experiment_error(file, problems, omitted=omitted)
    return results


def _check_work(prepared: _Prepared, overrides: Sequence[Override], profiles: int) -> None:
    """Refuse to validate every profile of a huge document: each costs a full validation."""
    values = prepared.count + sum(o.count for o in overrides)
    documents = profiles + 1
    if documents * values > MAX_VALIDATED:
        raise InputProblems(
            [
                Problem(
                    "too much to validate in one go",
                    f"at most {MAX_VALIDATED} values over the base and its profiles "
                    "(validate one profile at a time with --profile NAME)",
                    f"{documents} documents of about {values} values",
                    path=("profiles",),
                    line=_line(prepared.origins, ("profiles",)),
                )
            ]
        )
