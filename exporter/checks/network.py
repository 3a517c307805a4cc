"""Runbook step "NACLs and route tables": the subnet-level path between the load balancer and each target.

Network ACLs are stateless, so both directions need rules. For each LB subnet and each target in
another subnet (NACLs do not filter traffic inside one subnet):

1. the LB subnet lets out the traffic and health-check ports to the target;
2. the target subnet lets them in from the LB subnet;
3. the target subnet lets the answers out to the LB subnet's ephemeral ports (1024-65535);
4. the LB subnet lets those answers in.

Route tables: each side reaches the other through the ``local`` route (longest prefix), with no
blackhole on the way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.aws.model import ApiProblem, LoadBalancer, NetworkAcl, ProblemKind, RouteTable, Subnet, Topic
from exporter.aws.netrules import (
    EPHEMERAL_PORTS,
    NaclVerdict,
    RouteProblem,
    RouteVerdict,
    contains,
    evaluate_nacl,
    protocol_name,
    route_to,
    uniform_over,
)
from exporter.checks.aws_context import AwsContext, Landing, TargetView, Unresolved, lb_flows, problem_result
from exporter.checks.context import Scope
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, Reason, Status

CHECK = Check.NETWORK


@dataclass
class _Memo:
    """NACL and route answers repeat across thousands of targets in a few subnets: compute each once.

    A target's address gets its subnet's verdict when no rule (or route) splits the subnet, which is
    the common case; otherwise the address is evaluated on its own. Exact either way.
    """

    nacl: dict[tuple[str, bool, str, int, tuple[int, int]], NaclVerdict] = field(default_factory=dict)
    routes: dict[tuple[str, str], RouteVerdict] = field(default_factory=dict)
    uniform: dict[tuple[str, bool | None, str], bool] = field(default_factory=dict)

    def evaluate(self, acl: NetworkAcl, egress: bool, peer: str, protocol: int, ports: tuple[int, int]) -> NaclVerdict:
        key = (acl.id, egress, peer, protocol, ports)
        found = self.nacl.get(key)
        if found is None:
            found = evaluate_nacl(acl, egress=egress, peer=peer, protocol=protocol, ports=ports)
            self.nacl[key] = found
        return found

    def _uniform(self, owner: str, egress: bool | None, cidrs: list[str], block: str | None) -> bool:
        if block is None:
            return False
        key = (owner, egress, block)
        found = self.uniform.get(key)
        if found is None:
            found = uniform_over(cidrs, block)
            self.uniform[key] = found
        return found

    def host(
        self, acl: NetworkAcl, egress: bool, ip: str, block: str | None, protocol: int, ports: tuple[int, int]
    ) -> NaclVerdict:
        """The verdict for one address inside ``block`` (its subnet's CIDR of the same family)."""
        cidrs = [e.cidr for e in acl.entries if e.egress == egress]
        peer = block if block is not None and self._uniform(acl.id, egress, cidrs, block) else ip
        return self.evaluate(acl, egress, peer, protocol, ports)

    def route(self, table: RouteTable, destination: str, block: str | None) -> RouteVerdict:
        cidrs = [r.destination for r in table.routes if r.destination]
        if block is not None and self._uniform(table.id, None, cidrs, block):
            destination = block
        key = (table.id, destination)
        found = self.routes.get(key)
        if found is None:
            found = route_to(table, destination)
            self.routes[key] = found
        return found


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    return () if scope.aws is None else evaluate_aws(scope.aws)


def evaluate_aws(context: AwsContext) -> Iterable[CheckResult]:
    memo = _Memo()
    for view in context.targets:
        group = view.group.group
        if group is not None and not group.supported:
            continue
        yield from target_results(context, view, memo)


def _result(view: TargetView, status: Status, reason: Reason | None, message: str, remedy: str = "") -> CheckResult:
    about = (view.elb_target,) if subjects.linkable(status) else ()
    return CheckResult(CHECK, status, reason, view.owner, message, remedy, target=view.ref, about=about)


def target_results(context: AwsContext, view: TargetView, memo: _Memo | None = None) -> list[CheckResult]:
    memo = memo or _Memo()
    what = f"the network path to {view.describe()} in {view.group.label}"
    lbs, problem = context.load_balancers(view.group)
    if problem is not None:
        return [problem_result(CHECK, view.owner, problem, what, view.ref)]
    if not lbs:
        return []
    landing = context.landing(view)
    if isinstance(landing, Unresolved):
        return [_result(view, landing.status, landing.reason, landing.message, landing.remedy)]
    if not isinstance(landing, Landing):
        return [problem_result(CHECK, view.owner, landing, what, view.ref)]
    findings: list[CheckResult] = []
    checked = 0
    for lb in lbs:
        subnets, subnet_problem = context.subnets_of(lb)
        if subnet_problem is not None:
            return [problem_result(CHECK, view.owner, subnet_problem, what, view.ref)]
        for subnet in subnets:
            outcome = _path(context, view, landing, lb, subnet, memo)
            if isinstance(outcome, ApiProblem):
                return [problem_result(CHECK, view.owner, outcome, what, view.ref)]
            checked += 1 if outcome is not None else 0
            findings.extend(outcome or ())
    if findings:
        return findings
    return [
        _result(
            view,
            Status.OK,
            None,
            f"{what}: NACLs and routes allow it both ways from {checked} load-balancer subnet(s)",
        )
    ]


def _path(
    context: AwsContext, view: TargetView, landing: Landing, lb: LoadBalancer, lb_subnet: Subnet, memo: _Memo
) -> list[CheckResult] | ApiProblem | None:
    """Findings for one LB subnet; None when the subnet has no address of the target's family."""
    v6 = ":" in landing.ip
    sources = [c for c in lb_subnet.cidrs if (":" in c) == v6]
    if not sources:
        return None
    source = sources[0]
    findings: list[CheckResult] = []
    if lb_subnet.id != landing.subnet.id:
        acls = _acls(context, lb_subnet, landing.subnet)
        if isinstance(acls, ApiProblem):
            return acls
        findings.extend(_nacl_findings(view, landing, lb, lb_subnet, source, acls, memo))
    tables = _tables(context, lb_subnet, landing.subnet)
    if isinstance(tables, ApiProblem):
        return tables
    findings.extend(_route_findings(view, landing, lb_subnet, source, tables, memo))
    return findings


def _acls(context: AwsContext, lb_subnet: Subnet, target_subnet: Subnet) -> tuple[NetworkAcl, NetworkAcl] | ApiProblem:
    lb_acl, target_acl = context.aws.nacl_of(lb_subnet.id), context.aws.nacl_of(target_subnet.id)
    if lb_acl is None or target_acl is None:
        unseen = lb_subnet.id if lb_acl is None else target_subnet.id
        return context.aws.problem(Topic.NETWORK_ACLS) or ApiProblem(
            "ec2:DescribeNetworkAcls", ProblemKind.NOT_FOUND, f"no network ACL is associated with {unseen}"
        )
    return lb_acl, target_acl


def _tables(
    context: AwsContext, lb_subnet: Subnet, target_subnet: Subnet
) -> tuple[RouteTable, RouteTable] | ApiProblem:
    lb_table = context.aws.route_table_of(lb_subnet.id, lb_subnet.vpc_id)
    target_table = context.aws.route_table_of(target_subnet.id, target_subnet.vpc_id)
    if lb_table is None or target_table is None:
        unseen = lb_subnet.id if lb_table is None else target_subnet.id
        return context.aws.problem(Topic.ROUTE_TABLES) or ApiProblem(
            "ec2:DescribeRouteTables", ProblemKind.NOT_FOUND, f"no route table applies to {unseen}"
        )
    return lb_table, target_table


def _block_of(landing: Landing) -> str | None:
    """The target subnet's CIDR that holds the target's address."""
    return next((c for c in landing.subnet.cidrs if contains(c, landing.ip)), None)


def _rule(verdict: NaclVerdict) -> str:
    return f"rule {verdict.rule}" if verdict.rule is not None else "the final * rule (deny)"


def _nacl_findings(
    view: TargetView,
    landing: Landing,
    lb: LoadBalancer,
    lb_subnet: Subnet,
    source: str,
    acls: tuple[NetworkAcl, NetworkAcl],
    memo: _Memo,
) -> list[CheckResult]:
    lb_acl, target_acl = acls
    block = _block_of(landing)
    findings = []
    returned: set[int] = set()
    for kind, protocol, port in lb_flows(view, lb, by_security_group=False):
        reason = Reason.NACL_DENIES_HEALTH_CHECK if kind == "health-check" else Reason.NACL_DENIES_TRAFFIC
        flow = f"{protocol_name(protocol)} {port} ({kind})"
        out_of_lb = memo.host(lb_acl, True, landing.ip, block, protocol, (port, port))
        if not out_of_lb.allowed:
            findings.append(
                _result(
                    view,
                    Status.FAIL,
                    reason,
                    f"{view.describe()}: network ACL {lb_acl.id} of load-balancer subnet {lb_subnet.id} denies "
                    f"outbound {flow} to {landing.ip} ({_rule(out_of_lb)}: {out_of_lb.denied})",
                    f"add an outbound allow rule to {lb_acl.id} for {flow} to {landing.subnet.cidr or landing.ip}, "
                    f"numbered below any deny",
                )
            )
        into_target = memo.evaluate(target_acl, False, source, protocol, (port, port))
        if not into_target.allowed:
            findings.append(
                _result(
                    view,
                    Status.FAIL,
                    reason,
                    f"{view.describe()}: network ACL {target_acl.id} of target subnet {landing.subnet.id} denies "
                    f"inbound {flow} from load-balancer subnet {source} ({_rule(into_target)}: {into_target.denied})",
                    f"add an inbound allow rule to {target_acl.id} for {flow} from {source}, numbered below any deny",
                )
            )
        if protocol in returned:
            continue
        returned.add(protocol)
        back_out = memo.evaluate(target_acl, True, source, protocol, EPHEMERAL_PORTS)
        back_in = memo.host(lb_acl, False, landing.ip, block, protocol, EPHEMERAL_PORTS)
        for acl, verdict, where, direction in (
            (target_acl, back_out, f"target subnet {landing.subnet.id}", f"outbound to {source}"),
            (lb_acl, back_in, f"load-balancer subnet {lb_subnet.id}", f"inbound from {landing.ip}"),
        ):
            if verdict.allowed:
                continue
            findings.append(
                _result(
                    view,
                    Status.FAIL,
                    Reason.NACL_DENIES_RETURN_TRAFFIC,
                    f"{view.describe()}: network ACL {acl.id} of {where} denies the answers, {direction} on "
                    f"{protocol_name(protocol)} {EPHEMERAL_PORTS[0]}-{EPHEMERAL_PORTS[1]} ({_rule(verdict)}: "
                    f"{verdict.denied}); NACLs are stateless, so replies need their own rule",
                    f"allow {direction} {protocol_name(protocol)} 1024-65535 in {acl.id}, numbered below any deny",
                )
            )
    return findings


def _route_findings(
    view: TargetView,
    landing: Landing,
    lb_subnet: Subnet,
    source: str,
    tables: tuple[RouteTable, RouteTable],
    memo: _Memo,
) -> list[CheckResult]:
    lb_table, target_table = tables
    block = _block_of(landing)
    findings = []
    for table, where, destination, inside, meaning in (
        (
            lb_table,
            f"load-balancer subnet {lb_subnet.id}",
            landing.ip,
            block,
            "the load balancer's packets to the target",
        ),
        (target_table, f"target subnet {landing.subnet.id}", source, None, "the target's answers to the load balancer"),
    ):
        verdict = memo.route(table, destination, inside)
        if verdict.problem is None:
            continue
        if verdict.problem is RouteProblem.MISSING_LOCAL:
            findings.append(
                _result(
                    view,
                    Status.FAIL,
                    Reason.MISSING_LOCAL_ROUTE,
                    f"{view.describe()}: route table {table.id} of {where} has no local route covering "
                    f"{destination}, so {meaning} leave the VPC's local routing",
                    f"restore the local route for the VPC CIDR in {table.id}",
                )
            )
        elif verdict.problem is RouteProblem.BLACKHOLE:
            route = verdict.route
            findings.append(
                _result(
                    view,
                    Status.FAIL,
                    Reason.BLACKHOLE_ROUTE,
                    f"{view.describe()}: route table {table.id} of {where} sends {meaning} to a blackhole "
                    f"({route.destination if route else '?'} via {route.target if route else '?'}, whose target "
                    f"no longer exists)",
                    f"delete or replace the blackhole route in {table.id}",
                )
            )
        else:
            route = verdict.route
            findings.append(
                _result(
                    view,
                    Status.WARN,
                    Reason.ROUTE_NOT_LOCAL,
                    f"{view.describe()}: route table {table.id} of {where} sends {meaning} through "
                    f"{route.target if route else '?'} ({route.destination if route else '?'}), not the local "
                    f"route; that appliance must let health checks through",
                    "check the appliance's rules, or remove the more specific route",
                )
            )
    return findings
