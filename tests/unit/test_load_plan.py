"""The load plan: validation, JSON round trip, and building it from an experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.errors import LoadError
from resilience.experiment import load_experiment, parse_experiment
from resilience.load.plan import (
    ArrivalStage,
    LoadPlan,
    RequestPlan,
    Stage,
    plan_from_experiment,
)

GET = RequestPlan(name="GET /", path="/")


def closed(**changes: object) -> LoadPlan:
    fields: dict[str, object] = {
        "target": "http://127.0.0.1:8500",
        "t0": 100.0,
        "stages": [Stage(duration=10, users=4, spawn_rate=2)],
        "requests": [GET],
    }
    fields.update(changes)
    return LoadPlan(**fields)  # type: ignore[arg-type]


def test_plan_round_trips_through_json() -> None:
    """What the parent sends is exactly what the worker reads."""
    plan = closed(
        requests=[
            RequestPlan(
                name="POST /o",
                method="POST",
                path="/o",
                json_body={"n": "{int:1:2}"},
                expect=[201],
                capture={"oid": "id"},
                write={"id_field": "id", "read_back": "/o/{id}"},
            ),
            GET,
        ]
    )
    again = LoadPlan.from_json(plan.to_json())
    assert again == plan
    assert again.requests[0].write is not None and again.requests[0].write.id_field == "id"


def test_duration_model_and_worker_copies() -> None:
    """Duration sums the stages; for_worker gives each child its index."""
    plan = closed(
        stages=[Stage(duration=10, users=4, spawn_rate=2), Stage(duration=5, users=1, spawn_rate=1)]
    )
    assert plan.duration == 15.0 and plan.model == "closed"
    copy = plan.for_worker(1, 3)
    assert (copy.worker, copy.workers) == (1, 3)
    open_plan = closed(stages=[], arrival=[ArrivalStage(duration=3, rps=10)])
    assert open_plan.model == "open" and open_plan.duration == 3.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"worker": 2, "workers": 2}, "worker index"),
        ({"arrival": [ArrivalStage(duration=1, rps=1)]}, "exactly one of stages"),
        ({"requests": []}, "exactly one of requests or locustfile"),
        ({"wait_min": 2.0, "wait_max": 1.0}, "wait_max"),
        ({"requests": [RequestPlan(name="GET /{x}", path="/{x}")]}, "captured variable"),
        ({"requests": [RequestPlan(name="bad", path="/{int:9:1}")]}, "int"),
    ],
)
def test_inconsistent_plans_are_rejected(changes: dict[str, object], message: str) -> None:
    """A plan that cannot run is refused when it is built, naming the problem."""
    with pytest.raises(ValueError, match=message):
        closed(**changes)


def test_invalid_json_is_a_load_error() -> None:
    """A worker given a bad plan fails with LoadError, not a pydantic traceback."""
    with pytest.raises(LoadError):
        LoadPlan.from_json('{"target": 1}')


def test_expected_statuses() -> None:
    """Without expect any 2xx/3xx is fine; with expect only those statuses are."""
    assert GET.expects(204) and GET.expects(302) and not GET.expects(404)
    strict = RequestPlan(name="x", path="/", expect=[201, 404])
    assert strict.expects(404) and not strict.expects(200)


def test_plan_from_a_catalogue_experiment() -> None:
    """The catalogue's db-hang smoke profile becomes an open-model plan with its workload."""
    experiment = load_experiment("db-hang", profile="smoke")
    plan = plan_from_experiment(experiment, "http://127.0.0.1:8000/", t0=5.0, workers=3)
    assert plan.target == "http://127.0.0.1:8000"
    assert (plan.t0, plan.workers, plan.worker) == (5.0, 3, 0)
    assert plan.duration == experiment.load.duration
    assert plan.endpoints() == experiment.load.workload.endpoints()
    assert plan.client_timeout == experiment.load.client_timeout
    orders = next(r for r in plan.requests if r.method == "POST")
    assert orders.expect == [201] and orders.capture and orders.write is not None


def test_plan_from_an_open_model_experiment_with_a_locustfile(tmp_path: Path) -> None:
    """Arrival stages carry over; a relative locustfile resolves next to the experiment file."""
    (tmp_path / "users.py").write_text("")
    source = tmp_path / "exp.yaml"
    source.write_text(
        "name: open-one\n"
        "target: {url: 'http://127.0.0.1:8501'}\n"
        "load:\n"
        "  stages: [{duration: 5s, users: 2, spawn_rate: 2}]\n"
        "  workload: {locustfile: users.py, user_classes: [Shopper]}\n"
    )
    experiment = load_experiment(source)
    plan = plan_from_experiment(experiment, "http://127.0.0.1:8501", t0=1.0, workers=1)
    assert plan.locustfile == str((tmp_path / "users.py").resolve())
    assert plan.user_classes == ["Shopper"]

    text = (
        "name: open-two\n"
        "target: {url: 'http://127.0.0.1:8501'}\n"
        "load:\n"
        "  arrival_rate: [{duration: 4s, rps: 20}, {duration: 2s, rps: 0}]\n"
        "  max_in_flight: 7\n"
        "  workload: {requests: [{path: /}]}\n"
    )
    open_plan = plan_from_experiment(parse_experiment(text), "http://127.0.0.1:8501", workers=2)
    assert open_plan.model == "open" and open_plan.duration == 6.0
    assert open_plan.max_in_flight == 7
    assert [r.name for r in open_plan.requests] == ["GET /"]


def test_the_plan_brings_the_workers_the_values_their_logs_mask() -> None:
    """The experiment's ${env:NAME} values travel in the plan (stdin); its repr omits them."""
    experiment = parse_experiment(
        "name: s\n"
        "load:\n"
        "  stages: [{duration: 5s, users: 1, spawn_rate: 1}]\n"
        "  workload:\n"
        "    requests:\n"
        "      - path: /x\n"
        '        headers: {Authorization: "Bearer ${env:TOKEN}"}\n',
        environ={"TOKEN": "b3arer-value"},
    )
    plan = plan_from_experiment(experiment, "http://127.0.0.1:8500", workers=1)
    assert plan.secrets == ["b3arer-value"]
    assert LoadPlan.from_json(plan.for_worker(0, 1).to_json()).secrets == ["b3arer-value"]
    assert "secrets=" not in repr(plan)
