"""Root causes before consequences: one table of causal rules, evaluated over every result of a round.

A rule reads "a ``cause`` finding explains an ``effect`` finding when the two share a subject of one
of the ``via`` kinds" (``CheckResult.about``, spelled by ``exporter.model.subjects``). The rules are
tried in table order; the first that finds a failing or warning cause gives the effect its one cause
(``caused_by``), and the effect's remedy then points at it. A cause may explain many effects; no link
ever closes a cycle. Results of every role and check meet here: the node role links what it sees, the
cluster role what it sees plus the node agents' results, ``lbdoctor diagnose`` everything it ran.
docs/diagnose.md shows this table (a test keeps the two equal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.checks.registry import position
from exporter.model import subjects as s
from exporter.model.results import Check, CheckResult, Reason, ResultKey, Status

_BAD = frozenset({Status.FAIL, Status.WARN})
R = Reason

_POD_DOWN = frozenset({R.CRASH_LOOP_BACK_OFF, R.CONTAINER_NOT_READY, R.POD_NOT_RUNNING, R.POD_HAS_NO_IP})
_NO_ENDPOINTS = frozenset({R.NO_ENDPOINTS, R.NO_READY_ENDPOINTS})
_PROXY_RULES = frozenset(
    {R.SERVICE_RULES_MISSING, R.NODE_PORT_RULES_MISSING, R.ENDPOINT_RULES_MISSING, R.STALE_ENDPOINT_RULES}
)
_LB_FAILS = frozenset({R.TARGET_TIMEOUT, R.TARGET_FAILED_HEALTH_CHECKS, R.TARGET_RESPONSE_CODE_MISMATCH})
_LB_CANNOT_CONNECT = frozenset({R.TARGET_TIMEOUT, R.TARGET_FAILED_HEALTH_CHECKS})
_LB_WAITS = frozenset({R.ELB_INITIAL_HEALTH_CHECKING})  # stuck registering: its first checks fail
_PATH_LOST = frozenset({R.TIMEOUT, R.HOST_UNREACHABLE, R.CONNECTION_ERROR, R.FLAPPING})
_SG_BLOCKS = frozenset(
    {
        R.HEALTH_CHECK_PORT_NOT_ALLOWED,
        R.NODE_GROUP_TRAFFIC_BLOCKED,
        R.MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS,
        R.NO_CLUSTER_TAGGED_SECURITY_GROUP,
        R.TARGET_INTERFACE_NOT_FOUND,
    }
)
_NET_BLOCKS = frozenset(
    {
        R.NACL_DENIES_HEALTH_CHECK,
        R.NACL_DENIES_RETURN_TRAFFIC,
        R.MISSING_LOCAL_ROUTE,
        R.BLACKHOLE_ROUTE,
        R.ROUTE_NOT_LOCAL,
        R.TARGET_INTERFACE_NOT_FOUND,
    }
)
_LB_PATH = _LB_CANNOT_CONNECT | _LB_WAITS
_LB_ANY = _LB_FAILS | _LB_WAITS
_CONTROLLER_DOWN = (R.CONTROLLER_ACCESS_DENIED, R.CONTROLLER_NOT_READY, R.CONTROLLER_NOT_FOUND)
_ROUTES = ("HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute")  # Gateway API routes own target groups too
_OWNERS = ("Ingress", "Service", "TargetGroupBinding", "IngressGroup", "TargetGroup", *_ROUTES)
_HEALTH_CHECK_MISSES = (R.RESPONSE_CODE_MISMATCH, R.TIMEOUT, R.FLAPPING)  # what a wrong path, code or timeout fails
_ROLLOUT_SETTINGS = (
    R.NO_PRE_STOP_HOOK,
    R.GRACE_PERIOD_SHORTER_THAN_DEREGISTRATION_DELAY,
    R.PRE_STOP_LONGER_THAN_GRACE_PERIOD,
)


@dataclass(frozen=True)
class Rule:
    """``cause`` explains ``effect`` when they share a subject of one of the ``via`` kinds.

    Empty reason sets mean "any reason"; ``*_kinds`` restrict the object kinds (empty: any).
    """

    cause: Check
    cause_reasons: frozenset[Reason]
    effect: Check
    effect_reasons: frozenset[Reason]
    via: tuple[str, ...]
    why: str
    cause_kinds: frozenset[str] = frozenset()
    effect_kinds: frozenset[str] = frozenset()
    cause_statuses: frozenset[Status] = _BAD

    def is_cause(self, result: CheckResult) -> bool:
        return (
            result.check is self.cause
            and result.status in self.cause_statuses
            and (not self.cause_reasons or result.reason in self.cause_reasons)
            and (not self.cause_kinds or result.object.kind in self.cause_kinds)
        )

    def is_effect(self, result: CheckResult) -> bool:
        return (
            result.check is self.effect
            and result.status in _BAD
            and (not self.effect_reasons or result.reason in self.effect_reasons)
            and (not self.effect_kinds or result.object.kind in self.effect_kinds)
        )


def _rule(
    cause: Check,
    reasons: Iterable[Reason],
    effect: Check,
    effect_reasons: Iterable[Reason],
    via: str | tuple[str, ...],
    why: str,
    *,
    cause_kinds: Iterable[str] = (),
    effect_kinds: Iterable[str] = (),
    only_fail: bool = False,
) -> Rule:
    return Rule(
        cause,
        frozenset(reasons),
        effect,
        frozenset(effect_reasons),
        (via,) if isinstance(via, str) else via,
        why,
        frozenset(cause_kinds),
        frozenset(effect_kinds),
        frozenset({Status.FAIL}) if only_fail else _BAD,
    )


C = Check
_ANY: tuple[Reason, ...] = ()
_PROBES = (s.TG_POD, s.TG_NODE)
_NODE = ("Node",)
# The one table. Order matters only between rules with the same effect: the first with a cause wins, so
# the direct explanation (lbdoctor's probe of the same target) comes before the indirect ones.
# fmt: off
RULES: tuple[Rule, ...] = (
    # -- Kubernetes objects ------------------------------------------------------------------------------------
    _rule(C.SELECTOR, (R.NO_PODS_MATCH_SELECTOR, R.SELECTOR_MISSING), C.ENDPOINTS, _NO_ENDPOINTS, s.SERVICE,
          "a selector that matches no pod leaves the Service without endpoints"),
    _rule(C.TARGET_PORT, (R.NAMED_PORT_NOT_FOUND,), C.ENDPOINTS, _NO_ENDPOINTS, s.SERVICE,
          "a named targetPort no pod declares leaves the EndpointSlices without that pod"),
    _rule(C.POD_STATUS, _POD_DOWN, C.ENDPOINTS, _NO_ENDPOINTS, s.POD,
          "pods that are crash-looping, not running or not ready are no ready endpoints (when none is fine)"),
    _rule(C.POD_STATUS, (R.READINESS_GATE_NOT_READY,), C.ENDPOINTS, (R.NO_READY_ENDPOINTS,), s.POD,
          "a pod held back by its load balancer's readiness gate is not a ready endpoint"),
    _rule(C.INGRESS_ANNOTATIONS, _ANY, C.CONTROLLER, (R.RECONCILE_FAILED,), s.MODEL,
          "an invalid annotation makes the controller fail to build the model (FailedBuildModel)", only_fail=True),
    _rule(C.SERVICE_ANNOTATIONS, _ANY, C.CONTROLLER, (R.RECONCILE_FAILED,), s.MODEL,
          "an invalid annotation makes the controller fail to build the model (FailedBuildModel)", only_fail=True),
    _rule(C.GATEWAY_CONFIG, _ANY, C.CONTROLLER, (R.RECONCILE_FAILED,), s.MODEL,
          "an invalid route or TargetGroupConfiguration makes the controller fail to build the model",
          only_fail=True),
    _rule(C.CONTROLLER, _CONTROLLER_DOWN, C.CONTROLLER, (R.RECONCILE_FAILED, R.CONTROLLER_ACCESS_DENIED), s.CONTROLLER,
          "a controller denied by IAM (or not running) fails to reconcile the objects it reports failures on",
          cause_kinds=("Deployment",), effect_kinds=_OWNERS),
    # -- kube-proxy on a node ------------------------------------------------------------------------------------
    _rule(C.KUBE_PROXY, (R.KUBE_PROXY_UNHEALTHY,), C.KUBE_PROXY, _PROXY_RULES, s.NODE,
          "a kube-proxy that is down leaves its rules stale", cause_kinds=_NODE, only_fail=True),
    _rule(C.KUBE_PROXY, (R.KUBE_PROXY_SYNC_STALE,), C.KUBE_PROXY, _PROXY_RULES, s.NODE,
          "a kube-proxy whose syncs are stuck leaves its rules stale", cause_kinds=_NODE),
    # -- the health check tested by hand (node agents) -------------------------------------------------------------
    _rule(C.POD_STATUS, _POD_DOWN, C.HEALTH_PROBE, _ANY, s.POD,
          "a pod that is crash-looping, not running or not ready fails its health check"),
    _rule(C.TARGET_PORT, (R.TARGET_PORT_NOT_EXPOSED,), C.HEALTH_PROBE, (R.CONNECTION_REFUSED,), s.SERVICE_POD,
          "nothing listens on a targetPort the pod does not declare: the health check is refused"),
    _rule(C.GATEWAY_CONFIG, (R.HEALTH_CHECK_CONFIG_REPLACES_DEFAULT,), C.HEALTH_PROBE, _HEALTH_CHECK_MISSES, s.MODEL,
          "a route's TargetGroupConfiguration replaced the default's whole healthCheckConfig: the route's target "
          "groups check what the merge left (the controller's defaults), not what was meant"),
    _rule(C.KUBE_PROXY, _PROXY_RULES, C.HEALTH_PROBE, _ANY, s.SERVICE_NODE,
          "missing or stale kube-proxy rules break the Service's node path (NodePort) on that node"),
    _rule(C.KUBE_PROXY, (R.KUBE_PROXY_UNHEALTHY, R.KUBE_PROXY_SYNC_STALE), C.HEALTH_PROBE, _ANY, s.NODE,
          "a kube-proxy that is down or stuck breaks every node path (NodePort) on its node",
          cause_kinds=_NODE, only_fail=True),
    _rule(C.SECURITY_GROUPS, (R.NODE_GROUP_TRAFFIC_BLOCKED,), C.HEALTH_PROBE, _PATH_LOST, s.TG_NODE,
          "a node group that does not let another in drops what kube-proxy forwards from its NodePort"),
    _rule(C.SECURITY_GROUPS, _SG_BLOCKS, C.HEALTH_PROBE, _PATH_LOST, s.TG_POD,
          "a pod's own security group (security groups for pods) drops its node's health check too"),
    # -- what the load balancer says -------------------------------------------------------------------------------
    _rule(C.HEALTH_PROBE, (R.RESPONSE_CODE_MISMATCH,), C.ELB_TARGET_HEALTH,
          (R.TARGET_RESPONSE_CODE_MISMATCH, R.ELB_INITIAL_HEALTH_CHECKING), _PROBES,
          "the app answers the health check with a code outside the matcher, to lbdoctor and the LB alike"),
    _rule(C.HEALTH_PROBE, (R.TIMEOUT, R.HOST_UNREACHABLE), C.ELB_TARGET_HEALTH,
          (*_LB_CANNOT_CONNECT, R.ELB_INITIAL_HEALTH_CHECKING), _PROBES,
          "the app answers slower than the health-check timeout (or not at all), to lbdoctor and the LB alike"),
    _rule(C.HEALTH_PROBE, (R.CONNECTION_REFUSED, R.CONNECTION_RESET, R.TLS_ERROR, R.INVALID_RESPONSE,
                           R.CONNECTION_ERROR), C.ELB_TARGET_HEALTH,
          (R.TARGET_FAILED_HEALTH_CHECKS, R.ELB_INITIAL_HEALTH_CHECKING), _PROBES,
          "the app refuses or garbles the health check, to lbdoctor and the LB alike"),
    _rule(C.HEALTH_PROBE, (R.FLAPPING,), C.ELB_TARGET_HEALTH, _LB_FAILS, _PROBES,
          "a flapping target fails the LB's checks in its failing half"),
    _rule(C.HEALTH_PROBE, _ANY, C.ELB_TARGET_HEALTH, (R.PROBE_FAILING_ELB_HEALTHY,), _PROBES,
          "the LB is about to count the failures lbdoctor's probe already sees"),
    _rule(C.SECURITY_GROUPS, (R.MULTIPLE_CLUSTER_TAGGED_SECURITY_GROUPS, R.NO_CLUSTER_TAGGED_SECURITY_GROUP),
          C.SECURITY_GROUPS, (R.HEALTH_CHECK_PORT_NOT_ALLOWED, R.TRAFFIC_PORT_NOT_ALLOWED), s.ELB_TARGET,
          "without exactly one cluster-tagged security group the controller cannot add the LB's rule"),
    _rule(C.SECURITY_GROUPS, _SG_BLOCKS, C.ELB_TARGET_HEALTH, _LB_PATH, (s.ELB_TARGET, s.TG_NODE),
          "a security group that drops the LB's health checks times them out"),
    _rule(C.NETWORK, _NET_BLOCKS, C.ELB_TARGET_HEALTH, _LB_PATH, s.ELB_TARGET,
          "a network ACL or route that drops the health checks or their answers times them out"),
    _rule(C.KUBE_PROXY, _PROXY_RULES, C.ELB_TARGET_HEALTH, _LB_ANY, s.SERVICE_NODE,
          "the LB reaches an instance target through kube-proxy's NodePort rules on that node"),
    _rule(C.KUBE_PROXY, (R.KUBE_PROXY_UNHEALTHY, R.KUBE_PROXY_SYNC_STALE), C.ELB_TARGET_HEALTH, _LB_ANY, s.NODE,
          "the LB reaches an instance target through kube-proxy on that node", cause_kinds=_NODE, only_fail=True),
    _rule(C.TRAFFIC_POLICY, (R.EXTERNAL_TRAFFIC_POLICY_LOCAL,), C.ELB_TARGET_HEALTH, _LB_ANY, s.SERVICE_NODE,
          "with externalTrafficPolicy Local, instance targets on nodes without a ready pod fail by design"),
    _rule(C.POD_STATUS, _POD_DOWN, C.ELB_TARGET_HEALTH, _LB_ANY, s.POD,
          "a pod that is crash-looping, not running or not ready fails the LB's health check"),
    _rule(C.TARGET_PORT, (R.TARGET_PORT_NOT_EXPOSED, R.NAMED_PORT_NOT_FOUND), C.ELB_TARGET_HEALTH, _LB_PATH,
          s.SERVICE_POD, "the LB checks a port the pod does not listen on"),
    _rule(C.CONTROLLER, _CONTROLLER_DOWN, C.ELB_TARGET_HEALTH,
          (R.NO_REGISTERED_TARGETS, R.TARGET_NOT_REGISTERED, R.HEALTH_CHECK_DRIFT), s.CONTROLLER,
          "a controller denied by IAM (or not running) cannot register targets or update target groups",
          cause_kinds=("Deployment",)),
    # -- the rollout window --------------------------------------------------------------------------------------------
    _rule(C.ROLLOUT, _ROLLOUT_SETTINGS, C.ROLLOUT, (R.TERMINATED_WHILE_REGISTERED,), s.SERVICE,
          "pods without a preStop delay, or killed before their targets drain, are the targets the LB still sent to"),
    # -- the readiness gate the controller sets from the LB's verdict ------------------------------------------------
    _rule(C.ELB_TARGET_HEALTH, (*_LB_FAILS, R.ELB_INITIAL_HEALTH_CHECKING), C.POD_STATUS,
          (R.READINESS_GATE_NOT_READY,), s.POD,
          "the controller holds a pod's readiness gate False while the LB does not count the target healthy"),
)
# fmt: on

_BY_EFFECT: dict[Check, tuple[Rule, ...]] = {
    check: tuple(rule for rule in RULES if rule.effect is check) for check in Check
}
_CAUSE_CHECKS = frozenset(rule.cause for rule in RULES)


_SEVERITY = {status: -status.severity for status in Status}


def _rank(result: CheckResult) -> tuple[int, int, str, str, str, str, str, str]:
    """Which of several causes a rule found wins: the worst, the earliest in the runbook, then a stable order."""
    ref, target = result.object, result.target
    where = "" if target is None else f"{target.pod}|{target.ip}|{target.port}"
    reason = result.reason.value if result.reason is not None else ""
    return (
        _SEVERITY[result.status],
        position(result.check),
        ref.kind,
        ref.namespace,
        ref.name,
        where,
        reason,
        result.node or "",
    )


def _index(results: Iterable[CheckResult]) -> dict[tuple[Check, str, str], list[CheckResult]]:
    index: dict[tuple[Check, str, str], list[CheckResult]] = defaultdict(list)
    for result in results:
        if result.check in _CAUSE_CHECKS and _bad(result):
            for kind, ident in result.about:
                index[(result.check, kind, ident)].append(result)
    return index


def _candidates(
    effect: CheckResult, rule: Rule, index: dict[tuple[Check, str, str], list[CheckResult]]
) -> Iterable[CheckResult]:
    for kind, ident in effect.about:
        if kind in rule.via:
            for cause in index.get((rule.cause, kind, ident), ()):
                if cause is not effect and rule.is_cause(cause):
                    yield cause


def explained_by(effect: CheckResult, pool: Iterable[CheckResult]) -> CheckResult | None:
    """The cause the rules would give ``effect`` among ``pool`` (no cycle check): for a message that must
    say whether lbdoctor found an explanation."""
    index = _index(pool)
    for rule in _BY_EFFECT[effect.check]:
        if rule.is_effect(effect):
            found = sorted(_candidates(effect, rule, index), key=_rank)
            if found:
                return found[0]
    return None


def _bad(result: CheckResult) -> bool:
    status = result.status  # identity tests: an enum's hash is Python code, and this runs per result
    return status is Status.FAIL or status is Status.WARN


def link(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Every result, each failing or warning one linked to its cause when a rule finds one.

    A result that already names a cause present in ``results`` keeps it (a node agent's link, read back
    by the cluster role); one naming an absent cause is judged afresh. Only failing and warning results
    take part, so a round of 100,000 results, nearly all passing, costs one pass over their statuses.
    """
    results = list(results)
    fail, warn = Status.FAIL, Status.WARN  # inlined: this is the one pass over every result
    positions = [at for at, result in enumerate(results) if result.status is fail or result.status is warn]
    for at, result in zip(positions, _link_bad([results[at] for at in positions]), strict=True):
        results[at] = result
    return results


