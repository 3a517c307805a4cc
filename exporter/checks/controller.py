"""Runbook step "check the AWS Load Balancer Controller": found, ready, permitted, reconciling.

The controller's Deployment and pods are read from the API; its recent log lines (fetched by the
Kubernetes adapter) are scanned for IAM denials, which it logs with the API action when AWS names one.
Warning Events the controller writes on Ingresses, Services and TargetGroupBindings say which object
it failed to reconcile and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from exporter.checks.context import Scope
from exporter.lb import annotations as ann
from exporter.lb.backends import OwnerPlan
from exporter.lb.gateway import CONTROLLERS as GATEWAY_CONTROLLERS
from exporter.lb.healthcheck import AUTO_MODE
from exporter.lb.plan import ingress_class_of
from exporter.model import subjects
from exporter.model.gateway import AUTO_MODE_GROUP, AUTO_MODE_PARAMS_RESOURCE
from exporter.model.objects import Deployment, KubeEvent
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, Status
from exporter.model.snapshot import ClusterSnapshot

if TYPE_CHECKING:
    from exporter.settings import Settings

# Events the controller emits when it cannot reconcile an object (docs/health-check-defaults.md §6).
RECONCILE_FAILURES = frozenset(
    {"FailedBuildModel", "FailedDeployModel", "BackendNotFound", "FailedReconcile", "FailedNetworkReconcile"}
)
_DENIED = re.compile(r"AccessDenied|UnauthorizedOperation|AccessDeniedException|AuthFailure")
_ACTION = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9]+)")
_OPERATION = re.compile(r"operation error ([^:]+?): ([A-Za-z0-9]+)")


@dataclass(frozen=True)
class ControllerLocation:
    namespace: str = "kube-system"
    name: str = "aws-load-balancer-controller"
    ingress_class: str = "alb"
    ingress_controller: str = "ingress.k8s.aws/alb"

    @classmethod
    def from_settings(cls, settings: Settings) -> ControllerLocation:
        return cls(
            namespace=settings.controller_namespace,
            name=settings.controller_name,
            ingress_controller=settings.ingress_controller,
        )


def find_deployment(snapshot: ClusterSnapshot, where: ControllerLocation) -> Deployment | None:
    deployments = snapshot.deployments.in_namespace(where.namespace)
    found = deployments.get(f"{where.namespace}/{where.name}")
    if found is not None:
        return found
    for deployment in deployments.values():
        if deployment.meta.labels.get("app.kubernetes.io/name") == "aws-load-balancer-controller":
            return deployment
    return None


def denial(line: str) -> str | None:
    """What a denied log line says was refused, or None for other lines."""
    if not _DENIED.search(line):
        return None
    action = _ACTION.search(line)
    if action:
        return action.group(1)
    operation = _OPERATION.search(line)
    if operation:
        return f"{operation.group(1)} {operation.group(2)} (AWS does not name the IAM action for EC2 denials)"
    return "an AWS call (the log line does not name the action)"


def evaluate(scope: Scope) -> Iterable[CheckResult]:
    """The controller's reconcile failures on the owners in scope, and its own health when it is in scope."""
    snapshot = scope.snapshot
    for plan in scope.plans:
        owner = plan.owner
        events = [
            event
            for event in snapshot.events.in_namespace(owner.namespace).values()
            if event.object_kind == owner.kind and event.object_name == owner.name
        ]
        yield from event_results(events, owner)
    if scope.controller is not None:
        yield from health(snapshot, scope.controller.where, scope.controller.lb_objects, scope.controller.plans)


def health(
    snapshot: ClusterSnapshot, where: ControllerLocation, lb_objects: int, plans: Sequence[OwnerPlan] = ()
) -> list[CheckResult]:
    """The controllers' own health: the AWS Load Balancer Controller (``lb_objects`` load-balanced objects
    depend on it), and, for the objects in ``plans`` that use them, EKS Auto Mode and the GatewayClasses."""
    results = [_deployment_result(snapshot, where, lb_objects)]
    crd = _crd_result(snapshot, where)
    if crd is not None:
        results.append(crd)
    results.extend(_log_results(snapshot, where))
    class_result = _ingress_class_result(snapshot, where)
    if class_result is not None:
        results.append(class_result)
    # Whatever the controller fails to do shows on the objects it reconciles: the causal rules join on this.
    results = [replace(result, about=_ABOUT) if subjects.linkable(result.status) else result for result in results]
    return [*results, *auto_mode_results(snapshot, plans), *gateway_class_results(snapshot, plans)]


_ABOUT = (subjects.controller(),)


