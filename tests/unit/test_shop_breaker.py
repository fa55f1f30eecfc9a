"""The shop's circuit breaker: every transition, driven by an injected clock."""

from __future__ import annotations

import pytest

from resilience.shop.breaker import BreakerConfig, BreakerState, CircuitBreaker, Permit


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CONFIG = BreakerConfig(
    failure_threshold=3,
    failure_ratio=0.5,
    window_seconds=10.0,
    min_calls=6,
    open_seconds=1.0,
    probe_interval_seconds=0.25,
    recovery_seconds=2.0,
)


def make(config: BreakerConfig = CONFIG) -> tuple[CircuitBreaker, FakeClock, list[str]]:
    clock = FakeClock()
    transitions: list[str] = []
    breaker = CircuitBreaker(
        "orders",
        config,
        clock=clock,
        on_transition=lambda old, new: transitions.append(f"{old.name}->{new.name}"),
    )
    return breaker, clock, transitions


def call(breaker: CircuitBreaker, *, success: bool) -> Permit:
    permit = breaker.acquire()
    assert permit is not None, f"call rejected in state {breaker.state.name}"
    breaker.record(permit, success=success)
    return permit


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.failure_threshold):
        call(breaker, success=False)
    assert breaker.state is BreakerState.OPEN


def test_starts_closed_and_admits_calls() -> None:
    """A new breaker is closed and admits every call as a normal (non-probe) call."""
    breaker, _, transitions = make()
    assert breaker.state is BreakerState.CLOSED
    permits = [breaker.acquire() for _ in range(50)]
    assert all(p is not None and not p.probe for p in permits)
    assert transitions == []


def test_consecutive_failures_open_it() -> None:
    """N consecutive failures open the breaker; fewer do not."""
    breaker, _, transitions = make()
    call(breaker, success=False)
    call(breaker, success=False)
    assert breaker.state is BreakerState.CLOSED
    call(breaker, success=False)
    assert breaker.state is BreakerState.OPEN
    assert transitions == ["CLOSED->OPEN"]


def test_a_success_resets_the_consecutive_count() -> None:
    """Failures interleaved with successes below the ratio floor keep it closed."""
    breaker, _, _ = make(BreakerConfig(failure_threshold=3, min_calls=1000))
    for _ in range(10):
        call(breaker, success=False)
        call(breaker, success=False)
        call(breaker, success=True)
    assert breaker.state is BreakerState.CLOSED


def test_failure_ratio_in_window_opens_it() -> None:
    """Alternating failures reach the ratio once the window holds min_calls calls."""
    breaker, clock, _ = make()
    for i in range(5):
        call(breaker, success=i % 2 == 1)  # F S F S F: 3/5 failures, below min_calls
        clock.advance(0.1)
    assert breaker.state is BreakerState.CLOSED
    call(breaker, success=True)  # 3/6 = 0.5 but a success never opens
    assert breaker.state is BreakerState.CLOSED
    call(breaker, success=False)  # 4/7 >= 0.5
    assert breaker.state is BreakerState.OPEN


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window no longer count toward the ratio."""
    breaker, clock, _ = make()
    for _ in range(2):
        call(breaker, success=False)
        call(breaker, success=True)
    clock.advance(CONFIG.window_seconds + 1)
    for _ in range(3):
        call(breaker, success=True)
    call(breaker, success=False)  # 1 failure in 4 calls now in the window
    call(breaker, success=True)
    call(breaker, success=False)
    assert breaker.state is BreakerState.CLOSED


def test_open_rejects_every_call() -> None:
    """While open, acquire returns None for every call."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    for _ in range(20):
        assert breaker.acquire() is None
        clock.advance(0.04)
    assert breaker.state is BreakerState.OPEN


def test_open_turns_half_open_after_open_seconds() -> None:
    """Exactly open_seconds after opening, the breaker is half-open."""
    breaker, clock, transitions = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds - 0.001)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    assert transitions == ["CLOSED->OPEN", "OPEN->HALF_OPEN"]