def _link_bad(bad: list[CheckResult], keys: list[ResultKey] | None = None) -> list[CheckResult]:
    """Link failing and warning results. Works on positions, not keys: a key is built and hashed once per
    result (hashing it runs Python code for each enum in it), and a round may hold thousands of failures.
    ``keys``: the results' keys, when the caller has them."""
    keys = keys if keys is not None else [result.key for result in bad]
    first: dict[ResultKey, int] = {}
    for at, key in enumerate(keys):
        first.setdefault(key, at)  # the same result twice (a pod behind two Services) is one node
    canonical = [first[key] for key in keys]
    parent = [-1] * len(bad)
    for at, result in enumerate(bad):
        if canonical[at] == at and result.caused_by is not None:
            cause = first.get(result.caused_by, -1)
            if cause != -1 and cause != at:
                parent[at] = cause
    index: dict[tuple[Check, str, str], list[int]] = defaultdict(list)
    for at, result in enumerate(bad):
        if canonical[at] == at and result.check in _CAUSE_CHECKS:
            for kind, ident in result.about:
                index[(result.check, kind, ident)].append(at)
    ranks = [_rank(result) for result in bad]

    def reaches(start: int, goal: int) -> bool:
        steps = 0
        while start != -1 and steps <= len(bad):
            if start == goal:
                return True
            start, steps = parent[start], steps + 1
        return False

    fresh = [False] * len(bad)
    effects = sorted((at for at in range(len(bad)) if canonical[at] == at and parent[at] == -1), key=ranks.__getitem__)
    for at in effects:
        effect = bad[at]
        for rule in _BY_EFFECT[effect.check]:
            if not rule.is_effect(effect):
                continue
            found = [
                cause
                for kind, ident in effect.about
                if kind in rule.via
                for cause in index.get((rule.cause, kind, ident), ())
                if cause != at and rule.is_cause(bad[cause]) and not reaches(cause, at)
            ]
            if found:
                parent[at] = min(found, key=ranks.__getitem__)
                fresh[at] = True
                break
    linked = []
    for at, result in enumerate(bad):
        node = canonical[at]
        cause = parent[node]
        if cause == -1:
            linked.append(_linked(result, None, result.remedy) if result.caused_by is not None else result)
        elif fresh[node]:
            root = cause
            steps = 0
            while parent[root] != -1 and steps < len(bad):
                root, steps = parent[root], steps + 1
            linked.append(_linked(result, keys[cause], pointer(bad[cause], bad[root])))
        else:
            linked.append(result)
    return linked