def auto_mode_results(snapshot: ClusterSnapshot, plans: Sequence[OwnerPlan]) -> list[CheckResult]:
    """Is EKS Auto Mode there to reconcile the objects that use it?

    Auto Mode's load balancing controller runs in AWS, outside the cluster: there is no Deployment, pod or log
    to read. What the cluster shows is its API: ``ingressclassparams.eks.amazonaws.com`` is served only where
    Auto Mode is enabled, an IngressClass names its IngressClassParams, and the Events Auto Mode writes on the
    Ingresses and Services it fails to reconcile (read by the per-object controller results, as for the
    controller). Permissions (its cluster IAM role) show up in those Events.
    """
    auto = [plan for plan in plans if plan.manager == AUTO_MODE]
    if not auto:
        return []
    results = []
    unseen = snapshot.unseen(AUTO_MODE_PARAMS_RESOURCE)
    served = unseen is None
    classes: dict[str, int] = {}
    services = 0
    for plan in auto:
        if plan.owner.kind == "Ingress":
            ingress = snapshot.ingresses.get(f"{plan.owner.namespace}/{plan.owner.name}")
            found = ingress_class_of(ingress, snapshot) if ingress is not None else None
            if found is not None:
                classes[found.meta.name] = classes.get(found.meta.name, 0) + 1
        else:
            services += 1
    for name, count in sorted(classes.items()):
        ref = ObjectRef("IngressClass", "", name)
        ingress_class = snapshot.ingress_classes[name]
        if not served:
            results.append(_auto_mode_missing(ref, f"{count} Ingress(es) of IngressClass {name}", unseen))
            continue
        params = ingress_class.parameters
        if (
            params is not None
            and params[0] == AUTO_MODE_GROUP
            and params[2] not in (snapshot.front_ends.auto_mode_ingress_class_params)
        ):
            results.append(
                CheckResult(
                    Check.CONTROLLER,
                    Status.FAIL,
                    Reason.INGRESS_CLASS_PARAMS_NOT_FOUND,
                    ref,
                    f"IngressClass {name} (EKS Auto Mode) names IngressClassParams {params[2]}, which does not exist: "
                    f"Auto Mode does not build load balancers for its {count} Ingress(es)",
                    f"create IngressClassParams {params[2]} (apiVersion eks.amazonaws.com/v1), or fix "
                    f"spec.parameters of IngressClass {name}",
                )
            )
            continue
        results.append(
            CheckResult(
                Check.CONTROLLER,
                Status.OK,
                None,
                ref,
                f"EKS Auto Mode reconciles IngressClass {name} ({count} Ingress(es)); its controller runs in AWS, "
                f"outside the cluster, so its failures show as Events on the Ingresses",
            )
        )
    if services:
        ref = ObjectRef("LoadBalancerClass", "", ann.AUTO_MODE_NLB_CLASS)
        if not served:
            results.append(_auto_mode_missing(ref, f"{services} Service(s) of loadBalancerClass {ref.name}", unseen))
        else:
            results.append(
                CheckResult(
                    Check.CONTROLLER,
                    Status.OK,
                    None,
                    ref,
                    f"EKS Auto Mode reconciles {services} Service(s) of loadBalancerClass {ref.name}; its failures "
                    f"show as Events on the Services",
                )
            )
    return results


def _auto_mode_missing(ref: ObjectRef, what: str, unseen: str | None) -> CheckResult:
    if unseen is not None and "RBAC" in unseen:
        return CheckResult(
            Check.CONTROLLER,
            Status.UNKNOWN,
            Reason.FORBIDDEN,
            ref,
            f"cannot tell whether EKS Auto Mode is enabled for {what}: {unseen}",
            "grant lbdoctor list/watch on ingressclassparams.eks.amazonaws.com (the Helm chart does)",
        )
    return CheckResult(
        Check.CONTROLLER,
        Status.FAIL,
        Reason.AUTO_MODE_NOT_ENABLED,
        ref,
        f"{what} are meant for EKS Auto Mode, but the API server does not serve ingressclassparams.eks.amazonaws.com: "
        f"Auto Mode is not enabled on this cluster, and nothing reconciles them",
        "enable EKS Auto Mode's load balancing (aws eks update-cluster-config --compute-config enabled=true "
        '--kubernetes-network-config \'{"elasticLoadBalancing":{"enabled": true}}\' …), or use the AWS Load '
        "Balancer Controller's IngressClass (ingress.k8s.aws/alb) and loadBalancerClass (service.k8s.aws/nlb)",
    )


