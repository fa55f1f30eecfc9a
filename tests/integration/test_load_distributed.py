"""Distributed load on loopback: a master and `resilience worker` processes, separate
processes speaking Locust's ZeroMQ messaging, against the load engine's test server.

What each worker sent is also written to its ``--record`` file, so a test can hold the
merged run directory against the sum of what the workers measured.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.errors import LoadError
from resilience.load import ArrivalStage, LoadEngine, LoadPlan, LoadRecorder, RequestPlan, Stage
from resilience.load.commands import SetRate
from resilience.load.distributed import Distributed
from resilience.load.samples import CommandAck, LoadEvent, RemoteWorker
from resilience.rundir.load import LoadData
from tests.integration._runs import RESILIENCE
from tests.integration.test_load_engine import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _fresh(server: Server) -> None:
    server.reset()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(port: int, record: Path, log: Path) -> subprocess.Popen[bytes]:
    """`resilience worker --master 127.0.0.1:PORT`, as a user would start it."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [RESILIENCE, "worker", "--master", f"127.0.0.1:{port}", "--record", str(record)],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            start_new_session=True,
        )


def recorded_per_second(record: Path) -> Counter[int]:
    """Requests per send second in one worker's own record of what it sent."""
    counts: Counter[int] = Counter()
    for line in record.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "second":
            for endpoint in event["endpoints"].values():
                counts[event["second"]] += sum(endpoint["counts"].values())
    return counts


def merged_per_second(run_dir: Path) -> Counter[int]:
    counts: Counter[int] = Counter()
    for line in (run_dir / "load.jsonl").read_text().splitlines():
        body = json.loads(line)
        counts[body["second"]] += body["n"]
    return counts


