"""Warnings about a valid experiment: things it may not mean, which the loader accepts.

A warning never stops a run or changes an exit code; ``validate`` and ``run --dry-run``
show them (``"warnings"`` in ``--json``) so that they are read before a long run, not
after it. Two kinds, each a case where the file is valid but the result would surprise:

- the load after the last heal (or the spike) is shorter than ``slo.recovery.within`` +
  ``recovery.stable_seconds``, so ``slow_recovery`` can only say "inconclusive" (its
  rule, ``analysis/detectors/slow_recovery.py``);
- a timeout written as a bare number of 60 or more: bare numbers are seconds in every
  duration field (only SLO latencies demand a unit), so ``client_timeout: 500`` is 500 s
  when milliseconds were most likely meant. Files that say so are not broken; they are told.
"""

from __future__ import annotations

from collections.abc import Mapping

from resilience.experiment._problems import KeyPath, Problem
from resilience.experiment.model import Experiment
from resilience.experiment.units import BARE_NUMBER, format_duration

BARE_TIMEOUT_WARN = 60.0
"""A bare number of seconds from here on in a timeout field is probably milliseconds."""

TIMEOUT_FIELDS: tuple[KeyPath, ...] = (
    ("load", "client_timeout"),
    ("load", "slow_threshold"),
    ("observe", "prometheus", "timeout"),
    ("observe", "traces", "timeout"),
    ("toxiproxy", "timeout"),
)
"""Duration fields that time one request: where ``500`` reads as 500 ms to people."""


def _s(seconds: float) -> str:
    return f"{seconds:g}s"


def recovery_watch(experiment: Experiment) -> list[Problem]:
    """A warning when the load after the last heal (or the spike) cannot prove recovery."""
    recovery = next((p for p in experiment.scheduled_phases() if p.name == "recovery"), None)
    if recovery is None:
        return []
    within = experiment.slo.recovery.within if experiment.slo.recovery is not None else None
    stable = experiment.recovery.stable_seconds
    needed = (within or 0.0) + stable
    watched = recovery.end - recovery.start
    if watched >= needed:
        return []
    spike = experiment.spike() is not None
    after, heal = ("the spike", "the spike ends") if spike else ("the last heal", "last heal")
    budget = f"slo.recovery.within {format_duration(within)} + " if within is not None else ""
    ends = [(f.end, i) for i, f in enumerate(experiment.faults)]
    path: KeyPath = (
        ("faults", max(ends)[1], "duration")
        if ends
        else ("slo", "recovery", "within")
        if within is not None
        else ("recovery", "stable_seconds")
    )
    earlier = recovery.end - needed
    fix = f"load until {_s(recovery.start + needed)}" + (
        f", or {heal} by {_s(earlier)}" if earlier > 0 else ""
    )
    return [
        Problem(
            f"too little load after {after} to judge recovery: {heal} at "
            f"{_s(recovery.start)}, load ends at {_s(recovery.end)}, recovery needs "
            f"{_s(needed)} ({budget}recovery.stable_seconds {stable}s); slow_recovery can only "
            "be inconclusive",
            expected=f"at least {_s(needed)} of load after {after} ({fix})",
            got=f"{_s(watched)}",
            path=path,
        )
    ]


def _at(data: object, path: KeyPath) -> object:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def bare_timeouts(data: object) -> list[Problem]:
    """A warning for each timeout field written as a bare number of 60 or more seconds."""
    found: list[Problem] = []
    for path in TIMEOUT_FIELDS:
        value = _at(data, path)
        if isinstance(value, bool) or not (
            isinstance(value, int | float) or (isinstance(value, str) and BARE_NUMBER.match(value))
        ):
            continue
        seconds = float(value)
        if seconds < BARE_TIMEOUT_WARN:
            continue
        text = f"{value}".strip()
        found.append(
            Problem(
                f"a bare number is seconds: {text} = {seconds:g} s"
                + (f" ({format_duration(seconds)})" if seconds >= 120 else ""),
                expected=f"a duration with its unit: write {text}ms if you meant milliseconds "
                f"(or {text}s to say seconds)",
                got=text,
                path=path,
            )
        )
    return found


def input_warnings(experiment: Experiment, data: object) -> list[Problem]:
    """Every warning about ``experiment``, validated from ``data`` (profile and ``--set``
    applied, ``${env:...}`` not resolved: those values are secrets, never shown), at key
    paths the loader turns into lines."""
    return [*bare_timeouts(data), *recovery_watch(experiment)]