def gateway_class_results(snapshot: ClusterSnapshot, plans: Sequence[OwnerPlan]) -> list[CheckResult]:
    """The controller's verdict on the GatewayClasses its routes use: Accepted, or why not."""
    used = sorted({b.gateway for plan in plans for b in plan.backends if b.gateway is not None}, key=str)
    names: set[str] = set()
    for ref in used:
        gateway = snapshot.front_ends.gateway(ref.namespace, ref.name)
        if gateway is not None:
            names.add(gateway.class_name)
    results = []
    for name in sorted(names):
        gateway_class = snapshot.front_ends.gateway_classes.get(name)
        if gateway_class is None or gateway_class.controller not in GATEWAY_CONTROLLERS:
            continue
        ref = ObjectRef("GatewayClass", "", name)
        accepted = next((c for c in gateway_class.conditions if c.type == "Accepted"), None)
        if accepted is not None and accepted.status == "False":
            results.append(
                CheckResult(
                    Check.CONTROLLER,
                    Status.FAIL,
                    Reason.GATEWAY_CLASS_NOT_ACCEPTED,
                    ref,
                    f"the controller did not accept GatewayClass {name} ({accepted.reason}): "
                    f"{accepted.message[:300]}; its Gateways get no load balancer",
                    f"kubectl describe gatewayclass {name}; check its parametersRef and the controller's "
                    f"Gateway API feature flags (--feature-gates ALBGatewayAPI / NLBGatewayAPI)",
                )
            )
        else:
            state = "accepted" if accepted is not None and accepted.status == "True" else "not yet accepted"
            results.append(
                CheckResult(
                    Check.CONTROLLER,
                    Status.OK,
                    None,
                    ref,
                    f"GatewayClass {name} belongs to {gateway_class.controller} ({state})",
                )
            )
    return results


def _deployment_result(snapshot: ClusterSnapshot, where: ControllerLocation, lb_objects: int) -> CheckResult:
    ref = ObjectRef("Deployment", where.namespace, where.name)
    unseen = snapshot.unseen("deployments")
    if unseen:
        return CheckResult(
            Check.CONTROLLER, Status.UNKNOWN, Reason.FORBIDDEN, ref, f"cannot look for the controller: {unseen}"
        )
    deployment = find_deployment(snapshot, where)
    if deployment is None:
        status = Status.FAIL if lb_objects else Status.WARN
        return CheckResult(
            Check.CONTROLLER,
            status,
            Reason.CONTROLLER_NOT_FOUND,
            ref,
            f"no AWS Load Balancer Controller Deployment in namespace {where.namespace} "
            f"({lb_objects} load-balanced objects wait for one)",
            "install the controller (helm install aws-load-balancer-controller eks/aws-load-balancer-controller "
            "-n kube-system --set clusterName=...), or tell lbdoctor where it runs (controller_namespace, "
            "controller_name)",
        )
    ref = ObjectRef("Deployment", deployment.meta.namespace, deployment.meta.name)
    if deployment.ready_replicas == 0:
        return CheckResult(
            Check.CONTROLLER,
            Status.FAIL,
            Reason.CONTROLLER_NOT_READY,
            ref,
            f"controller {deployment.meta.key} has 0 of {deployment.replicas} replicas ready: nothing reconciles "
            f"target groups or readiness gates",
            f"kubectl -n {deployment.meta.namespace} describe deployment {deployment.meta.name} and check its pods' "
            f"logs (webhook certificates and IAM credentials are the usual causes)",
        )
    if deployment.ready_replicas < deployment.replicas:
        return CheckResult(
            Check.CONTROLLER,
            Status.WARN,
            Reason.CONTROLLER_NOT_READY,
            ref,
            f"controller {deployment.meta.key} has {deployment.ready_replicas} of {deployment.replicas} replicas ready",
            f"kubectl -n {deployment.meta.namespace} get pods -l app.kubernetes.io/name=aws-load-balancer-controller",
        )
    return CheckResult(
        Check.CONTROLLER,
        Status.OK,
        None,
        ref,
        f"controller {deployment.meta.key} is ready ({deployment.ready_replicas}/{deployment.replicas})",
    )


def _crd_result(snapshot: ClusterSnapshot, where: ControllerLocation) -> CheckResult | None:
    """The controller runs but the API server does not serve its TargetGroupBinding CRD: it cannot bind
    any target (it registers every Service's and Ingress's targets through TargetGroupBindings)."""
    if "targetgroupbindings" not in snapshot.absent:
        return None
    deployment = find_deployment(snapshot, where)
    if deployment is None:
        return None  # ControllerNotFound says what to install
    return CheckResult(
        Check.CONTROLLER,
        Status.FAIL,
        Reason.TARGET_GROUP_BINDING_CRD_MISSING,
        ObjectRef("Deployment", deployment.meta.namespace, deployment.meta.name),
        "the API server does not serve targetgroupbindings.elbv2.k8s.aws (list answered 404): the controller "
        "cannot register any target with its target groups",
        "install the controller's CRDs: kubectl apply -k "
        '"github.com/aws/eks-charts/stable/aws-load-balancer-controller/crds?ref=master"',
    )


