"""A container's environment as the kubelet builds it (pkg/kubelet/kubelet_pods.go, pkg/kubelet/envvars).

Used by the chart tests (every rendered container must accept the environment a real pod gets) and by
tests/realkube, which starts the chart's containers the kubelet's way. Pure: objects in, variables out.

What the kubelet does, in order:
1. Service links: for every Service of the pod's namespace with a cluster IP (headless ones have none),
   when ``enableServiceLinks`` is not false; and always for the master Service ``kubernetes`` of the
   ``default`` namespace. Per Service ``S`` (its name upper-cased, ``-`` as ``_``): ``S_SERVICE_HOST``,
   ``S_SERVICE_PORT`` (the first port), ``S_SERVICE_PORT_<PORTNAME>`` per named port, and Docker's link
   variables ``S_PORT`` (the first port) and ``S_PORT_<n>_<PROTO>{,_PROTO,_PORT,_ADDR}`` per port.
2. The container's ``env`` in order: ``value`` with ``$(VAR)`` expanded from the variables defined so
   far and the service links (``$$`` escapes), or ``valueFrom`` (downward API fields, resources).
3. Service-link variables the container's ``env`` did not define.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = Mapping[str, Any]


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_links(services: Iterable[Json]) -> dict[str, str]:
    """envvars.FromServices: the variables of each Service with a cluster IP, in the kubelet's order."""
    out: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        prefix = env_name(service["metadata"]["name"])
        ports = spec.get("ports") or []
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                out[f"{prefix}_SERVICE_PORT_{env_name(port['name'])}"] = str(port["port"])
        for index, port in enumerate(ports):
            proto = str(port.get("protocol") or "TCP")
            host_port = f"[{ip}]:{port['port']}" if ":" in ip else f"{ip}:{port['port']}"
            url = f"{proto.lower()}://{host_port}"
            if index == 0:
                out[f"{prefix}_PORT"] = url
            base = f"{prefix}_PORT_{port['port']}_{proto.upper()}"
            out[base] = url
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(port["port"])
            out[f"{base}_ADDR"] = ip
    return out


def link_services(namespace: str, services: Iterable[Json], enable_service_links: bool) -> list[Json]:
    """getServiceEnvVarMap: which Services give the pod variables (the master Service always)."""
    chosen: dict[str, Json] = {}
    for service in services:
        meta = service["metadata"]
        name, where = meta["name"], meta.get("namespace", "default")
        if where == "default" and name == "kubernetes":
            chosen.setdefault(name, service)
        elif where == namespace and enable_service_links:
            chosen[name] = service
    return list(chosen.values())


