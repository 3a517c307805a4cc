"""Remember each ELB target's state across refreshes: since when, and how often it flipped.

Transitions count healthy <-> unhealthy changes only (as ``lbdoctor_probe_transitions_total`` does):
registering (``initial``) and draining are a target's normal life, not flapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exporter.aws.model import TargetGroupHealth, TargetKey, TargetTrack

_FLIPPING = {"healthy": "up", "unhealthy": "down", "unhealthy.draining": "down"}


def advance(
    history: Mapping[TargetKey, TargetTrack],
    fresh: Iterable[TargetGroupHealth],
    forget: Iterable[str] = (),
) -> dict[TargetKey, TargetTrack]:
    """The history after the freshly fetched target groups; ``forget`` drops target groups that went away.

    Targets of a freshly fetched group that AWS no longer lists are dropped (deregistered).
    """
    gone = set(forget)
    fresh = list(fresh)
    refreshed = {health.arn for health in fresh}
    updated = {key: track for key, track in history.items() if key[0] not in gone and key[0] not in refreshed}
    for health in fresh:
        for target in health.targets:
            key = (health.arn, target.id, target.port)
            previous = history.get(key)
            if previous is None:
                updated[key] = TargetTrack(target.state, health.fetched_at)
            elif previous.state == target.state:
                updated[key] = previous
            else:
                before, after = _FLIPPING.get(previous.state), _FLIPPING.get(target.state)
                flipped = before is not None and after is not None and before != after
                transitions = previous.transitions + (1 if flipped else 0)
                updated[key] = TargetTrack(target.state, health.fetched_at, transitions)
    return updated
