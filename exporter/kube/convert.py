"""Kubernetes API JSON → model objects. Tolerant: a missing field becomes a default, never an exception.

Compact: only what the checks read is kept, since both roles hold whole clusters (every node agent every
Service and EndpointSlice; the cluster role every pod too). Annotations only of the families lbdoctor reads
(``READ_ANNOTATIONS``: a ``kubectl.kubernetes.io/last-applied-configuration`` alone can weigh kilobytes),
Service and EndpointSlice labels only those kube-proxy reads, no uid; strings that repeat across objects
(namespaces, node names, label keys and values, enum-like fields) are interned, so 100,000 pods of 100
namespaces hold 100 namespace strings, not 100,000.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from exporter.model.objects import (
    AgentPod,
    ContainerPort,
    ContainerStatus,
    Deployment,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Ingress,
    IngressBackend,
    IngressClass,
    KubeEvent,
    Node,
    NodeAddress,
    ObjectMeta,
    Pod,
    PodCondition,
    PreStopHook,
    Service,
    ServicePort,
    TargetGroupBinding,
)

Json = Mapping[str, Any]


# JSON decoding yields plain dicts and lists: test with isinstance(…, dict), which is several times
# cheaper than an ABC check, on a path that runs for every object of a 100,000-pod cluster.
_NONE: dict[str, Any] = {}
_EMPTY: Mapping[str, str] = {}  # shared by every object without labels or annotations; never written to

# The annotation families lbdoctor reads (the AWS Load Balancer Controller's, the legacy ingress class, the
# default IngressClass); tests/test_compact_model.py keeps exporter/lb/annotations.py inside them.
READ_ANNOTATIONS = (
    "alb.ingress.kubernetes.io/",
    "service.beta.kubernetes.io/",
    "kubernetes.io/ingress.class",
    "ingressclass.kubernetes.io/",
)
# Labels read on Services and EndpointSlices: kube-proxy's (service-proxy-name, headless) and the slice's
# Service. Pods keep every label (selectors), Nodes and Deployments too (few of them).
SERVICE_LABELS = ("service.kubernetes.io/",)
SLICE_LABELS = ("service.kubernetes.io/", "kubernetes.io/service-name")
BINDING_LABELS = ("service.k8s.aws/", "ingress.k8s.aws/")  # the stack of the controller's own bindings

_intern = sys.intern


def _text(value: Any) -> str:
    """A short string that repeats across objects (a namespace, a node, a phase), interned."""
    return _intern(value) if isinstance(value, str) else _intern(str(value))


def _opt_text(value: Any) -> str | None:
    return _text(value) if value else None


def _map(value: Any, keep: tuple[str, ...] | None = None) -> Mapping[str, str]:
    """A string map; with ``keep``, only the keys starting with one of those prefixes. Keys and values
    interned (label values repeat across a workload's pods)."""
    if not isinstance(value, dict) or not value:
        return _EMPTY
    found = {
        _text(k): _text(v) for k, v in value.items() if keep is None or (isinstance(k, str) and k.startswith(keep))
    }
    return found or _EMPTY


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else _NONE


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _int_or_str(value: Any, default: int | str) -> int | str:
    number = _int(value)
    if number is not None:
        return number
    if isinstance(value, str) and value:
        return value
    return default


def _opt_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def meta(
    raw: Json,
    *,
    annotations: bool = True,
    labels: tuple[str, ...] | None = None,
    no_labels: bool = False,
) -> ObjectMeta:
    """``annotations``: keep those lbdoctor reads (``READ_ANNOTATIONS``); ``labels``: keep only these prefixes
    (None: all); ``no_labels``: none."""
    m = _obj(raw.get("metadata"))
    return ObjectMeta(
        namespace=_text(m.get("namespace") or ""),
        name=str(m.get("name") or ""),
        labels=_EMPTY if no_labels else _map(m.get("labels"), labels),
        annotations=_map(m.get("annotations"), READ_ANNOTATIONS) if annotations else _EMPTY,
        deleting=bool(m.get("deletionTimestamp")),
        deletion_deadline=timestamp(m.get("deletionTimestamp")),
    )


def timestamp(value: Any) -> float | None:
    """An RFC 3339 time (``2026-11-27T00:00:00Z``) as Unix time; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _pre_stop(container: Json) -> PreStopHook | None:
    """A container's preStop hook; None without one (most pods: nothing is kept for them)."""
    hook = _obj(_obj(container.get("lifecycle")).get("preStop"))
    if not hook:
        return None
    name = str(container.get("name") or "")
    sleep = _obj(hook.get("sleep"))
    if sleep:
        return PreStopHook(name, "sleep", float(_int(sleep.get("seconds")) or 0))
    command = _list(_obj(hook.get("exec")).get("command"))
    if command:
        return PreStopHook(name, "exec", _sleep_seconds([str(part) for part in command[:16]]))
    for action in ("httpGet", "tcpSocket"):
        if action in hook:
            return PreStopHook(name, action)
    return None


def _sleep_seconds(command: list[str]) -> float | None:
    """N of an exec hook that is ``sleep N`` (directly or via ``sh -c "sleep N"``); None otherwise."""
    words = " ".join(command[-1:] if len(command) >= 3 and command[-2] == "-c" else command).split()
    for index, word in enumerate(words[:-1]):
        if word.rsplit("/", 1)[-1] == "sleep":
            number = words[index + 1].rstrip(";")
            try:
                return float(number.removesuffix("s"))
            except ValueError:
                return None
    return None


def agent_pod(raw: Json) -> AgentPod:
    spec, status = _obj(raw.get("spec")), _obj(raw.get("status"))
    owner = next(
        (o for o in map(_obj, _list(_obj(raw.get("metadata")).get("ownerReferences"))) if o.get("controller") is True),
        _NONE,
    )
    return AgentPod(
        meta=meta(raw, annotations=False),
        node_name=_opt_text(spec.get("nodeName")),
        pod_ip=str(status.get("podIP")) if status.get("podIP") else None,
        controller_kind=str(owner["kind"]) if owner.get("kind") else None,
        controller_name=str(owner["name"]) if owner.get("name") else None,
    )


def pod(raw: Json) -> Pod:
    spec, status = _obj(raw.get("spec")), _obj(raw.get("status"))
    ports: list[ContainerPort] = []
    for container in _list(spec.get("containers")):
        for port in _list(_obj(container).get("ports")):
            number = _int(_obj(port).get("containerPort"))
            if number is not None:
                name = _obj(port).get("name")
                ports.append(ContainerPort(_opt_text(name), number, _text(_obj(port).get("protocol") or "TCP")))
    statuses = []
    for cs in _list(status.get("containerStatuses")):
        cs = _obj(cs)
        state, last = _obj(cs.get("state")), _obj(cs.get("lastState"))
        waiting, terminated = _obj(state.get("waiting")), _obj(state.get("terminated"))
        statuses.append(
            ContainerStatus(
                name=_text(cs.get("name") or ""),
                ready=bool(cs.get("ready")),
                restart_count=_int(cs.get("restartCount")) or 0,
                waiting_reason=_opt_text(waiting.get("reason")),
                waiting_message=waiting.get("message"),
                terminated_reason=_opt_text(terminated.get("reason")),
                last_terminated_reason=_opt_text(_obj(last.get("terminated")).get("reason")),
            )
        )
    gates = tuple(
        str(g["conditionType"])
        for g in _list(spec.get("readinessGates"))
        if isinstance(g, dict) and g.get("conditionType")
    )
    # Only the conditions of readiness gates are read by the checks; a 100,000-pod cluster need not
    # keep the other four per pod.
    conditions = tuple(
        PodCondition(
            type=str(c.get("type")),
            status=str(c.get("status") or "Unknown"),
            reason=c.get("reason"),
            message=c.get("message"),
            last_transition_time=c.get("lastTransitionTime") or None,
        )
        for c in (_list(status.get("conditions")) if gates else ())
        if isinstance(c, dict) and c.get("type") in gates
    )
    grace = _int(spec.get("terminationGracePeriodSeconds"))
    ips = tuple(str(_obj(a).get("ip")) for a in _list(status.get("podIPs"))[:2] if _obj(a).get("ip"))
    return Pod(
        meta=meta(raw, annotations=False),  # pod annotations are never read
        node_name=_opt_text(spec.get("nodeName")),
        phase=_text(status.get("phase") or "Unknown"),
        pod_ip=str(status.get("podIP")) if status.get("podIP") else None,
        ports=tuple(ports),
        container_statuses=tuple(statuses),
        conditions=conditions,
        readiness_gates=gates,
        host_network=bool(spec.get("hostNetwork")),
        pod_ips=ips if len(ips) > 1 else (),  # kept only for dual-stack pods; pod_ip is the one address otherwise
        termination_grace=30 if grace is None else grace,
        pre_stop=tuple(hook for c in _list(spec.get("containers")) if (hook := _pre_stop(_obj(c))) is not None),
        created=(_obj(raw.get("metadata")).get("creationTimestamp") or None) if gates else None,
    )


def service(raw: Json) -> Service:
    spec = _obj(raw.get("spec"))
    ports = []
    for p in _list(spec.get("ports")):
        p = _obj(p)
        number = _int(p.get("port"))
        if number is None:
            continue
        ports.append(
            ServicePort(
                name=_opt_text(p.get("name")),
                port=number,
                target_port=_int_or_str(p.get("targetPort"), number),
                protocol=_text(p.get("protocol") or "TCP"),
                node_port=_int(p.get("nodePort")),
                app_protocol=p.get("appProtocol") or None,
            )
        )
    selector = spec.get("selector")
    cluster_ip = spec.get("clusterIP")
    cluster_ips = tuple(str(ip) for ip in _list(spec.get("clusterIPs")) if ip)
    if cluster_ips == (cluster_ip,):
        cluster_ips = ()  # the usual single-stack Service: one copy of its address, not two
    return Service(
        meta=meta(raw, labels=SERVICE_LABELS),
        type=_text(spec.get("type") or "ClusterIP"),
        selector=_map(selector) if isinstance(selector, Mapping) and selector else None,
        ports=tuple(ports),
        cluster_ip=str(cluster_ip) if cluster_ip else None,
        external_traffic_policy=_text(spec.get("externalTrafficPolicy") or "Cluster"),
        health_check_node_port=_int(spec.get("healthCheckNodePort")),
        load_balancer_class=_opt_text(spec.get("loadBalancerClass")),
        allocate_node_ports=spec.get("allocateLoadBalancerNodePorts") is not False,
        cluster_ips=cluster_ips,
        internal_traffic_policy=_text(spec.get("internalTrafficPolicy") or "Cluster"),
        ip_families=tuple(_text(f) for f in _list(spec.get("ipFamilies")) if isinstance(f, str) and f),
        lb_addresses=lb_addresses(raw),
    )


def lb_addresses(raw: Json) -> tuple[str, ...]:
    """status.loadBalancer.ingress of a Service or an Ingress: the hostnames (or IPs) its load balancer got."""
    entries = _list(_obj(_obj(raw.get("status")).get("loadBalancer")).get("ingress"))
    return tuple(
        str(_obj(e).get("hostname") or _obj(e).get("ip"))
        for e in entries
        if _obj(e).get("hostname") or _obj(e).get("ip")
    )


def endpoint_slice(raw: Json) -> EndpointSlice:
    m = meta(raw, annotations=False, labels=SLICE_LABELS)
    endpoints = []
    for e in _list(raw.get("endpoints")):
        e = _obj(e)
        cond = _obj(e.get("conditions"))
        ref = _obj(e.get("targetRef"))
        hints = e.get("hints")
        endpoints.append(
            Endpoint(
                addresses=tuple(str(a) for a in _list(e.get("addresses"))),
                ready=_opt_bool(cond.get("ready")),
                serving=_opt_bool(cond.get("serving")),
                terminating=_opt_bool(cond.get("terminating")),
                node_name=_opt_text(e.get("nodeName")),
                pod_name=str(ref["name"]) if ref.get("name") and ref.get("kind") in (None, "Pod") else None,
                zone=_opt_text(e.get("zone")),
                hint_zones=_hint_names(hints, "forZones"),
                hint_nodes=_hint_names(hints, "forNodes"),
            )
        )
    ports = tuple(
        EndpointPort(_opt_text(_obj(p).get("name")), _int(_obj(p).get("port")), _text(_obj(p).get("protocol") or "TCP"))
        for p in _list(raw.get("ports"))
    )
    return EndpointSlice(
        meta=m,
        service_name=m.labels.get("kubernetes.io/service-name"),
        address_type=_text(raw.get("addressType") or "IPv4"),
        endpoints=tuple(endpoints),
        ports=ports,
    )


def _hint_names(hints: Any, key: str) -> tuple[str, ...] | None:
    """``hints.forZones`` / ``hints.forNodes`` as names; None when the endpoint carries no such hint."""
    entries = _obj(hints).get(key)
    if not isinstance(entries, list):
        return None
    return tuple(_text(_obj(entry).get("name")) for entry in entries if _obj(entry).get("name"))


def _backend(raw: Any, host: str | None, path: str | None) -> IngressBackend | None:
    svc = _obj(_obj(raw).get("service"))
    name = svc.get("name")
    if not name:
        return None
    port = _obj(svc.get("port"))
    return IngressBackend(str(name), _int(port.get("number")), port.get("name") or None, host, path)


def ingress(raw: Json) -> Ingress:
    spec = _obj(raw.get("spec"))
    backends: list[IngressBackend] = []
    default = _backend(spec.get("defaultBackend"), None, None)
    if default:
        backends.append(default)
    for rule in _list(spec.get("rules")):
        rule = _obj(rule)
        for path in _list(_obj(rule.get("http")).get("paths")):
            path = _obj(path)
            found = _backend(path.get("backend"), rule.get("host"), path.get("path"))
            if found:
                backends.append(found)
    return Ingress(
        meta=meta(raw, no_labels=True),
        class_name=_opt_text(spec.get("ingressClassName")),
        backends=tuple(backends),
        lb_addresses=lb_addresses(raw),
    )


def ingress_class(raw: Json) -> IngressClass:
    m = meta(raw, no_labels=True)
    spec = _obj(raw.get("spec"))
    parameters = _obj(spec.get("parameters"))
    return IngressClass(
        meta=m,
        controller=str(spec.get("controller") or ""),
        is_default=m.annotations.get("ingressclass.kubernetes.io/is-default-class") == "true",
        parameters=(
            (str(parameters.get("apiGroup") or ""), str(parameters.get("kind") or ""), str(parameters["name"]))
            if parameters.get("name")
            else None
        ),
    )


def target_group_binding(raw: Json) -> TargetGroupBinding:
    spec = _obj(raw.get("spec"))
    ref = _obj(spec.get("serviceRef"))
    return TargetGroupBinding(
        meta=meta(raw, labels=BINDING_LABELS),
        target_group_arn=spec.get("targetGroupARN"),
        target_type=spec.get("targetType"),
        service_name=str(ref.get("name") or ""),
        service_port=_int_or_str(ref.get("port"), 0),
    )


def node(raw: Json) -> Node:
    spec, status = _obj(raw.get("spec")), _obj(raw.get("status"))
    ready = any(
        _obj(c).get("type") == "Ready" and _obj(c).get("status") == "True" for c in _list(status.get("conditions"))
    )
    return Node(
        meta=meta(raw),
        addresses=tuple(
            NodeAddress(str(_obj(a).get("type") or ""), str(_obj(a).get("address") or ""))
            for a in _list(status.get("addresses"))
        ),
        ready=ready,
        provider_id=spec.get("providerID"),
    )


def deployment(raw: Json) -> Deployment:
    spec, status = _obj(raw.get("spec")), _obj(raw.get("status"))
    template = _obj(_obj(spec.get("template")).get("spec"))
    replicas = _int(spec.get("replicas"))
    return Deployment(
        meta=meta(raw),
        replicas=1 if replicas is None else replicas,
        ready_replicas=_int(status.get("readyReplicas")) or 0,
        available_replicas=_int(status.get("availableReplicas")) or 0,
        selector=_map(_obj(spec.get("selector")).get("matchLabels")),
        images=tuple(str(_obj(c).get("image") or "") for c in _list(template.get("containers"))),
    )


def event(raw: Json) -> KubeEvent:
    involved = _obj(raw.get("involvedObject"))
    source = _obj(raw.get("source"))
    return KubeEvent(
        meta=meta(raw),
        object_kind=str(involved.get("kind") or ""),
        object_namespace=str(involved.get("namespace") or ""),
        object_name=str(involved.get("name") or ""),
        reason=str(raw.get("reason") or ""),
        message=str(raw.get("message") or ""),
        type=str(raw.get("type") or "Normal"),
        count=_int(raw.get("count")) or 1,
        last_seen=str(raw.get("lastTimestamp") or raw.get("eventTime") or ""),
        source=str(source.get("component") or raw.get("reportingComponent") or ""),
    )
