"""The game-day plan (runbook): the load to hold, named faults, halt conditions, ordered steps.

A plan is YAML of the experiment family and is validated the same way (the experiment
package's YAML reader, translation of pydantic errors and located problems): every
mistake is reported with file, line, key path, expected and got. The workload comes from
``load.workload`` or from an experiment (``experiment: db-hang`` — a catalogue name or a
file), whose target, proxies and shop settings are used as well. A session's load has no
fixed end: it is one level (``users``/``spawn_rate`` or ``rps``) held until the session
ends, at most ``max_duration``. Steps are suggestions for the facilitator: each names a
hypothesis, the faults to inject (inline, by a name from ``faults:``, or by a catalogue
experiment whose faults it takes), a suggested duration and what to watch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from resilience.errors import ExperimentError
from resilience.experiment._overlay import base_origins, origin_of
from resilience.experiment._problems import (
    InputProblems,
    KeyPath,
    Problem,
    describe,
    experiment_error,
    raise_if,
)
from resilience.experiment._translate import translate
from resilience.experiment._yaml import parse_yaml
from resilience.experiment.loader import display_name, load_experiment, read_source, resolve_source
from resilience.experiment.model import (
    ArrivalStage,
    Experiment,
    Fault,
    FaultAction,
    Guard,
    Load,
    NonEmpty,
    ProxyDef,
    RecoverySettings,
    ShopSettings,
    Slug,
    Stage,
    Target,
    Workload,
    _Model,
)
from resilience.experiment.units import Duration, Percent, PositiveDuration
from resilience.vocabulary import BUILTIN_PROXIES

_T = TypeVar("_T")

DEFAULT_MAX_DURATION = 4 * 3600.0
MAX_MAX_DURATION = 24 * 3600.0
DEFAULT_EXPERIMENT = "normal"
"""The workload a session runs when neither a plan nor ``--experiment`` names one."""


class Step(_Model):
    """One step of the runbook: what we expect, what we inject, for how long, what to watch."""

    name: NonEmpty
    hypothesis: str = ""
    faults: list[FaultAction | NonEmpty] = Field(default_factory=list, max_length=20)
    duration: PositiveDuration | None = None
    """Suggested: the facilitator heals when they choose; shown as a countdown."""
    watch: list[str] = Field(default_factory=list)
    notes: str = ""


class SessionLoad(_Model):
    """The load a session holds: one level, changed live from the console or the terminal."""

    users: int | None = Field(default=None, ge=0, le=1_000_000)
    spawn_rate: float | None = Field(default=None, gt=0, le=100_000)
    rps: float | None = Field(default=None, ge=0, le=1_000_000)
    workers: int | None = Field(default=None, ge=1, le=1024)
    client_timeout: PositiveDuration | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=1_000_000)
    trace_sample: Percent | None = None
    slow_threshold: PositiveDuration | None = None
    warmup: Duration | None = None
    workload: Workload | None = None

    @model_validator(mode="after")
    def _one_level(self) -> SessionLoad:
        problems: list[Problem] = []
        if self.users is not None and self.rps is not None:
            problems.append(
                Problem(
                    "give users (closed model) or rps (open model), not both",
                    expected="one load level",
                    got="users and rps",
                )
            )
        if self.spawn_rate is not None and self.rps is not None:
            problems.append(
                Problem(
                    "spawn_rate only applies to users",
                    expected="spawn_rate together with users",
                    got="spawn_rate with rps",
                    path=("spawn_rate",),
                )
            )
        raise_if(problems)
        return self


class GamedayPlan(_Model):
    """A game-day plan file (see the module doc and docs/gameday.md)."""

    name: Slug
    description: str = ""
    experiment: NonEmpty | None = None
    target: Target | None = None
    proxies: list[ProxyDef] = Field(default_factory=list)
    shop: ShopSettings | None = None
    max_duration: PositiveDuration = DEFAULT_MAX_DURATION
    load: SessionLoad = Field(default_factory=SessionLoad)
    faults: dict[Slug, FaultAction] = Field(default_factory=dict)
    halt: list[Guard] = Field(default_factory=list, max_length=50)
    steps: list[Step] = Field(default_factory=list, max_length=200)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)

    @model_validator(mode="after")
    def _cross(self) -> GamedayPlan:
        problems: list[Problem] = []
        if self.max_duration > MAX_MAX_DURATION:
            problems.append(
                Problem(
                    "a session is bounded",
                    expected="max_duration of at most 24h",
                    got=describe(self.max_duration) + " seconds",
                    path=("max_duration",),
                )
            )
        known = self.proxy_names()
        for name, fault in self.faults.items():
            if fault.proxy not in known:
                problems.append(_unknown_proxy(fault.proxy, known, ("faults", name, "proxy")))
        for i, step in enumerate(self.steps):
            for j, ref in enumerate(step.faults):
                if isinstance(ref, FaultAction) and ref.proxy not in known:
                    path: KeyPath = ("steps", i, "faults", j, "proxy")
                    problems.append(_unknown_proxy(ref.proxy, known, path))
        names: dict[str, int] = {}
        for i, guard in enumerate(self.halt):
            if guard.name in names:
                problems.append(
                    Problem(
                        f"two halt conditions named {guard.name!r}",
                        expected="unique names (set 'name' on one of them)",
                        got=f"the same name as halt[{names[guard.name]}]",
                        path=("halt", i),
                    )
                )
            names.setdefault(guard.name, i)
        raise_if(problems)
        return self

    def proxy_names(self) -> list[str]:
        """Proxies faults may name: declared ones, plus the stack's for the built-in shop.

        With ``experiment:`` the experiment's declared proxies count too; they are checked
        when the plan is resolved (the experiment is loaded then)."""
        declared = [p.name for p in self.proxies]
        if self.target is None:
            return declared + [n for n in BUILTIN_PROXIES if n not in declared]
        return declared


def _unknown_proxy(proxy: str, known: list[str], path: KeyPath) -> Problem:
    return Problem(
        f"fault names an unknown proxy {proxy!r}",
        expected=f"one of the proxies: {', '.join(known) or '(none declared)'}",
        got=repr(proxy),
        path=path,
    )


def plan_schema() -> dict[str, object]:
    """JSON Schema of a game-day plan file, for editors."""
    schema = GamedayPlan.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "resilience game-day plan"
    return schema


# ----------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class PlanStep:
    """A step with its fault references resolved to concrete actions."""

    index: int
    name: str
    hypothesis: str
    faults: tuple[FaultAction, ...]
    duration: float | None
    watch: tuple[str, ...]
    notes: str = ""


@dataclass(frozen=True)
class ResolvedPlan:
    """What a session runs: the plan, an experiment for the target and load, resolved steps
    and the named faults the console offers (the plan's, then the catalogue's)."""

    plan: GamedayPlan
    experiment: Experiment
    steps: tuple[PlanStep, ...]
    named_faults: dict[str, tuple[FaultAction, ...]] = field(default_factory=dict)
    source: Path | None = None

    @property
    def model(self) -> Literal["closed", "open"]:
        return self.experiment.load.model

    @property
    def max_duration(self) -> float:
        return self.plan.max_duration

    def level(self) -> dict[str, float]:
        """The load level the session starts at: users and spawn_rate, or rps."""
        load = self.experiment.load
        if load.model == "open":
            return {"rps": load.resolve_arrival()[0].rps}
        stage = load.resolve_stages()[0]
        return {"users": stage.users, "spawn_rate": stage.spawn_rate}


def catalogue_faults() -> dict[str, tuple[FaultAction, ...]]:
    """Each catalogue experiment that has faults, as a named fault (its faults, no ``at``)."""
    from resilience.experiment.catalogue import catalogue_names, find_catalogue_dir

    directory = find_catalogue_dir()
    named: dict[str, tuple[FaultAction, ...]] = {}
    for name in catalogue_names(directory) if directory else []:
        try:
            experiment = load_experiment(name)
        except ExperimentError:
            continue  # the catalogue's own tests hold its files; skip, never fail a session
        if experiment.faults and experiment.target is None:
            named[name] = tuple(_action(f) for f in experiment.faults)
    return named


def _action(fault: Fault) -> FaultAction:
    return FaultAction.model_construct(
        proxy=fault.proxy,
        type=fault.type,
        stream=fault.stream,
        toxicity=fault.toxicity,
        attributes=dict(fault.attributes),
        duration=fault.duration,
    )


def parse_plan(text: str, *, file: str = "<string>") -> GamedayPlan:
    """Validate plan YAML; ExperimentError (exit 2) naming file, line and key path."""
    plan, _lines = _parse(text, file)
    return plan


def _parse(text: str, file: str) -> tuple[GamedayPlan, dict[KeyPath, int]]:
    try:
        document = parse_yaml(text)
    except InputProblems as exc:
        raise experiment_error(file, exc.problems) from None
    data = document.data
    if not isinstance(data, dict):
        raise experiment_error(
            file,
            [
                Problem(
                    "a game-day plan is a mapping",
                    expected="a mapping with keys such as name, load, halt, steps",
                    got=describe(data) if data is not None else "an empty document",
                    line=document.lines.get(()),
                )
            ],
        )
    origins = base_origins(document.lines)
    try:
        plan = GamedayPlan.model_validate(data)
    except ValidationError as exc:
        problems = []
        for p in translate(exc, GamedayPlan, data):
            found = origin_of(origins, p.path)
            problems.append(
                Problem(p.message, p.expected, p.got, p.path, line=found.line if found else None)
            )
        raise experiment_error(file, problems) from None
    return plan, document.lines


def load_plan(source: str | Path) -> ResolvedPlan:
    """Read, validate and resolve a plan file (ExperimentError, exit 2, for any problem)."""
    path = Path(source)
    if not path.is_file():
        raise ExperimentError(
            "no such game-day plan",
            expected="a YAML plan file (see docs/gameday.md)",
            got=f"nothing at {source}" if not path.exists() else "not a file",
        )
    file = display_name(path)
    plan, lines = _parse(read_source(path, file), file)
    return resolve_plan(plan, file=file, lines=lines, base_dir=path.parent, source=path)


def plan_for_experiment(experiment: str) -> ResolvedPlan:
    """A plan with no steps that runs a catalogue experiment's (or file's) workload."""
    path = resolve_source(experiment)
    name = path.stem.lower().replace(".", "-")
    plan = GamedayPlan.model_validate({"name": f"{name}-gameday"[:64], "experiment": experiment})
    return resolve_plan(plan, file=f"--experiment {experiment}", lines={})


def resolve_plan(  # noqa: PLR0912 (one branch per plan key)
    plan: GamedayPlan,
    *,
    file: str = "<plan>",
    lines: dict[KeyPath, int] | None = None,
    base_dir: Path | None = None,
    source: Path | None = None,
) -> ResolvedPlan:
    """The session's experiment (target, proxies, one long stage) and the steps' faults."""
    lines = lines or {}
    problems: list[Problem] = []

    def problem(message: str, expected: str, got: str, path: KeyPath) -> None:
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
        problems.append(Problem(message, expected, got, path, line=line))

    base: Experiment | None = None
    if plan.experiment is not None:
        reference = plan.experiment
        if base_dir is not None and ("/" in reference or reference.endswith((".yaml", ".yml"))):
            candidate = base_dir / reference
            reference = str(candidate) if candidate.is_file() else reference
        base = load_experiment(reference)
    elif plan.load.workload is None:
        base = load_experiment(DEFAULT_EXPERIMENT)
    experiment = _session_experiment(plan, base)
    known = experiment.proxy_names()
    named = dict(catalogue_faults())
    named.update({name: (fault,) for name, fault in plan.faults.items()})
    steps: list[PlanStep] = []
    for i, step in enumerate(plan.steps):
        actions: list[FaultAction] = []
        for j, ref in enumerate(step.faults):
            if isinstance(ref, FaultAction):
                actions.append(ref)
                continue
            if ref not in named:
                choices = ", ".join(sorted(named)) or "none"
                problem(
                    f"step names an unknown fault {ref!r}",
                    f"a name under faults: or a catalogue experiment with faults ({choices})",
                    repr(ref),
                    ("steps", i, "faults", j),
                )
                continue
            for action in named[ref]:
                if action.proxy not in known:
                    problem(
                        f"fault {ref!r} names a proxy this target does not have",
                        f"one of the proxies: {', '.join(known)}",
                        repr(action.proxy),
                        ("steps", i, "faults", j),
                    )
            actions.extend(named[ref])
        steps.append(
            PlanStep(
                index=i,
                name=step.name,
                hypothesis=step.hypothesis,
                faults=tuple(actions),
                duration=step.duration,
                watch=tuple(step.watch),
                notes=step.notes,
            )
        )
    endpoints = experiment.endpoints()
    if experiment.load.workload.requests is not None:
        for i, guard in enumerate(plan.halt):
            if guard.endpoint is not None and guard.endpoint not in endpoints:
                problem(
                    "halt condition names an unknown endpoint",
                    f"one of the request names: {', '.join(endpoints)}",
                    repr(guard.endpoint),
                    ("halt", i, "endpoint"),
                )
    if problems:
        raise experiment_error(file, problems)
    usable = {k: v for k, v in named.items() if all(a.proxy in known for a in v)}
    return ResolvedPlan(plan, experiment, tuple(steps), usable, source)


def _session_experiment(plan: GamedayPlan, base: Experiment | None) -> Experiment:
    """An experiment whose load is the plan's level held for ``max_duration``, no faults."""
    level = plan.load
    if base is not None:
        load = base.load
        workload = level.workload or load.workload
        target = plan.target or base.target
        proxies = plan.proxies or base.proxies
        shop = plan.shop or base.shop
        if load.model == "open" and level.users is None:
            rps = level.rps if level.rps is not None else load.resolve_arrival()[0].rps
            users = None
        elif level.rps is not None:
            rps, users = level.rps, None
        else:
            first = load.resolve_stages()[0] if load.model == "closed" else None
            users = level.users if level.users is not None else (first.users if first else 10)
            rps = None
        spawn = level.spawn_rate or (
            load.resolve_stages()[0].spawn_rate if load.model == "closed" else 10.0
        )
    else:
        assert level.workload is not None
        load = None
        workload = level.workload
        target, proxies, shop = plan.target, plan.proxies, plan.shop
        rps = level.rps
        users = None if rps is not None else (level.users if level.users is not None else 10)
        spawn = level.spawn_rate or 10.0

    def pick(name: str, default: _T) -> _T:
        value: _T = getattr(level, name)
        if value is not None:
            return value
        found: _T = getattr(load, name) if load is not None else default
        return found

    duration = plan.max_duration
    session_load = Load.model_construct(
        preset=None,
        stages=None
        if rps is not None
        else [Stage(duration=duration, users=users or 0, spawn_rate=spawn)],
        arrival_rate=[ArrivalStage(duration=duration, rps=rps)] if rps is not None else None,
        workers=pick("workers", None),
        client_timeout=pick("client_timeout", 10.0),
        max_in_flight=pick("max_in_flight", 1000),
        workload=workload,
        trace_sample=pick("trace_sample", 0.01),
        slow_threshold=pick("slow_threshold", 1.0),
        warmup=pick("warmup", 2.0),
    )
    return Experiment.model_construct(
        name=plan.name,
        description=plan.description,
        tags=["gameday"],
        target=target,
        proxies=list(proxies),
        shop=shop,
        load=session_load,
        faults=[],
        slo=(
            base.slo
            if base is not None
            else Experiment.model_fields["slo"].get_default(call_default_factory=True)
        ),
        checks=[],
        guards=[],
        detectors={},
        recovery=plan.recovery,
        profiles={},
    )
