"""The load plan: everything a worker process needs to generate its share of the load.

A ``LoadPlan`` is the one object that crosses the process boundary: the parent builds it
from the experiment (``plan_from_experiment``), the engine gives each child a copy with its
own ``worker`` index, and the child reads it as one JSON document. It carries the target,
the experiment clock's t0 (a wall-clock epoch timestamp; second ``s`` of the run is
``[t0 + s, t0 + s + 1)``), the shape (closed-model stages or open-model arrival stages),
the workload and the recording settings. Durations are seconds as floats.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from resilience.errors import ExperimentError, LoadError
from resilience.load.pool import default_workers
from resilience.load.template import compile_request_templates

if TYPE_CHECKING:
    from resilience.experiment.model import Experiment, RequestSpec, StepSpec

# A worker needs about a second to import Locust and gevent; t0 leaves room for that so the
# first second of the run is not lost to start-up.
DEFAULT_START_LEAD_S = 2.0
DEFAULT_TRACE_CAP = 50


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stage(_Frozen):
    """Closed model: hold ``users`` users (ramping at ``spawn_rate`` per second) for ``duration``."""

    duration: float = Field(gt=0)
    users: int = Field(ge=0)
    spawn_rate: float = Field(gt=0)


class ArrivalStage(_Frozen):
    """Open model: send ``rps`` requests per second, evenly spaced, for ``duration``."""

    duration: float = Field(gt=0)
    rps: float = Field(ge=0)


class WritePlan(_Frozen):
    """A request that writes: where the written record's id is in the response."""

    id_field: str = "id"
    read_back: str | None = None
    list: str | None = None


class RequestPlan(_Frozen):
    """One weighted request of the workload; path, json and headers may hold placeholders."""

    name: str
    method: str = "GET"
    path: str
    weight: int = Field(default=1, ge=1)
    json_body: Any = None
    form: dict[str, object] | None = None
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    expect: list[int] | None = None
    capture: dict[str, str] = Field(default_factory=dict)
    write: WritePlan | None = None

    def expects(self, status: int) -> bool:
        if self.expect is None:
            return 200 <= status < 400
        return status in self.expect


class LoadPlan(_Frozen):
    """What one worker runs; JSON-able (``to_json`` / ``from_json``)."""

    target: str
    t0: float
    worker: int = Field(default=0, ge=0)
    workers: int = Field(default=1, ge=1)
    stages: list[Stage] = Field(default_factory=list)
    arrival: list[ArrivalStage] = Field(default_factory=list)
    requests: list[RequestPlan] = Field(default_factory=list)
    setup: list[RequestPlan] = Field(default_factory=list)
    """Steps each worker runs once before any request; their captures are shared."""
    on_start: list[RequestPlan] = Field(default_factory=list)
    """Steps each user runs once before its weighted loop (closed model)."""
    wait_min: float = Field(default=0.0, ge=0)
    wait_max: float = Field(default=0.0, ge=0)
    locustfile: str | None = None
    locustfile_text: str | None = None
    """The locustfile's source, for a worker on another machine (a distributed run sends
    it along; the worker writes it to a file of its own)."""
    user_classes: list[str] = Field(default_factory=list)
    client_timeout: float = Field(default=10.0, gt=0)
    max_in_flight: int = Field(default=1000, ge=1)
    trace_sample: float = Field(default=0.01, ge=0, le=1)
    slow_threshold: float = Field(default=1.0, gt=0)
    trace_cap: int = Field(default=DEFAULT_TRACE_CAP, ge=1)
    seed: int | None = None
    phase_marks: bool = False
    """The parent will send phase marks (the run has faults): place each request by its
    [sent, ended] interval, holding a second back until the marks are known past it."""
    secrets: list[str] = Field(default_factory=list, repr=False)
    """Values the worker's log must mask (the experiment's ``${env:NAME}`` values): they
    travel with the plan over stdin, never in argv or the environment."""

    @model_validator(mode="after")
    def _consistent(self) -> LoadPlan:
        if self.worker >= self.workers:
            raise ValueError(f"worker index {self.worker} is not below workers={self.workers}")
        if bool(self.stages) == bool(self.arrival):
            raise ValueError("exactly one of stages (closed model) or arrival (open model)")
        if bool(self.requests) == bool(self.locustfile):
            raise ValueError("exactly one of requests or locustfile")
        if self.locustfile and self.arrival:
            raise ValueError("a locustfile runs its own users: it needs stages, not arrival")
        if self.wait_max < self.wait_min:
            raise ValueError(f"wait_max {self.wait_max} is below wait_min {self.wait_min}")
        if self.on_start and self.arrival:
            raise ValueError("on_start needs users (the closed model); use setup")
        if self.requests:
            templates = compile_request_templates(self.requests)
            from_steps = {n for step in (*self.setup, *self.on_start) for n in step.capture}
            if all(t.needs - from_steps for t in templates):
                raise ValueError(
                    "every request needs a captured variable, so no request can be sent first"
                )
        return self

    @property
    def model(self) -> Literal["closed", "open"]:
        return "open" if self.arrival else "closed"

    @property
    def duration(self) -> float:
        """Seconds from t0 to the end of the last stage."""
        stages: list[Stage] | list[ArrivalStage] = self.arrival or self.stages
        return float(sum(s.duration for s in stages))

    def endpoints(self) -> list[str]:
        """Endpoint names of the workload, in plan order (empty for a locustfile)."""
        return [r.name for r in self.requests]

    def for_worker(self, worker: int, workers: int) -> LoadPlan:
        return self.model_copy(update={"worker": worker, "workers": workers})

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> LoadPlan:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise LoadError(f"invalid load plan: {exc}") from exc


