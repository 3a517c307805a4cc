"""The cluster role's object checks as pure functions of a snapshot."""

from __future__ import annotations

from exporter.checks import controller, endpoints, selector, traffic_policy
from exporter.checks.cluster import evaluate_cluster
from exporter.checks.controller import ControllerLocation, denial
from exporter.lb.healthcheck import ControllerConfig
from exporter.model.objects import (
    Deployment,
    Endpoint,
    EndpointSlice,
    IngressClass,
    KubeEvent,
    Node,
    ObjectMeta,
    ServicePort,
)
from exporter.model.results import Check, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot
from tests.builders import ALB_CLASS, ingress, nlb, pod, service

WHERE = ControllerLocation()
ELB_DENIED = (
    '{"level":"error","msg":"Reconciler error","error":"operation error Elastic Load Balancing v2: '
    "RegisterTargets, https response error StatusCode: 403, api error AccessDenied: User: "
    "arn:aws:sts::1:assumed-role/r/s is not authorized to perform: elasticloadbalancing:RegisterTargets because "
    'no identity-based policy allows it"}'
)
EC2_DENIED = (
    '{"level":"error","msg":"Reconciler error","error":"operation error EC2: DescribeSecurityGroups, https response '
    'error StatusCode: 403, api error UnauthorizedOperation: You are not authorized to perform this operation."}'
)


def slice_of(service: str, *endpoints_: Endpoint, namespace: str = "shop") -> EndpointSlice:
    return EndpointSlice(
        ObjectMeta(namespace, f"{service}-abc", labels={"kubernetes.io/service-name": service}),
        service,
        "IPv4",
        endpoints_,
    )


def node(name: str, **labels: str) -> Node:
    return Node(ObjectMeta("", name, labels=labels), ready=True)


def controller_deployment(ready: int = 2) -> Deployment:
    return Deployment(
        ObjectMeta("kube-system", "aws-load-balancer-controller"),
        2,
        ready,
        ready,
        {"app.kubernetes.io/name": "aws-load-balancer-controller"},
    )


def test_selector_matching_nothing_names_the_near_miss() -> None:
    svc = service("web", selector={"app": "web-1"})
    snapshot = ClusterSnapshot.of(services=[svc], pods=[pod("web-a", app="web"), pod("web-b", app="web")])
    result = selector.verdict(snapshot, svc)
    assert (result.status, result.reason) == (Status.FAIL, Reason.NO_PODS_MATCH_SELECTOR)
    assert "app=web-1" in result.message and "app=web (2)" in result.message


def test_selectorless_service_with_and_without_manual_slices() -> None:
    bare = service("ext", selector={})
    assert selector.verdict(ClusterSnapshot.of(services=[bare]), bare).reason is Reason.SELECTOR_MISSING
    manual = ClusterSnapshot.of(services=[bare], endpoint_slices=[slice_of("ext", Endpoint(("10.0.0.9",)))])
    assert selector.verdict(manual, bare).status is Status.OK


def test_forbidden_pods_make_the_selector_unknown() -> None:
    svc = service()
    result = selector.verdict(ClusterSnapshot.of(services=[svc], forbidden=["pods"]), svc)
    assert (result.status, result.reason) == (Status.UNKNOWN, Reason.FORBIDDEN)
    assert "RBAC forbids listing pods" in result.message


def test_endpoints_none_and_none_ready() -> None:
    svc = service()
    empty = endpoints.verdict(ClusterSnapshot.of(services=[svc]), svc)
    assert empty.reason is Reason.NO_ENDPOINTS
    not_ready = ClusterSnapshot.of(
        services=[svc], endpoint_slices=[slice_of("web", Endpoint(("10.0.0.1",), ready=False, pod_name="web-1"))]
    )
    result = endpoints.verdict(not_ready, svc)
    assert result.reason is Reason.NO_READY_ENDPOINTS and "web-1" in result.message
    mixed = ClusterSnapshot.of(
        services=[svc],
        endpoint_slices=[slice_of("web", Endpoint(("10.0.0.1",), ready=False), Endpoint(("10.0.0.2",), ready=None))],
    )
    assert endpoints.verdict(mixed, svc).status is Status.OK  # ready unset counts as ready (kube-proxy, LBC)


def test_traffic_policy_local_with_instance_targets() -> None:
    svc = nlb(external_traffic_policy="Local", health_check_node_port=31000)
    nodes = [node("a"), node("b"), node("c"), node("fargate-1", **{"eks.amazonaws.com/compute-type": "fargate"})]
    snapshot = ClusterSnapshot.of(
        services=[svc], nodes=nodes, endpoint_slices=[slice_of("web", Endpoint(("10.0.0.1",), node_name="a"))]
    )
    result = traffic_policy.verdict(snapshot, svc, {"instance"})
    assert result is not None
    assert (result.status, result.reason) == (Status.WARN, Reason.EXTERNAL_TRAFFIC_POLICY_LOCAL)
    assert "2 of 3 nodes" in result.message and "fargate" not in result.message
    assert traffic_policy.verdict(snapshot, svc, {"ip"}).status is Status.OK  # type: ignore[union-attr]
    nowhere = ClusterSnapshot.of(services=[svc], nodes=nodes)
    assert traffic_policy.verdict(nowhere, svc, {"instance"}).status is Status.FAIL  # type: ignore[union-attr]
    assert traffic_policy.verdict(snapshot, nlb(), {"instance"}) is None


def test_denial_lines_name_the_action_when_aws_does() -> None:
    assert denial(ELB_DENIED) == "elasticloadbalancing:RegisterTargets"
    assert denial(EC2_DENIED) is not None and denial(EC2_DENIED).startswith("EC2 DescribeSecurityGroups")  # type: ignore[union-attr]
    assert denial('{"msg":"successfully deployed model"}') is None


