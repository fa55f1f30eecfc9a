"""Session state: people, notes, steps, the timeline, and waking every console on change."""

from __future__ import annotations

import threading

import pytest

from resilience.gameday.state import SessionState, StateError
from resilience.vocabulary import FakeClock


def make() -> tuple[SessionState, FakeClock]:
    clock = FakeClock()
    return SessionState(clock, ["hang the database", "slow queries"]), clock


def test_people_join_with_a_role_and_rejoining_changes_it() -> None:
    """A name joins once; joining again with another role changes the role, not the list."""
    state, _ = make()
    state.join("Ada", "facilitator")
    state.join(" Ada ", "scribe")
    state.join("Bo", "observer")
    assert [(p.name, p.role) for p in state.people] == [("Ada", "scribe"), ("Bo", "observer")]
    with pytest.raises(StateError, match="role must be one of"):
        state.join("Cy", "boss")
    with pytest.raises(StateError, match="name must not be empty"):
        state.join("   ", "observer")


def test_notes_carry_kind_time_step_and_active_faults() -> None:
    """A note is stamped on the session clock with the running step and the active faults,
    and appears on the timeline; the journal splits notes by kind."""
    state, clock = make()
    clock.advance(5.0)
    state.add_note("hypothesis", "orders fail fast", "Ada")
    state.start_step(0)
    clock.advance(20.0)
    note = state.add_note("observation", "catalog errors too", "Bo", active_faults=[0])
    assert (note.t, note.step, note.faults) == (25.0, 0, [0])
    assert [e.kind for e in state.timeline] == ["note", "step", "note"]
    fields = state.journal_fields()
    assert [n["text"] for n in fields["hypotheses"]] == ["orders fail fast"]
    assert [n["text"] for n in fields["observations"]] == ["catalog errors too"]
    with pytest.raises(StateError, match="kind must be one of"):
        state.add_note("rumour", "x")
    with pytest.raises(StateError, match="too long"):
        state.add_note("note", "x" * 5000)


def test_steps_advance_skip_and_repeat() -> None:
    """next starts the first pending step; skip and repeat are recorded with their times."""
    state, clock = make()
    assert state.next_step().index == 0
    clock.advance(10.0)
    state.skip_step(1)
    assert state.steps[0].status == "running"
    state.finish_step()
    assert state.steps[0].status == "done" and state.steps[0].runs == [{"start": 0.0, "end": 10.0}]
    with pytest.raises(StateError, match="no pending step"):
        state.next_step()
    clock.advance(5.0)
    state.start_step(0)  # repeat
    assert len(state.steps[0].runs) == 2 and state.current_step == 0
    assert state.steps[1].status == "skipped"
    with pytest.raises(StateError, match="no step 7"):
        state.start_step(7)


def test_a_change_wakes_a_waiting_console_at_once() -> None:
    """wait_change returns as soon as the state moves, not at its timeout."""
    state, _ = make()
    version = state.version
    seen: list[int] = []
    waiter = threading.Thread(target=lambda: seen.append(state.wait_change(version, 10.0)))
    waiter.start()
    state.add_note("note", "hello")
    waiter.join(timeout=2.0)
    assert not waiter.is_alive() and seen and seen[0] > version
    assert state.wait_change(state.version, 0.01) == state.version  # nothing new: times out


def test_publish_changes_the_version_only_when_the_value_changes() -> None:
    """Live parts republished unchanged do not wake consoles."""
    state, _ = make()
    state.publish("load", {"users": 10})
    version = state.version
    state.publish("load", {"users": 10})
    assert state.version == version
    state.publish("load", {"users": 100})
    assert state.version == version + 1 and state.snapshot()["load"] == {"users": 100}