def planned_workers(experiment: Experiment, workers: int | None = None) -> int:
    """How many local workers a run of ``experiment`` starts: ``workers`` (the CLI's), the
    experiment's ``load.workers``, or one per core."""
    return workers or experiment.load.workers or default_workers()


def plan_from_experiment(
    experiment: Experiment,
    target_url: str,
    *,
    t0: float | None = None,
    workers: int | None = None,
    base_dir: Path | None = None,
    seed: int | None = None,
    phase_marks: bool | None = None,
) -> LoadPlan:
    """Build the load plan of an experiment's ``load`` section against ``target_url``.

    ``t0`` defaults to a moment :data:`DEFAULT_START_LEAD_S` from now (the engine's
    ``start(t0=...)`` can set it later); ``workers`` to the experiment's ``load.workers``
    or one per core; a relative locustfile is resolved against ``base_dir`` (default: the
    directory of the experiment file). ``phase_marks``: the parent will send phase marks
    (default: when the experiment has faults; a game day injects by hand, so it says so).
    """
    load = experiment.load
    count = planned_workers(experiment, workers)
    stages: list[Stage] = []
    arrival: list[ArrivalStage] = []
    if load.model == "open":
        arrival = [ArrivalStage(duration=s.duration, rps=s.rps) for s in load.resolve_arrival()]
    else:
        stages = [
            Stage(duration=s.duration, users=s.users, spawn_rate=s.spawn_rate)
            for s in load.resolve_stages()
        ]
    workload = load.workload
    locustfile = None
    if workload.locustfile is not None:
        path = Path(workload.locustfile)
        if not path.is_absolute():
            base = base_dir or (experiment.source.parent if experiment.source else Path.cwd())
            path = base / path
        locustfile = str(path.resolve())
    try:
        return LoadPlan(
            target=target_url.rstrip("/"),
            t0=time.time() + DEFAULT_START_LEAD_S if t0 is None else t0,
            worker=0,
            workers=count,
            stages=stages,
            arrival=arrival,
            requests=[request_plan(r) for r in workload.requests or []],
            setup=[request_plan(s) for s in workload.setup],
            on_start=[request_plan(s) for s in workload.on_start],
            wait_min=float(workload.wait.min),
            wait_max=float(workload.wait.max),
            locustfile=locustfile,
            user_classes=list(workload.user_classes),
            client_timeout=float(load.client_timeout),
            max_in_flight=int(load.max_in_flight),
            trace_sample=float(load.trace_sample),
            slow_threshold=float(load.slow_threshold),
            seed=seed,
            phase_marks=bool(experiment.faults) if phase_marks is None else phase_marks,
            secrets=sorted(experiment.secret_values()),
        )
    except ValidationError as exc:
        raise ExperimentError(f"the load section cannot be run: {exc}") from exc


def request_plan(spec: RequestSpec | StepSpec) -> RequestPlan:
    """The plan of one request or step of the experiment's workload."""
    write = None
    spec_write = getattr(spec, "write", None)  # steps (StepSpec) write nothing
    if spec_write is not None:
        write = WritePlan(
            id_field=spec_write.id_field, read_back=spec_write.read_back, list=spec_write.list
        )
    return RequestPlan(
        name=spec.endpoint,
        method=spec.method,
        path=spec.path,
        weight=getattr(spec, "weight", 1),
        json_body=json.loads(json.dumps(spec.json_body)) if spec.json_body is not None else None,
        form=dict(spec.form) if spec.form is not None else None,
        body=spec.body,
        content_type=spec.content_type,
        headers=dict(spec.headers),
        expect=list(spec.expect) or None,
        capture=dict(spec.capture),
        write=write,
    )
