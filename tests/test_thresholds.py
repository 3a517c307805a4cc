"""The LB's healthy/unhealthy thresholds applied to probe history."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.lb.thresholds import LbState, PredictedHealth, Thresholds

NLB = Thresholds(healthy=3, unhealthy=3, initial_healthy_after=3)
ALB = Thresholds(healthy=2, unhealthy=2, initial_healthy_after=1)


def run(history: list[bool], limits: Thresholds) -> PredictedHealth:
    health = PredictedHealth()
    for success in history:
        health = health.after(success, limits)
    return health


def test_alb_new_target_is_healthy_after_one_pass() -> None:
    assert run([True], ALB).state is LbState.HEALTHY
    assert run([True], NLB).state is LbState.INITIAL


def test_failures_below_the_threshold_keep_the_target_healthy() -> None:
    health = run([True, True, True, False, False], NLB)
    assert health.state is LbState.HEALTHY
    assert health.checks_until_unhealthy(NLB) == 1
    assert run([True, True, True, False, False, False], NLB).state is LbState.UNHEALTHY


def test_recovery_needs_the_healthy_threshold() -> None:
    assert run([True, False, False, True], ALB).state is LbState.UNHEALTHY
    assert run([True, False, False, True, True], ALB).state is LbState.HEALTHY


def test_transitions_count_flips_not_registration() -> None:
    health = run([True, False, False, True, True, False, False], ALB)
    assert health.transitions == 3


@given(st.lists(st.booleans(), max_size=60))
def test_state_matches_the_longest_recent_streak(history: list[bool]) -> None:
    """Independent model: the state only changes when a streak reaches a threshold."""
    health = run(history, ALB)
    state, ok, fail, flips = LbState.INITIAL, 0, 0, 0
    for success in history:
        ok, fail = (ok + 1, 0) if success else (0, fail + 1)
        new = state
        if state is not LbState.HEALTHY and ok >= (1 if state is LbState.INITIAL else 2):
            new = LbState.HEALTHY
        if state is not LbState.UNHEALTHY and fail >= 2:
            new = LbState.UNHEALTHY
        flips += new is not state and state is not LbState.INITIAL
        state = new
    assert (health.state, health.transitions) == (state, flips)
