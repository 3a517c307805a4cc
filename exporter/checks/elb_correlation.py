"""Which side a failing health check is on: the ELB's verdict against lbdoctor's own probe of the target.

The node agents probe each pod from its own node, exactly as the load balancer checks it, but not
along the load balancer's network path. So, per target:

- ELB unhealthy and the probe fails -> the **application**: it fails its own health check (the probe's
  reason says how);
- ELB unhealthy and the probe passes -> the **network** between the load balancer and the target (a
  security group, NACL or route, when lbdoctor found one);
- probe failing while the ELB still says healthy -> **about to fail**: the load balancer has not
  counted enough failures yet; the lead time is the checks left times the interval.

This module says which side, in the message. Which finding is the cause (``caused_by``) is the causal
rules' business (``exporter.checks.causes``), evaluated later over every result of the round.

Pure: a function of the ELB targets, the probe statuses and the network findings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.aws.ids import normalise_ip
from exporter.checks.aws_context import TargetView
from exporter.checks.causes import explained_by
from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status, TargetRef

_UNHEALTHY = ("unhealthy", "unhealthy.draining")


class Side(enum.StrEnum):
    APPLICATION = "application"
    NETWORK = "network"
    ABOUT_TO_FAIL = "about_to_fail"


@dataclass(frozen=True, slots=True)
class Correlation:
    owner: ObjectRef
    view: TargetView
    side: Side
    probe: TargetStatus
    lead_seconds: float | None = None  # about to fail: seconds before the LB marks it unhealthy


def failing(status: TargetStatus) -> bool:
    if status.outcome is None:
        return False
    return not status.outcome.success or status.health.state is LbState.UNHEALTHY


def passing(status: TargetStatus) -> bool:
    return status.outcome is not None and status.outcome.success and status.health.state is not LbState.UNHEALTHY


def _probes_for(view: TargetView, probes: Sequence[TargetStatus]) -> list[TargetStatus]:
    """The node agents' probes of this ELB target: the pod at its IP (ip targets) or the pods of the
    same load balancer on its node (instance targets: the LB reaches them through the NodePort)."""
    owner = view.owner
    if view.place.node is not None and view.place.pod is None:
        node = view.place.node.meta.name
        return [p for p in probes if p.target.node == node and p.target.owner == owner]
    ip = view.place.ip
    if ip is None:
        return []
    same_ip = [p for p in probes if normalise_ip(p.target.request.ip) == ip]
    same_owner = [p for p in same_ip if p.target.owner == owner]
    return same_owner or same_ip


def correlate(targets: Iterable[TargetView], probes: Sequence[TargetStatus]) -> tuple[Correlation, ...]:
    found = []
    for view in targets:
        matched = _probes_for(view, probes)
        if not matched:
            continue
        bad = [p for p in matched if failing(p)]
        good = [p for p in matched if passing(p)]
        state = view.target.state
        if state in _UNHEALTHY:
            if bad and not good:
                found.append(Correlation(view.owner, view, Side.APPLICATION, bad[0]))
            elif good:
                found.append(Correlation(view.owner, view, Side.NETWORK, good[0]))
        elif state == "healthy" and bad and not good:
            probe = bad[0]
            limits = probe.target.thresholds
            left = probe.health.checks_until_unhealthy(limits)
            found.append(
                Correlation(view.owner, view, Side.ABOUT_TO_FAIL, probe, lead_seconds=left * probe.target.interval)
            )
    return tuple(found)


def _probe_words(status: TargetStatus) -> str:
    outcome = status.outcome
    reason = outcome.reason.value if outcome is not None and outcome.reason is not None else "failing"
    detail = f": {outcome.detail}" if outcome is not None and outcome.detail else ""
    return f"{reason}{detail}"


def explain(result: CheckResult, correlation: Correlation, findings: Sequence[CheckResult] = ()) -> CheckResult:
    """The elb_target_health result, told which side the failure is on. ``findings``: the path findings
    (security groups, NACLs, routes) that may explain a network-side failure."""
    probe = correlation.probe
    node = probe.target.node
    if correlation.side is Side.APPLICATION:
        return replace(
            result,
            message=f"{result.message}. The application is at fault: lbdoctor's own probe from node {node} fails too "
            f"({_probe_words(probe)})",
        )
    if correlation.side is Side.NETWORK:
        finding = explained_by(result, findings)
        if finding is not None:
            return replace(
                result,
                message=f"{result.message}. The network path is at fault: lbdoctor's probe from node {node} passes, "
                f"and {finding.check.value} says: {finding.message}",
            )
        return replace(
            result,
            message=f"{result.message}. The network path is at fault: lbdoctor's probe from node {node} passes, so "
            f"the load balancer's packets are lost on the way; lbdoctor found no security group, NACL or route that "
            f"explains it",
            remedy="check what lbdoctor cannot see: a host firewall or network policy on the node, security groups "
            "for pods, the NLB's Host header (its node IP), and kube-proxy on the node",
        )
    lead = correlation.lead_seconds or 0.0
    return replace(
        result,
        status=Status.WARN,
        reason=Reason.PROBE_FAILING_ELB_HEALTHY,
        message=f"{result.message}, but about to fail: lbdoctor's probe from node {node} fails "
        f"({_probe_words(probe)}); the load balancer marks it unhealthy in about {lead:g} s",
        remedy="see the health_probe result of this target for the cause",
    )


def apply(
    results: Sequence[CheckResult], correlations: Sequence[Correlation], findings: Sequence[CheckResult] = ()
) -> list[CheckResult]:
    """Rewrite the elb_target_health results the correlations speak about; the rest pass through."""
    by_target: dict[tuple[ObjectRef, TargetRef | None], Correlation] = {(c.owner, c.view.ref): c for c in correlations}
    rewritten = []
    for result in results:
        correlation = by_target.get((result.object, result.target)) if result.check is Check.ELB_TARGET_HEALTH else None
        wants = correlation is not None and (
            (correlation.side is Side.ABOUT_TO_FAIL and result.status is Status.OK)
            or (correlation.side is not Side.ABOUT_TO_FAIL and result.status is not Status.OK)
        )
        rewritten.append(explain(result, correlation, findings) if wants and correlation is not None else result)
    return rewritten
