"""The subjects results are about, spelled one way for every check (``CheckResult.about``).

A subject is a ``(kind, id)`` pair. The causal rules (``exporter.checks.causes``) say "this finding
explains that one when they share a subject of this kind"; a check lists the subjects of each result
it makes with these helpers, so a security-group finding and the load balancer's verdict on the same
target meet on the same ``ELB_TARGET`` id without knowing of each other.

| kind | id | what it names |
|---|---|---|
| ``pod`` | ``ns/name`` | a pod |
| ``service`` | ``ns/name`` | a Service |
| ``node`` | ``name`` | a node |
| ``service-node`` | ``ns/service@node`` | a Service as seen on one node (its kube-proxy rules, its NodePort) |
| ``service-pod`` | ``ns/service@pod`` | a pod as one Service's target (its targetPort) |
| ``tg-pod`` | ``kind/ns/name@pod`` | one target group's target on a pod (the owner names the target group) |
| ``tg-node`` | ``kind/ns/name@node`` | one target group's instance target on a node |
| ``elb-target`` | ``kind/ns/name@id:port`` | an ELB target as AWS names it (an IP or instance id, and a port) |
| ``model`` | ``kind/ns/name`` | the controller's model of a load-balanced object (its annotations) |
| ``controller`` | ``""`` | the AWS Load Balancer Controller's work (reconciling, registering) |
"""

from __future__ import annotations

from exporter.model.results import ObjectRef, Status, Subject

POD = "pod"
SERVICE = "service"
NODE = "node"
SERVICE_NODE = "service-node"
SERVICE_POD = "service-pod"
TG_POD = "tg-pod"
TG_NODE = "tg-node"
ELB_TARGET = "elb-target"
MODEL = "model"
CONTROLLER = "controller"

KINDS = (POD, SERVICE, NODE, SERVICE_NODE, SERVICE_POD, TG_POD, TG_NODE, ELB_TARGET, MODEL, CONTROLLER)


def linkable(status: Status) -> bool:
    """Only failing and warning results take part in the causal rules: the others carry no subjects (they
    are most of a round, and their subjects would only cost memory and bytes)."""
    return status is Status.FAIL or status is Status.WARN


def owner_id(owner: ObjectRef) -> str:
    return f"{owner.kind}/{owner.namespace}/{owner.name}"


def pod(namespace: str, name: str) -> Subject:
    return (POD, f"{namespace}/{name}")


def service(namespace: str, name: str) -> Subject:
    return (SERVICE, f"{namespace}/{name}")


def node(name: str) -> Subject:
    return (NODE, name)


def service_node(namespace: str, service_name: str, node_name: str) -> Subject:
    return (SERVICE_NODE, f"{namespace}/{service_name}@{node_name}")


def service_pod(namespace: str, service_name: str, pod_name: str) -> Subject:
    return (SERVICE_POD, f"{namespace}/{service_name}@{pod_name}")


def tg_pod(owner: ObjectRef, pod_name: str) -> Subject:
    return (TG_POD, f"{owner_id(owner)}@{pod_name}")


def tg_node(owner: ObjectRef, node_name: str) -> Subject:
    return (TG_NODE, f"{owner_id(owner)}@{node_name}")


def elb_target(owner: ObjectRef, target_id: str, port: int | None) -> Subject:
    return (ELB_TARGET, f"{owner_id(owner)}@{target_id}:{'' if port is None else port}")


def model(owner: ObjectRef) -> Subject:
    return (MODEL, owner_id(owner))


def controller() -> Subject:
    return (CONTROLLER, "")


def text(subject: Subject) -> str:
    """``kind:id``, as the JSON documents carry it."""
    return f"{subject[0]}:{subject[1]}"


def parse(value: object) -> Subject | None:
    """The inverse of ``text``; None for anything else (a newer agent's kind is kept as it is)."""
    if not isinstance(value, str) or ":" not in value:
        return None
    kind, _, ident = value.partition(":")
    return (kind, ident)