def _linked(result: CheckResult, caused_by: ResultKey | None, remedy: str) -> CheckResult:
    """``replace(result, caused_by=…, remedy=…)``, spelled out: dataclasses.replace introspects every call."""
    return CheckResult(
        result.check,
        result.status,
        result.reason,
        result.object,
        result.message,
        remedy,
        result.target,
        caused_by,
        result.node,
        result.about,
    )


def link_round(own: Sequence[CheckResult], imported: Sequence[CheckResult]) -> list[CheckResult]:
    """This process's results linked together with another role's (the node agents' findings, as the cluster
    role reads them): every own result, then every imported one, the failing and warning ones linked with
    the own ones (as a cause up the chain, or as an effect). An imported result with the key of an own one is
    the same finding: own wins; the same imported finding twice (two agents) is one."""
    fail, warn = Status.FAIL, Status.WARN  # inlined: this is the one pass over every result
    positions = [at for at, result in enumerate(own) if result.status is fail or result.status is warn]
    own_bad = [own[at] for at in positions]
    keys = [result.key for result in own_bad]
    seen = {result.key for result in own}
    theirs_in: list[CheckResult] = []
    theirs_other: list[CheckResult] = []
    for result in imported:
        key = result.key
        if key in seen:
            continue
        seen.add(key)
        if result.status is fail or result.status is warn:
            theirs_in.append(result)
            keys.append(key)
        else:
            theirs_other.append(result)
    linked = _link_bad([*own_bad, *theirs_in], keys)
    mine = list(own)
    for at, result in zip(positions, linked, strict=False):
        mine[at] = result
    return [*mine, *linked[len(own_bad) :], *theirs_other]