def test_half_open_admits_one_probe_at_a_time() -> None:
    """Half-open admits one probe; others are rejected while it is in flight."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    clock.advance(CONFIG.probe_interval_seconds * 4)
    assert breaker.acquire() is None  # the first probe is still in flight


def test_probes_are_spaced_by_the_probe_interval() -> None:
    """After a successful probe the next one waits for the probe interval."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=True)
    clock.advance(CONFIG.probe_interval_seconds - 0.01)
    assert breaker.acquire() is None
    clock.advance(0.01)
    second = breaker.acquire()
    assert second is not None and second.probe


def test_failed_probe_reopens_for_a_fresh_open_period() -> None:
    """A failed probe opens the breaker again, for a full open_seconds."""
    breaker, clock, transitions = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    probe = breaker.acquire()
    assert probe is not None
    clock.advance(0.3)
    breaker.record(probe, success=False)
    assert breaker.state is BreakerState.OPEN
    clock.advance(CONFIG.open_seconds - 0.01)
    assert breaker.state is BreakerState.OPEN
    clock.advance(0.01)
    assert breaker.state is BreakerState.HALF_OPEN
    assert transitions[-3:] == ["OPEN->HALF_OPEN", "HALF_OPEN->OPEN", "OPEN->HALF_OPEN"]


def test_closes_after_probes_succeed_for_recovery_seconds() -> None:
    """It closes exactly recovery_seconds after the first successful probe completed."""
    breaker, clock, transitions = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    first_success_at = None
    for _ in range(100):
        if breaker.state is BreakerState.CLOSED:
            break
        probe = breaker.acquire()
        if probe is not None:
            assert probe.probe
            clock.advance(0.01)
            breaker.record(probe, success=True)
            if first_success_at is None:
                first_success_at = clock.now
        clock.advance(0.05)
    assert first_success_at is not None
    assert breaker.state is BreakerState.CLOSED
    closed_after = clock.now - first_success_at
    assert CONFIG.recovery_seconds <= closed_after < CONFIG.recovery_seconds + 0.06
    assert transitions[-1] == "HALF_OPEN->CLOSED"


def test_a_failure_during_recovery_restarts_the_streak() -> None:
    """A probe failure late in the streak reopens; the next streak starts from zero."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=True)
    clock.advance(CONFIG.recovery_seconds - 0.1)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=False)
    assert breaker.state is BreakerState.OPEN
    clock.advance(CONFIG.open_seconds)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=True)
    clock.advance(CONFIG.recovery_seconds - 0.01)
    assert breaker.state is BreakerState.HALF_OPEN
    clock.advance(0.01)
    assert breaker.state is BreakerState.CLOSED


def test_closing_resets_the_failure_counts() -> None:
    """After closing, it again takes N consecutive failures to open."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=True)
    clock.advance(CONFIG.recovery_seconds)
    assert breaker.state is BreakerState.CLOSED
    call(breaker, success=False)
    call(breaker, success=False)
    assert breaker.state is BreakerState.CLOSED


def test_results_from_an_earlier_state_are_ignored() -> None:
    """A slow call admitted while closed cannot affect the half-open breaker."""
    breaker, clock, _ = make()
    straggler = breaker.acquire()
    assert straggler is not None
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(straggler, success=False)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record(straggler, success=True)
    probe = breaker.acquire()
    assert probe is not None and probe.probe  # the straggler did not occupy the probe slot


def test_release_frees_the_probe_slot() -> None:
    """A probe released without a verdict lets another probe through after the interval."""
    breaker, clock, _ = make()
    open_breaker(breaker)
    clock.advance(CONFIG.open_seconds)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.state is BreakerState.HALF_OPEN
    clock.advance(CONFIG.probe_interval_seconds)
    assert breaker.acquire() is not None


def test_zero_recovery_closes_on_the_first_successful_probe() -> None:
    """With recovery_seconds 0 the first successful probe closes the breaker."""
    breaker, clock, _ = make(
        BreakerConfig(failure_threshold=1, open_seconds=0.5, recovery_seconds=0.0)
    )
    call(breaker, success=False)
    clock.advance(0.5)
    breaker.record(breaker.acquire() or pytest.fail("no probe"), success=True)
    assert breaker.state is BreakerState.CLOSED
