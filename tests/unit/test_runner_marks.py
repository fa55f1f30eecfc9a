"""Phase marks as the workers see them: in order, never earlier than an ``upto`` already
sent, from any thread; and a fault timeline's moments reaching the marks and the journal."""

from __future__ import annotations

import threading
from pathlib import Path

from resilience.faults.catalogue import FaultSpec
from resilience.faults.timeline import FaultTimeline
from resilience.load.commands import PhaseMarks
from resilience.rundir.journal import Journal, MarkRecord
from resilience.runner.marks import FaultMoments, PhaseMarker
from resilience.testing.toxiproxy_fake import FakeToxiproxy
from resilience.vocabulary import FakeClock


def marker(clock: FakeClock) -> tuple[PhaseMarker, list[PhaseMarks], list[list[MarkRecord]]]:
    sent: list[PhaseMarks] = []
    recorded: list[list[MarkRecord]] = []
    return PhaseMarker(clock, sent.append, recorded.append), sent, recorded


def test_a_heal_stamped_before_the_last_upto_joins_it() -> None:
    """A heal that returned at 4.8 s but is marked after an ``upto`` of 5.0 was sent (another
    thread ticked meanwhile) is marked at 5.0: no worker has finalised a second that the
    mark falls in."""
    clock = FakeClock(1.0)
    m, sent, recorded = marker(clock)
    m.mark("apply", 0)
    clock.t = 5.0
    m.tick(5.0)
    m.mark("heal", 0, t=4.8)
    assert [r.t for r in recorded[-1]] == [1.0, 5.0]
    uptos = [c.upto for c in sent if c.upto is not None]
    assert uptos == sorted(uptos)
    for command in sent:
        assert list(command.marks) == sorted(command.marks)


def test_marks_from_many_threads_never_fall_behind_an_upto() -> None:
    """Marks and ticks from four threads at once: every command holds its marks in order,
    and each mark is at or after every ``upto`` sent before it."""
    clock = FakeClock(0.0)
    m, sent, _ = marker(clock)
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(200):
            with lock:
                clock.t += 0.001
            if i % 3 == 0:
                m.mark("apply" if i % 2 == 0 else "heal", n, t=clock.t - 0.01)
            else:
                m.tick(clock.t + 1.0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last_upto = -1.0
    seen = 0
    for command in sent:
        assert list(command.marks) == sorted(command.marks)
        assert all(mark >= last_upto for mark in command.marks[seen:])
        seen = len(command.marks)
        if command.upto is not None:
            assert command.upto >= last_upto
            last_upto = command.upto


def test_a_faults_moments_reach_the_marks_and_the_journal(tmp_path: Path) -> None:
    """Apply mark before the Toxiproxy call, heal mark at the heal's stamp, the fault's
    record and a fault_applied / fault_healed event in the journal."""
    clock = FakeClock(3.0)
    journal = Journal.start(tmp_path / "journal.json", experiment="x", profile=None, t0=0.0)
    m = PhaseMarker(clock, lambda _c: None, lambda marks: journal.update(marks=marks))
    moments = FaultMoments(journal, m)
    spec = FaultSpec(index=0, at=3.0, duration=2.0, proxy="postgres", type="latency",
                     attributes={"latency": 100})  # fmt: skip
    api = FakeToxiproxy()
    api.create_proxy("postgres", "127.0.0.1:20000", "127.0.0.1:21000")
    timeline = FaultTimeline([spec], api, clock, moments.event,
                             on_before_apply=moments.before_apply)  # fmt: skip
    moments.records = timeline.records
    timeline.tick(3.0)
    clock.t = 5.5
    timeline.heal_all(budget=1.0)
    assert [(k.kind, k.t) for k in journal.data.marks] == [("apply", 3.0), ("heal", 5.5)]
    assert journal.data.faults[0].healed_at == 5.5
    assert [e.kind for e in journal.data.events] == ["fault_applied", "fault_healed"]