def test_controller_found_ready_denied() -> None:
    logs = {"kube-system/alb-ctrl-1": "\n".join(["ok line", ELB_DENIED, EC2_DENIED])}
    snapshot = ClusterSnapshot.of(deployments=[controller_deployment()], controller_logs=logs)
    results = controller.health(snapshot, WHERE, lb_objects=3)
    assert results[0].status is Status.OK
    denied = [r for r in results if r.reason is Reason.CONTROLLER_ACCESS_DENIED]
    assert {r.message.split(" (pod")[0] for r in denied} == {
        "the controller was denied elasticloadbalancing:RegisterTargets",
        "the controller was denied EC2 DescribeSecurityGroups (AWS does not name the IAM action for EC2 denials)",
    }


def test_controller_missing_not_ready_and_unreadable_logs() -> None:
    missing = controller.health(ClusterSnapshot.of(), WHERE, lb_objects=2)[0]
    assert (missing.status, missing.reason) == (Status.FAIL, Reason.CONTROLLER_NOT_FOUND)
    down = controller.health(ClusterSnapshot.of(deployments=[controller_deployment(ready=0)]), WHERE, 1)[0]
    assert (down.status, down.reason) == (Status.FAIL, Reason.CONTROLLER_NOT_READY)
    hidden = ClusterSnapshot(controller_logs_error="pods/log is forbidden")
    results = controller.health(hidden, WHERE, 1)
    assert any(r.reason is Reason.FORBIDDEN and "pods/log is forbidden" in r.message for r in results)


def test_controller_without_its_target_group_binding_crd() -> None:
    snapshot = ClusterSnapshot.of(deployments=[controller_deployment()], absent=["targetgroupbindings"])
    results = controller.health(snapshot, WHERE, lb_objects=1)
    (crd,) = [r for r in results if r.reason is Reason.TARGET_GROUP_BINDING_CRD_MISSING]
    assert crd.status is Status.FAIL and "targetgroupbindings.elbv2.k8s.aws" in crd.message
    assert crd.remedy and "crds" in crd.remedy
    # With the CRD served, or without a controller at all (ControllerNotFound says it all), nothing more.
    served = controller.health(ClusterSnapshot.of(deployments=[controller_deployment()]), WHERE, 1)
    assert not [r for r in served if r.reason is Reason.TARGET_GROUP_BINDING_CRD_MISSING]
    alone = controller.health(ClusterSnapshot.of(absent=["targetgroupbindings"]), WHERE, 1)
    assert [r.reason for r in alone] == [Reason.CONTROLLER_NOT_FOUND]


def test_ingress_class_missing_or_owned_by_another_controller() -> None:
    ing = ingress()
    missing = controller.health(ClusterSnapshot.of(ingresses=[ing]), WHERE, 1)
    assert any(r.reason is Reason.INGRESS_CLASS_NOT_FOUND and "no such IngressClass" in r.message for r in missing)
    nginx = IngressClass(ObjectMeta("", "alb"), "k8s.io/ingress-nginx")
    other = controller.health(ClusterSnapshot.of(ingresses=[ing], ingress_classes=[nginx]), WHERE, 1)
    assert any(r.reason is Reason.INGRESS_CLASS_NOT_FOUND and "ingress-nginx" in r.message for r in other)


def test_full_evaluation_roots_first_with_events_linked_to_annotations() -> None:
    """A bad annotation makes the controller fail to build its model: the annotation is the root."""
    bad = ingress(annotations={"alb.ingress.kubernetes.io/success-codes": "600"})
    event = KubeEvent(
        ObjectMeta("shop", "web.1"),
        "Ingress",
        "shop",
        "web",
        "FailedBuildModel",
        "Failed build model due to invalid success codes",
    )
    svc = service("web", selector={"app": "nothing"})
    snapshot = ClusterSnapshot.of(
        services=[svc],
        ingresses=[bad],
        ingress_classes=[ALB_CLASS],
        events=[event],
        deployments=[controller_deployment()],
        pods=[pod()],
    )
    results = evaluate_cluster(snapshot, ControllerConfig(), WHERE)
    keys = [r.key for r in results]
    failing = [r for r in results if r.status is Status.FAIL]
    by_reason = {r.reason: r for r in failing}
    reconcile = by_reason[Reason.RECONCILE_FAILED]
    assert reconcile.caused_by == by_reason[Reason.INVALID_SUCCESS_CODES].key
    assert by_reason[Reason.NO_ENDPOINTS].caused_by == by_reason[Reason.NO_PODS_MATCH_SELECTOR].key
    for result in failing:
        if result.caused_by is not None:
            assert keys.index(result.caused_by) < keys.index(result.key)  # causes come first
    assert results.index(by_reason[Reason.NO_ENDPOINTS]) == results.index(by_reason[Reason.NO_PODS_MATCH_SELECTOR]) + 1


def test_pod_behind_two_services_is_reported_once() -> None:
    one = nlb("one", selector={"app": "web"}, ports=(ServicePort("http", 80, 8080),))
    two = nlb("two", selector={"app": "web"}, ports=(ServicePort("http", 81, 8080),))
    results = evaluate_cluster(ClusterSnapshot.of(services=[one, two], pods=[pod()]), ControllerConfig(), WHERE)
    assert sum(1 for r in results if r.check is Check.POD_STATUS) == 1
    assert {r.object for r in results if r.check is Check.SELECTOR} == {
        ObjectRef("Service", "shop", "one"),
        ObjectRef("Service", "shop", "two"),
    }