class DistributedRun:
    """A master (the engine) and N remote workers; the load runs to its end."""

    def __init__(self, plan: LoadPlan, tmp: Path, workers: int = 2) -> None:
        self.plan = plan
        self.tmp = tmp
        self.port = free_port()
        self.run_dir = tmp / "run"
        self.records = [tmp / f"worker-{i}.jsonl" for i in range(workers)]
        self.logs = [tmp / f"worker-{i}.log" for i in range(workers)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.events: list[LoadEvent] = []
        self.distributed = Distributed(workers=workers, port=self.port, wait=60)
        self.messages: list[str] = []

    def start_workers(self) -> None:
        self.procs = [
            start_worker(self.port, record, log)
            for record, log in zip(self.records, self.logs, strict=True)
        ]

    def run(self, during: dict[float, object] | None = None) -> LoadRecorder:
        """Run to the end; ``during`` maps seconds after t0 to a callable or a command."""
        todo = dict(sorted((during or {}).items()))
        engine = LoadEngine(
            self.plan,
            log_dir=self.run_dir / "logs",
            distributed=self.distributed,
            progress=self.messages.append,
        )
        with engine:
            self.start_workers()
            engine.prepare()
            t0 = time.time() + 0.2
            engine.start(t0=t0)
            recorder = LoadRecorder(
                self.run_dir, t0=t0, workers=engine.workers, endpoints=self.plan.endpoints(),
                plan=engine.plan,
            )  # fmt: skip
            deadline = time.monotonic() + self.plan.duration + 40
            while engine.running and time.monotonic() < deadline:
                events = engine.poll(0.2)
                self.events.extend(events)
                recorder.consume(events)
                for at in [a for a in todo if time.time() >= t0 + a]:
                    action = todo.pop(at)
                    if isinstance(action, SetRate):
                        engine.send(action)
                    elif callable(action):
                        action()
            assert not engine.running, "the master did not end with its workers"
            self.lost = list(engine.lost)
        recorder.close()
        self.codes = [p.wait(timeout=15) for p in self.procs]
        return recorder


def _plan(server: Server, **shape: object) -> LoadPlan:
    return LoadPlan(
        target=f"http://127.0.0.1:{server.port}",
        t0=0.0,
        requests=[
            RequestPlan(name="GET /items", path="/items/{int:1:9}", weight=3),
            RequestPlan(name="GET /fail", path="/fail", weight=1),
        ],
        trace_sample=0.0,
        **shape,
    )


def test_two_remote_workers_merge_exactly_into_the_run(server: Server, tmp_path: Path) -> None:
    """Open model over a master and two `resilience worker` processes: every second of the
    run directory is the sum of what the two workers recorded, the server saw exactly
    that many requests, the schedule was kept, and both workers exit 0."""
    plan = _plan(server, arrival=[ArrivalStage(duration=5, rps=60)])
    run = DistributedRun(plan, tmp_path)
    recorder = run.run()

    merged = merged_per_second(run.run_dir)
    summed = recorded_per_second(run.records[0]) + recorded_per_second(run.records[1])
    assert merged == summed
    assert sum(merged.values()) == server.total == 300
    assert all(merged[s] == 60 for s in range(5)), merged
    assert run.codes == [0, 0]
    assigned = [e for e in run.events if isinstance(e, RemoteWorker) and e.state == "assigned"]
    assert sorted(e.worker for e in assigned) == [0, 1]
    assert all(abs(e.offset) < 0.05 for e in assigned), assigned  # one clock on one host
    assert {e.worker: e.reason for e in recorder.exits.values()} == {0: "end", 1: "end"}
    failed = LoadData.read(run.run_dir).counts("GET /fail", 2)
    assert failed["5xx"] == sum(failed.values()) > 0
    assert any("resilience worker --master 127.0.0.1:" in m for m in run.messages)


def test_a_command_reaches_every_remote_worker(server: Server, tmp_path: Path) -> None:
    """SetRate mid-run goes through the master to both workers: both acknowledge it and the
    rate the run directory shows follows it."""
    plan = _plan(server, arrival=[ArrivalStage(duration=6, rps=20)])
    run = DistributedRun(plan, tmp_path)
    run.run(during={2.0: SetRate(rps=80)})
    acks = [e for e in run.events if isinstance(e, CommandAck) and e.command == "set_rate"]
    assert sorted(a.worker for a in acks) == [0, 1] and all(a.ok for a in acks)
    merged = merged_per_second(run.run_dir)
    assert merged[0] == 20 and merged[4] == 80, merged


def test_a_worker_killed_mid_run_is_lost_not_a_failure(server: Server, tmp_path: Path) -> None:
    """SIGKILL one of two workers at 2.5 s: the run goes on with the other, the lost one is
    reported within a few seconds with its missing load (its share of the schedule), and
    the merged seconds still equal what the workers recorded."""
    plan = _plan(server, arrival=[ArrivalStage(duration=9, rps=40)])
    run = DistributedRun(plan, tmp_path)

    def kill_first() -> None:
        run.procs[0].send_signal(signal.SIGKILL)

    # 2.5 s: between two of its once-a-second flushes (a SIGKILL right after a flush could
    # drop a batch ZeroMQ had not handed over yet, which its record file would still hold).
    recorder = run.run(during={2.5: kill_first})
    [lost] = run.lost
    assert lost.reason == "lost" and lost.at is not None and 1.5 < lost.at < 3.0, lost
    [missing] = recorder.lost
    assert missing.worker == lost.worker
    assert missing.missing_requests is not None and not missing.estimated
    # 20 a second for each worker; it is missing from its first unrecorded second on.
    assert missing.missing_requests == 20 * (9 - missing.last_second - 1)
    meta = json.loads((run.run_dir / "load.json").read_text())
    assert meta["missing_requests"] == missing.missing_requests
    merged = merged_per_second(run.run_dir)
    assert merged == recorded_per_second(run.records[0]) + recorded_per_second(run.records[1])
    survivor = 1 - lost.worker
    assert recorder.exits[survivor].reason == "end"
    assert all(merged[s] == 20 for s in range(missing.last_second + 2, 9)), merged
    assert run.codes[0] == -signal.SIGKILL and run.codes[1] == 0


def test_closed_model_users_are_split_across_remote_workers(server: Server, tmp_path: Path) -> None:
    """Closed model: each remote worker runs its share of the users, like a local one."""
    plan = _plan(server, stages=[Stage(duration=4, users=6, spawn_rate=6)], wait_min=0.05,
                 wait_max=0.1)  # fmt: skip
    run = DistributedRun(plan, tmp_path)
    recorder = run.run()
    assert sum(merged_per_second(run.run_dir).values()) == server.total > 50
    per_worker = [sum(recorded_per_second(r).values()) for r in run.records]
    assert all(n > 15 for n in per_worker), per_worker
    assert recorder.lost == []


def test_too_few_workers_is_could_not_run_with_the_command_to_start_them(tmp_path: Path) -> None:
    """Nobody joins within the wait: LoadError (exit 3) that says how to start a worker."""
    plan = LoadPlan(
        target="http://127.0.0.1:9", t0=0.0, arrival=[ArrivalStage(duration=1, rps=1)],
        requests=[RequestPlan(name="GET /", path="/")],
    )  # fmt: skip
    port = free_port()
    engine = LoadEngine(
        plan, log_dir=tmp_path / "logs", distributed=Distributed(workers=1, port=port, wait=2)
    )
    with engine, pytest.raises(LoadError) as caught:
        engine.prepare()
    assert f"resilience worker --master 127.0.0.1:{port}" in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_worker_without_a_master_gives_up_with_exit_3(tmp_path: Path) -> None:
    """`resilience worker` against a port where nobody listens ends (3) after its timeout."""
    started = time.monotonic()
    result = subprocess.run(
        [RESILIENCE, "worker", "--master", f"127.0.0.1:{free_port()}", "--connect-timeout", "5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "no master answered" in result.stderr
    assert time.monotonic() - started < 30
