"""``target.ready``: a run waits (bounded) until the user's service says it is ready, and a
service never ready is "could not run" (exit 3), never the service's resilience failure
(runner/target.py, ``wait_until_ready``; the model's ``Readiness``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resilience.errors import EXIT_INVALID, EXIT_UNAVAILABLE, DependencyUnavailable, ExperimentError
from resilience.experiment.loader import parse_experiment
from resilience.experiment.model import Readiness
from resilience.runner.target import wait_until_ready
from resilience.testing.loopback import LoopbackServer, QuietHandler
from resilience.vocabulary import FakeClock

EXPERIMENT = """
name: ready
target:
  url: http://127.0.0.1:9/api
  {ready}
load:
  stages: [{{duration: 10s, users: 1, spawn_rate: 1}}]
  workload:
    requests:
      - {{name: GET /x, path: /x}}
"""


class Service:
    """A loopback service whose ``/health`` answers ``busy_status`` for its first ``busy``
    calls, then ``status``; every path it was asked for is kept."""

    def __init__(self, busy: int, busy_status: int = 503, status: int = 200) -> None:
        self.calls: list[str] = []
        self.auth: list[str | None] = []
        service = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                service.calls.append(self.path)
                service.auth.append(self.headers.get("Authorization"))
                code = busy_status if len(service.calls) <= busy else status
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LoopbackServer(Handler)
        self.port = self.server.port

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def service() -> Iterator[type[Service]]:
    made: list[Service] = []

    class Made(Service):
        def __init__(self, *args: int) -> None:
            super().__init__(*args)
            made.append(self)

    yield Made
    for one in made:
        one.close()


def test_the_file_says_what_ready_means() -> None:
    """``target.ready`` parses with its defaults (any 2xx, at most 30 s)."""
    experiment = parse_experiment(EXPERIMENT.format(ready="ready: {path: /health}"))
    assert experiment.target is not None
    ready = experiment.target.ready
    assert ready == Readiness(path="/health", expect=[], within=30.0)
    assert ready.accepts(204) and not ready.accepts(503) and not ready.accepts(301)
    custom = Readiness(path="/ready", expect=[204], within=5.0)
    assert custom.accepts(204) and not custom.accepts(200)


@pytest.mark.parametrize(
    ("ready", "where", "expected"),
    [
        ("ready: {path: health}", "target.ready.path", "starting with /"),
        ("ready: {path: /health, within: 0.5s}", "target.ready.within", "1"),
        ("ready: {path: /health, expect: [700]}", "target.ready.expect", "599"),
        ("ready: {path: /health, then: 1}", "target.ready.then", ""),
    ],
)
def test_a_bad_readiness_is_exit_2_naming_the_key(ready: str, where: str, expected: str) -> None:
    with pytest.raises(ExperimentError) as caught:
        parse_experiment(EXPERIMENT.format(ready=ready), file="ready.yaml")
    text = str(caught.value)
    assert caught.value.exit_code == EXIT_INVALID
    assert "ready.yaml" in text and where in text and expected in text


def test_a_ready_target_is_asked_once(service: type[Service]) -> None:
    svc = service(0)
    said: list[str] = []
    clock = FakeClock()
    url = f"http://127.0.0.1:{svc.port}/api"
    ready = Readiness(path="/health")
    assert wait_until_ready(url, ready, said.append, clock=clock) == 0.0
    assert svc.calls == ["/api/health"] and said == []


def test_a_target_not_ready_yet_is_waited_for_and_said(service: type[Service]) -> None:
    svc = service(4)
    said: list[str] = []
    clock = FakeClock()
    url = f"http://127.0.0.1:{svc.port}"
    waited = wait_until_ready(url, Readiness(path="/health"), said.append, clock=clock)
    assert len(svc.calls) == 5
    assert waited == pytest.approx(1.0)
    assert said[0] == "waiting for the target to be ready: GET /health answered 503 (at most 30s)"
    assert said[-1] == "the target is ready after 1.0s (GET /health answered 200)"


def test_a_target_never_ready_is_could_not_run_without_its_credentials(
    service: type[Service],
) -> None:
    """Exit 3 with what it answered and the key to correct; the URL's password is sent as
    basic auth (as the load sends it) and never said."""
    svc = service(10_000)
    clock = FakeClock()
    url = f"http://ann:s3cret@127.0.0.1:{svc.port}"
    with pytest.raises(DependencyUnavailable) as caught:
        wait_until_ready(
            url, Readiness(path="/health", within=5.0), where="shop.yaml", clock=clock,
        )  # fmt: skip
    text = str(caught.value)
    assert caught.value.exit_code == EXIT_UNAVAILABLE
    assert "the target is not ready: GET /health answered 503 for 5s" in text
    assert "target.ready in shop.yaml expects a 2xx status" in text
    assert "s3cret" not in text and "ann" not in text
    assert 5.0 <= clock.now() < 5.5
    assert svc.auth[0] is not None and svc.auth[0].startswith("Basic ")


def test_only_the_expected_status_is_ready(service: type[Service]) -> None:
    """``expect: [204]``: a 200 is not ready."""
    svc = service(10_000, 200, 204)
    clock = FakeClock()
    with pytest.raises(DependencyUnavailable, match=r"answered 200 for 2s .*expects 204"):
        wait_until_ready(
            f"http://127.0.0.1:{svc.port}", Readiness(path="/health", expect=[204], within=2.0),
            clock=clock,
        )  # fmt: skip


def test_a_target_that_does_not_answer_is_said_so() -> None:
    clock = FakeClock()
    with pytest.raises(DependencyUnavailable, match=r"GET /health did not answer \(ConnectError\)"):
        wait_until_ready(
            "http://127.0.0.1:9", Readiness(path="/health", within=1.0),
            clock=clock,
        )  # fmt: skip
