"""kube-proxy's rules as a cause, on real rules: iptables rules loaded into a network namespace the test
makes and read back with the real ``iptables-save``, and the node agent's real probe of the node path
(``NODE_IP:nodePort``, a loopback address here where nothing forwards)."""

from __future__ import annotations

from dataclasses import replace

from exporter.checks import NodeContext, evaluate_node
from exporter.dataplane.offline import dataplane_report
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import TargetStatus, node_targets
from exporter.lb.thresholds import PredictedHealth
from exporter.model.objects import ContainerPort, ContainerStatus, Node, NodeAddress, ObjectMeta, Pod
from exporter.model.results import Check, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.probes import probe_tcp
from tests.conftest import next_ip
from tests.dataplane.conftest import Netns
from tests.dataplane.generator import NODE, Ep, Svc, api_objects, iptables_restore

NLB_INSTANCE = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "instance",
}


async def test_missing_node_port_rules_explain_the_failing_node_path(netns: Netns) -> None:
    node_ip, pod_ip = next_ip(), next_ip()
    web = Svc("web", "172.20.0.10", (Ep(pod_ip, pod="web-1"),), node_port=30080, load_balancer=True)
    netns.restore(iptables_restore([replace(web, no_node_port=True)], aws=False), "nft")
    dump = netns.run(["iptables-nft-save"])
    services, slices = api_objects([web])
    service = replace(services[0], meta=replace(services[0].meta, annotations=NLB_INSTANCE))
    snapshot = ClusterSnapshot.of(
        services=[service],
        endpoint_slices=slices,
        nodes=[Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", node_ip),))],
        pods=[
            Pod(
                ObjectMeta("shop", "web-1", labels={"app": "web"}),
                node_name=NODE,
                phase="Running",
                pod_ip=pod_ip,
                ports=(ContainerPort("http", 8080),),
                container_statuses=(ContainerStatus("app", True),),
            )
        ],
    )
    plan = build_plan(snapshot, ControllerConfig())
    targets = node_targets(plan, snapshot, NODE)
    [node_path] = [t for t in targets.targets if t.node_path]
    assert (node_path.request.ip, node_path.request.port) == (node_ip, 30080)
    statuses = []
    for target in targets.targets:  # the real TCP check, three times (NLB thresholds 3/3)
        health, outcome = PredictedHealth(), None
        for _ in range(3):
            outcome = await probe_tcp(target.request)
            health = health.after(outcome.success, target.thresholds)
        assert outcome is not None
        statuses.append(TargetStatus(target, outcome, 1000.0, health, outcome))
    report = dataplane_report(snapshot, NODE, iptables_save=dump, now=1000.0)
    results = evaluate_node(NodeContext(NODE, snapshot, plan, targets, tuple(statuses), 1000.0, report))

    [rules] = [r for r in results if r.check is Check.KUBE_PROXY and r.status is Status.FAIL]
    assert (rules.reason, rules.object.name, rules.node) == (Reason.NODE_PORT_RULES_MISSING, "web", NODE)
    probes = {r.target.pod if r.target else None: r for r in results if r.check is Check.HEALTH_PROBE}
    assert probes[None].reason is Reason.CONNECTION_REFUSED and probes[None].caused_by == rules.key
    assert probes[None].remedy.startswith(f"caused by kube_proxy NodePortRulesMissing on Service shop/web (node {NODE})")
    # The pod itself is probed directly, not through kube-proxy: its failure is not blamed on the rules.
    assert probes["web-1"].status is not Status.OK and probes["web-1"].caused_by is None
    # Roots first: the rule comes before the probe it explains.
    keys = [r.key for r in results]
    assert keys.index(rules.key) < keys.index(probes[None].key)