_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, defined: Mapping[str, str]) -> str:
    """third_party/forked/golang/expansion: $(VAR) from ``defined`` or left as is; $$ is one $."""

    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        name = found.group(1)
        return defined.get(name, found.group(0))

    return _REFERENCE.sub(one, text)


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can tell a container, about a pod the API server holds."""

    name: str
    namespace: str
    uid: str
    node_name: str
    service_account: str
    pod_ip: str
    host_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_allocatable: Mapping[str, str] = field(default_factory=lambda: {"cpu": "2", "memory": "8Gi"})


def _field(path: str, pod: PodFacts) -> str:
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
        "status.podIP": pod.pod_ip,
        "status.podIPs": pod.pod_ip,
        "status.hostIP": pod.host_ip,
        "status.hostIPs": pod.host_ip,
    }
    if path in simple:
        return simple[path]
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        source = pod.labels if found.group(1) == "labels" else pod.annotations
        return source.get(found.group(2), "")
    raise ValueError(f"fieldRef {path!r} is not one the kubelet serves")


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 0.001}


def _quantity(text: str) -> float:
    found = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    if not found or found.group(2) not in _UNITS:
        raise ValueError(f"quantity {text!r} not understood")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _resource(ref: Json, container: Json, pod: PodFacts) -> str:
    """resourceFieldRef: the limit (else the node's allocatable) in units of the divisor, rounded up."""
    kind, _, name = str(ref["resource"]).partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None:
        value = pod.node_allocatable[name] if kind == "limits" else "0"
    return str(math.ceil(_quantity(value) / _quantity(ref.get("divisor", "1"))))


def container_env(
    container: Json,
    pod: PodFacts,
    services: Iterable[Json],
    *,
    enable_service_links: bool = True,
) -> dict[str, str]:
    """The environment the kubelet gives ``container`` of ``pod``, whose namespace holds ``services``."""
    if container.get("envFrom"):
        raise ValueError("envFrom is not modelled here")
    links = service_links(link_services(pod.namespace, services, enable_service_links))
    defined: dict[str, str] = {}
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" in item:
            source = item["valueFrom"]
            if "fieldRef" in source:
                value = _field(source["fieldRef"]["fieldPath"], pod)
            elif "resourceFieldRef" in source:
                value = _resource(source["resourceFieldRef"], container, pod)
            else:
                raise ValueError(f"env {name}: {sorted(source)} is not modelled here")
        else:
            value = expand(str(item.get("value", "")), {**links, **defined})
        defined[name] = value
    return {**defined, **{key: value for key, value in links.items() if key not in defined}}


@dataclass(frozen=True)
class Security:
    """What the runtime applies to one container's process: the pod's and the container's securityContext
    merged as the kubelet merges them (the container's fields win; fsGroup and supplementalGroups are the
    pod's), over the image's user."""

    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary: the primary group, fsGroup, supplementalGroups
    capabilities: tuple[str, ...]  # after dropping ALL: the added ones, lower case without cap_ (net_admin)
    no_new_privs: bool  # allowPrivilegeEscalation: false
    read_only_root: bool  # readOnlyRootFilesystem
    fs_group: int | None


def security(
    pod_spec: Json, container: Json, image_user: tuple[int, int], passwd: Mapping[int, int] | None = None
) -> Security:
    """The securityContext in force for ``container``; refuses what the kubelet refuses (runAsNonRoot with
    user 0: CreateContainerConfigError) and what is not modelled here (privileged, capabilities not dropped).
    ``image_user`` is the image's USER (uid, gid); ``passwd`` maps the image's uids to their primary group,
    which the runtime takes when only runAsUser is given (0 for a uid the image does not know)."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    name = container.get("name", "?")

    def merged(key: str) -> Any:
        return own[key] if key in own else pod.get(key)

    run_as_user, run_as_group = merged("runAsUser"), merged("runAsGroup")
    uid = image_user[0] if run_as_user is None else int(run_as_user)
    if run_as_group is not None:
        gid = int(run_as_group)
    elif run_as_user is None:
        gid = image_user[1]
    else:
        gid = (passwd or {}).get(uid, 0)
    if merged("runAsNonRoot") and uid == 0:
        raise ValueError(f"container {name}: runAsNonRoot with user 0: the kubelet refuses to start it")
    if own.get("privileged"):
        raise ValueError(f"container {name}: privileged containers are not modelled here")
    capabilities = own.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        raise ValueError(f"container {name}: only containers that drop ALL capabilities are modelled here")
    added = tuple(sorted({str(c).lower().removeprefix("cap_") for c in capabilities.get("add") or []}))
    fs_group = pod.get("fsGroup")
    groups = {gid, *([int(fs_group)] if fs_group is not None else []), *map(int, pod.get("supplementalGroups") or [])}
    return Security(
        uid=uid,
        gid=gid,
        groups=tuple(sorted(groups)),
        capabilities=added,
        no_new_privs=own.get("allowPrivilegeEscalation") is False,
        read_only_root=bool(own.get("readOnlyRootFilesystem")),
        fs_group=None if fs_group is None else int(fs_group),
    )


@dataclass(frozen=True)
class PodTemplate:
    """One workload's pod template from rendered manifests: what a controller would create pods from."""

    kind: str  # Deployment or DaemonSet
    name: str
    namespace: str
    replicas: int
    labels: Mapping[str, str]
    spec: Json

    @property
    def containers(self) -> list[dict[str, Any]]:
        """Every container of the pod, in the order the kubelet starts them."""
        return [dict(item) for item in self.spec["containers"]]

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [item for item in self.containers if item["name"] == name]
        return found

    @property
    def service_account(self) -> str:
        return str(self.spec.get("serviceAccountName") or "default")

    def pod_name(self, index: int) -> str:
        """Names as the controllers make them: <deployment>-<template hash>-<5 chars>, <daemonset>-<5 chars>."""
        suffix = f"{index:05d}"[-5:].replace("0", "x")
        return f"{self.name}-7d9f8c6b5-{suffix}" if self.kind == "Deployment" else f"{self.name}-{suffix}"

    def pod(self, index: int, node: str, owner: Json | None = None) -> dict[str, Any]:
        """The Pod object its controller would create (without status), bound to ``node``; ``owner`` is the
        controller's ownerReference (the DaemonSet's; a Deployment's pods belong to a ReplicaSet)."""
        metadata: dict[str, Any] = {
            "name": self.pod_name(index),
            "namespace": self.namespace,
            "labels": dict(self.labels),
        }
        if owner is not None:
            metadata["ownerReferences"] = [dict(owner)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {**self.spec, "nodeName": node}}


def pod_templates(docs: Iterable[Json]) -> list[PodTemplate]:
    found = []
    for doc in docs:
        if doc.get("kind") not in ("Deployment", "DaemonSet"):
            continue
        template = doc["spec"]["template"]
        found.append(
            PodTemplate(
                kind=doc["kind"],
                name=doc["metadata"]["name"],
                namespace=doc["metadata"]["namespace"],
                replicas=int(doc["spec"].get("replicas", 1)) if doc["kind"] == "Deployment" else 1,
                labels=dict(template["metadata"].get("labels") or {}),
                spec=template["spec"],
            )
        )
    return found
