"""Instance targets are also probed the way the load balancer reaches them: NODE_IP:nodePort through kube-proxy."""

from __future__ import annotations

from exporter.checks.health_probe import verdict
from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import NodeTargets, ProbeDefaults, TargetStatus, node_targets
from exporter.model.objects import Node, NodeAddress, ObjectMeta, ServicePort
from exporter.model.probe import ProbeOutcome
from exporter.model.results import Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import ALB_CLASS, NODE, ingress, nlb, pod, service

NODE_IP = "10.0.1.23"
THIS_NODE = Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", NODE_IP),))
INSTANCE = {ann.NLB_TARGET_TYPE: "instance"}


def targets(snapshot: ClusterSnapshot) -> NodeTargets:
    return node_targets(build_plan(snapshot, ControllerConfig()), snapshot, NODE)


def test_cluster_policy_instance_target_is_probed_at_the_node_port_and_at_the_pod() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb(annotations=INSTANCE)], pods=[pod()], nodes=[THIS_NODE])
    by_pod = {t.pod: t for t in targets(snapshot).targets}
    assert set(by_pod) == {"", "web-1"}
    node_path = by_pod[""]
    assert (node_path.request.ip, node_path.request.port, node_path.request.protocol) == (NODE_IP, 30080, "TCP")
    assert node_path.node_path and node_path.ref.pod is None
    assert node_path.labels == ("shop", "web", "", NODE, "nlb", "30080", "", "service/web")
    assert by_pod["web-1"].request.ip == "10.0.0.1"


def test_every_node_probes_the_node_port_even_without_a_pod_of_its_own() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb(annotations=INSTANCE)], pods=[pod(node="node-b")], nodes=[THIS_NODE])
    assert [(t.pod, t.request.port) for t in targets(snapshot).targets] == [("", 30080)]


def test_local_policy_is_checked_at_the_health_check_node_port_where_pods_run() -> None:
    local = nlb(annotations=INSTANCE, external_traffic_policy="Local", health_check_node_port=32000)
    snapshot = ClusterSnapshot.of(services=[local], pods=[pod()], nodes=[THIS_NODE])
    [target] = targets(snapshot).targets  # the pod itself is not what the LB checks
    assert (target.request.protocol, target.request.ip, target.request.port, target.request.path) == (
        "HTTP",
        NODE_IP,
        32000,
        "/healthz",
    )
    elsewhere = ClusterSnapshot.of(services=[local], pods=[pod(node="node-b")], nodes=[THIS_NODE])
    assert targets(elsewhere).targets == ()  # 503 there is by design, not a fault


def test_alb_instance_target_uses_the_backend_node_port() -> None:
    alb = ingress(annotations={ann.ALB_TARGET_TYPE: "instance", ann.ALB_HC_PATH: "/ready"})
    svc = service(type="NodePort", ports=(ServicePort("http", 80, 8080, node_port=31500),))
    snapshot = ClusterSnapshot.of(
        services=[svc], ingresses=[alb], ingress_classes=[ALB_CLASS], pods=[pod()], nodes=[THIS_NODE]
    )
    node_path = [t for t in targets(snapshot).targets if t.node_path]
    assert [(t.request.ip, t.request.port, t.request.path, t.lb) for t in node_path] == [
        (NODE_IP, 31500, "/ready", "alb")
    ]


def test_no_node_path_without_the_node_address_ip_targets_or_node_ports() -> None:
    assert all(t.pod for t in targets(ClusterSnapshot.of(services=[nlb(annotations=INSTANCE)], pods=[pod()])).targets)
    ip_targets = ClusterSnapshot.of(services=[nlb()], pods=[pod()], nodes=[THIS_NODE])
    assert all(t.pod for t in targets(ip_targets).targets)
    no_ports = nlb(annotations=INSTANCE, ports=(ServicePort("http", 80, 8080),), allocate_node_ports=False)
    assert all(t.pod for t in targets(ClusterSnapshot.of(services=[no_ports], pods=[pod()], nodes=[THIS_NODE])).targets)


def test_a_failing_node_path_points_at_kube_proxy() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb(annotations=INSTANCE)], pods=[pod()], nodes=[THIS_NODE])
    [node_path] = [t for t in targets(snapshot).targets if t.node_path]
    status = TargetStatus(node_path, ProbeOutcome(False, Reason.CONNECTION_REFUSED, 0.001, detail="connection refused"))
    result = verdict(status, 0.0)
    assert result.status is Status.WARN and result.target is not None and result.target.pod is None
    assert f"node {NODE} through kube-proxy" in result.message
    assert "kube_proxy results for node" in result.remedy


def test_node_path_probing_can_be_turned_off() -> None:
    snapshot = ClusterSnapshot.of(services=[nlb(annotations=INSTANCE)], pods=[pod()], nodes=[THIS_NODE])
    found = node_targets(build_plan(snapshot, ControllerConfig()), snapshot, NODE, ProbeDefaults(node_path=False))
    assert [t.pod for t in found.targets] == ["web-1"]
