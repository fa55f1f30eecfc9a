"""The parent-to-worker command channel: encoding, validation, and live-rate send times."""

from __future__ import annotations

import pytest

from resilience.errors import LoadError
from resilience.load.commands import (
    SetRate,
    SetUsers,
    command_type,
    decode_command,
    encode_command,
)
from resilience.load.samples import CommandAck, decode_event, encode_event
from resilience.load.schedule import rate_times


@pytest.mark.parametrize(
    "command", [SetUsers(1000, 100.0), SetUsers(0, 1), SetRate(0), SetRate(250.5)]
)
def test_commands_round_trip_through_one_json_line(command: SetUsers | SetRate) -> None:
    """Every command encodes to one line with its type and decodes to an equal object."""
    line = encode_command(command)
    assert "\n" not in line
    assert f'"type":"{command_type(command)}"' in line
    assert decode_command(line) == command
    assert decode_command(line.encode()) == command


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "phase_mark"}', "unknown load command type 'phase_mark'"),
        ('{"users": 5}', "unknown load command type None"),
        ('{"type": "set_users", "users": -1, "spawn_rate": 1}', "between 0 and"),
        ('{"type": "set_users", "users": 5.5, "spawn_rate": 1}', "whole number"),
        ('{"type": "set_users", "users": true, "spawn_rate": 1}', "whole number"),
        ('{"type": "set_users", "users": 5, "spawn_rate": 0}', "spawn_rate must be > 0"),
        ('{"type": "set_users", "users": 5}', "invalid set_users command"),
        ('{"type": "set_rate", "rps": -3}', "rps must be >= 0"),
        ('{"type": "set_rate", "rps": "fast"}', "finite number"),
        ('{"type": "set_rate", "rps": 5, "extra": 1}', "invalid set_rate command"),
    ],
)
def test_bad_command_lines_are_refused_with_the_reason(line: str, fragment: str) -> None:
    """A malformed or invalid command is a LoadError saying what is wrong, never a crash."""
    with pytest.raises(LoadError, match=None) as info:
        decode_command(line)
    assert fragment in str(info.value)


def test_command_ack_is_a_load_event() -> None:
    """A worker's answer to a command travels like any other event."""
    ack = CommandAck(worker=1, command="set_users", t=12.5, ok=True, detail="users=500")
    assert decode_event(encode_event(ack)) == ack


def test_rate_times_start_at_the_change_and_interleave_workers() -> None:
    """A live rate change gives an evenly spaced stream from the moment of the change,
    split across workers without overlap."""
    merged = sorted(t for w in range(3) for t in rate_times(10.0, 5.0, 7.0, w, 3))
    assert merged == pytest.approx([5.0 + j / 10.0 for j in range(20)])
    assert list(rate_times(10.0, 5.0, 7.0, 1, 3))[:2] == pytest.approx([5.1, 5.4])


def test_rate_zero_or_past_the_end_sends_nothing() -> None:
    """Rate 0 pauses the stream; a change at or after the end sends nothing."""
    assert list(rate_times(0.0, 1.0, 10.0, 0, 1)) == []
    assert list(rate_times(5.0, 10.0, 10.0, 0, 1)) == []
    with pytest.raises(ValueError, match="not one of"):
        list(rate_times(5.0, 0.0, 1.0, 2, 2))