def describe(result: CheckResult) -> str:
    """``security_groups HealthCheckPortNotAllowed on Ingress shop/web (pod web-1)``"""
    ref = result.object
    where = f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"
    detail = []
    if result.target is not None and result.target.pod and ref.kind != "Pod":
        detail.append(f"pod {result.target.pod}")
    elif result.target is not None and result.target.ip and ref.kind not in ("Pod", "Node"):
        detail.append(f"{result.target.ip}:{result.target.port}" if result.target.port else result.target.ip)
    if result.node and ref.kind != "Node":
        detail.append(f"node {result.node}")
    reason = f" {result.reason.value}" if result.reason else ""
    return f"{result.check.value}{reason} on {where}" + (f" ({', '.join(detail)})" if detail else "")


def pointer(cause: CheckResult, root: CheckResult) -> str:
    """The remedy of an effect: its cause, the root of the chain when that is further up, and the root's fix."""
    text = f"caused by {describe(cause)}"
    if root.key != cause.key:
        text += f", which follows from {describe(root)}"
    return f"{text}: {root.remedy}" if root.remedy else f"{text}; fix that first"


def order(results: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    """Roots first, each followed by the results that follow from it; failing before warning before
    unknown before passing, in runbook order within. Duplicates (the same verdict on the same object
    reached twice, e.g. a pod behind two Services) are dropped."""

    def key(result: CheckResult) -> tuple[int, int, str, str]:
        target = result.target.pod or "" if result.target else ""
        return (-result.status.severity, position(result.check), str(result.object), target)

    unique: dict[tuple[object, ...], CheckResult] = {}
    for result in results:
        unique.setdefault((result.key, result.status), result)
    ranked = sorted(unique.values(), key=key)
    present = {result.key for result in ranked}
    followers: dict[object, list[CheckResult]] = {}
    roots: list[CheckResult] = []
    for result in ranked:
        if result.caused_by is not None and result.caused_by in present and result.caused_by != result.key:
            followers.setdefault(result.caused_by, []).append(result)
        else:
            roots.append(result)
    ordered: list[CheckResult] = []
    seen: set[int] = set()

    def emit(result: CheckResult) -> None:
        if id(result) in seen:
            return
        seen.add(id(result))
        ordered.append(result)
        for follower in followers.pop(result.key, []):
            emit(follower)

    for root in roots:
        emit(root)
    for remaining in followers.values():  # a cycle of causes (link() never makes one): keep them anyway
        for result in remaining:
            emit(result)
    return tuple(ordered)
