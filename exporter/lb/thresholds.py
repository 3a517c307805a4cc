"""The load balancer's healthy/unhealthy threshold logic, applied to lbdoctor's own probe history.

This is what lets lbdoctor say what state the LB is *about to* reach: a target failing its second
of three checks is still healthy to the NLB, and lbdoctor says so, with the lead time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LbState(enum.StrEnum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Thresholds:
    healthy: int
    unhealthy: int
    # ALB: a newly registered target "must pass one health check to be considered healthy".
    # NLB behaviour here is undocumented; it is assumed to need the healthy threshold.
    initial_healthy_after: int


@dataclass(frozen=True, slots=True)
class PredictedHealth:
    state: LbState = LbState.INITIAL
    ok_streak: int = 0
    fail_streak: int = 0
    transitions: int = 0  # healthy <-> unhealthy changes; leaving "initial" is not a transition

    def after(self, success: bool, limits: Thresholds) -> PredictedHealth:
        ok = self.ok_streak + 1 if success else 0
        fail = 0 if success else self.fail_streak + 1
        state = self.state
        if state is LbState.INITIAL:
            if ok >= limits.initial_healthy_after:
                state = LbState.HEALTHY
            elif fail >= limits.unhealthy:
                state = LbState.UNHEALTHY
        elif state is LbState.HEALTHY and fail >= limits.unhealthy:
            state = LbState.UNHEALTHY
        elif state is LbState.UNHEALTHY and ok >= limits.healthy:
            state = LbState.HEALTHY
        flipped = state is not self.state and self.state is not LbState.INITIAL
        return PredictedHealth(state, ok, fail, self.transitions + (1 if flipped else 0))

    def checks_until_unhealthy(self, limits: Thresholds) -> int:
        """Further failed checks before the LB marks the target unhealthy (0: it already has)."""
        if self.state is LbState.UNHEALTHY:
            return 0
        return max(limits.unhealthy - self.fail_streak, 0)