def _log_results(snapshot: ClusterSnapshot, where: ControllerLocation) -> Iterable[CheckResult]:
    ref = ObjectRef("Deployment", where.namespace, where.name)
    if snapshot.controller_logs_error:
        yield CheckResult(
            Check.CONTROLLER,
            Status.UNKNOWN,
            Reason.FORBIDDEN,
            ref,
            f"cannot read the controller's logs: {snapshot.controller_logs_error}",
            "grant lbdoctor get on pods/log in the controller's namespace (the Helm chart does)",
        )
        return
    denied: dict[str, tuple[str, str]] = {}
    for pod, text in sorted(snapshot.controller_logs.items()):
        for line in text.splitlines():
            refused = denial(line)
            if refused is not None:
                denied[refused] = (pod, line.strip())
    for refused, (pod, line) in list(denied.items())[:5]:
        yield CheckResult(
            Check.CONTROLLER,
            Status.FAIL,
            Reason.CONTROLLER_ACCESS_DENIED,
            ref,
            f"the controller was denied {refused} (pod {pod} logged: {_excerpt(line)})",
            "add the missing actions to the controller's IAM role: use the iam_policy.json published with the "
            "controller version you run (IRSA: the role in the ServiceAccount annotation eks.amazonaws.com/role-arn)",
        )


def _excerpt(line: str) -> str:
    """The part of a denial log line that says what happened, not the JSON around it."""
    found = _DENIED.search(line)
    start = line.rfind("api error", 0, found.start() if found else 0)
    text = line[start if start >= 0 else (found.start() if found else 0) :]
    return text[:220].rstrip('"}') + ("…" if len(text) > 220 else "")


def _ingress_class_result(snapshot: ClusterSnapshot, where: ControllerLocation) -> CheckResult | None:
    wanted = [i for i in snapshot.ingresses.values() if i.class_name == where.ingress_class]
    if not wanted or snapshot.unseen("ingressclasses"):
        return None
    ref = ObjectRef("IngressClass", "", where.ingress_class)
    found = snapshot.ingress_classes.get(where.ingress_class)
    if found is None:
        return CheckResult(
            Check.CONTROLLER,
            Status.FAIL,
            Reason.INGRESS_CLASS_NOT_FOUND,
            ref,
            f"{len(wanted)} Ingress(es) use ingressClassName {where.ingress_class!r}, but no such IngressClass exists, "
            f"so no controller reconciles them",
            f"create IngressClass {where.ingress_class} with spec.controller {where.ingress_controller} (the "
            f"controller's Helm chart does)",
        )
    if found.controller != where.ingress_controller:
        return CheckResult(
            Check.CONTROLLER,
            Status.FAIL,
            Reason.INGRESS_CLASS_NOT_FOUND,
            ref,
            f"IngressClass {where.ingress_class} names controller {found.controller!r}, not "
            f"{where.ingress_controller!r}: the AWS Load Balancer Controller ignores its Ingresses",
            f"set spec.controller of IngressClass {where.ingress_class} to {where.ingress_controller}",
        )
    return CheckResult(
        Check.CONTROLLER, Status.OK, None, ref, f"IngressClass {where.ingress_class} belongs to {found.controller}"
    )


def event_results(events: Iterable[KubeEvent], owner: ObjectRef) -> list[CheckResult]:
    """The controller's reconcile failures reported on one load-balanced object."""
    latest: dict[str, KubeEvent] = {}
    for event in events:
        if event.reason in RECONCILE_FAILURES and event.type == "Warning":
            latest[event.reason] = event
    results = []
    for event in latest.values():
        denied = denial(event.message)
        about = (subjects.controller(), subjects.model(owner)) if event.reason == "FailedBuildModel" else _ABOUT
        results.append(
            CheckResult(
                Check.CONTROLLER,
                Status.FAIL,
                Reason.CONTROLLER_ACCESS_DENIED if denied else Reason.RECONCILE_FAILED,
                owner,
                f"the controller reports {event.reason} on {owner.kind} {owner.namespace}/{owner.name} "
                f"({event.count}×): {event.message[:400]}",
                "fix what the message names; kubectl describe "
                f"{owner.kind.lower()} -n {owner.namespace} {owner.name} shows the latest attempts",
                about=about,
            )
        )
    return results
