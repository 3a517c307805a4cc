"""The fake API server's data: objects, a global resourceVersion, a bounded event history, watchers."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.fakeapi.selectors import Predicate

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    group_version: str  # "v1" | "apps/v1" | ...
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def key(self) -> str:
        return f"{self.group_version}/{self.plural}"


KINDS: tuple[Kind, ...] = (
    Kind("v1", "pods", "Pod"),
    Kind("v1", "services", "Service"),
    Kind("v1", "endpoints", "Endpoints"),
    Kind("v1", "events", "Event"),
    Kind("v1", "namespaces", "Namespace", namespaced=False),
    Kind("v1", "nodes", "Node", namespaced=False),
    Kind("v1", "configmaps", "ConfigMap"),
    Kind("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    Kind("networking.k8s.io/v1", "ingresses", "Ingress"),
    Kind("networking.k8s.io/v1", "ingressclasses", "IngressClass", namespaced=False),
    Kind("apps/v1", "deployments", "Deployment"),
    Kind("apps/v1", "daemonsets", "DaemonSet"),
    Kind("coordination.k8s.io/v1", "leases", "Lease"),
    Kind("elbv2.k8s.aws/v1beta1", "targetgroupbindings", "TargetGroupBinding"),
    Kind("elbv2.k8s.aws/v1beta1", "ingressclassparams", "IngressClassParams", namespaced=False),
    # Gateway API (v1.6: every route kind is v1) and the AWS Load Balancer Controller's Gateway CRDs
    Kind("gateway.networking.k8s.io/v1", "gatewayclasses", "GatewayClass", namespaced=False),
    Kind("gateway.networking.k8s.io/v1", "gateways", "Gateway"),
    Kind("gateway.networking.k8s.io/v1", "httproutes", "HTTPRoute"),
    Kind("gateway.networking.k8s.io/v1", "grpcroutes", "GRPCRoute"),
    Kind("gateway.networking.k8s.io/v1", "tcproutes", "TCPRoute"),
    Kind("gateway.networking.k8s.io/v1", "udproutes", "UDPRoute"),
    Kind("gateway.networking.k8s.io/v1", "tlsroutes", "TLSRoute"),
    Kind("gateway.k8s.aws/v1", "targetgroupconfigurations", "TargetGroupConfiguration"),
    Kind("gateway.k8s.aws/v1", "loadbalancerconfigurations", "LoadBalancerConfiguration"),
    # EKS Auto Mode (served only where Auto Mode is enabled; tests disable it to see a cluster without)
    Kind("eks.amazonaws.com/v1", "ingressclassparams", "IngressClassParams", namespaced=False),
)
KINDS_BY_KEY = {k.key: k for k in KINDS}
KINDS_BY_OBJECT = {(k.group_version, k.kind): k for k in KINDS}


class Conflict(Exception):
    pass


class NotFound(Exception):
    pass


class AlreadyExists(Exception):
    pass


@dataclass(frozen=True)
class Event:
    version: int
    kind_key: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    previous: Obj | None  # the object before a MODIFIED, to turn selector moves into ADDED/DELETED


@dataclass(eq=False)  # identity: each watch request is its own subscriber
class Watcher:
    kind_key: str
    namespace: str | None
    matches: Predicate
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    found = KINDS_BY_OBJECT.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
    if found is None:
        raise ValueError(f"the fake API server does not serve {obj.get('apiVersion')} {obj.get('kind')}")
    return found


class ClusterState:
    """All objects. Mutations are synchronous and notify live watchers at once.

    ``history_limit`` bounds the replayable history: a watch from a version older than what is kept
    gets 410 Gone, as a compacted etcd would answer.
    """

    def __init__(self, history_limit: int = 10_000, disabled_kinds: Iterable[str] = ()) -> None:
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {k.key: {} for k in KINDS}
        self._history: deque[Event] = deque(maxlen=history_limit)
        self._version = 1000
        self._floor = 0  # versions at or below this were compacted away
        self._uids = itertools.count(1)
        self._watchers: set[Watcher] = set()
        self.disabled_kinds: set[str] = set(disabled_kinds)  # e.g. a CRD that is not installed
        self.logs: dict[tuple[str, str], str] = {}

    # reading ----------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    @property
    def oldest_replayable(self) -> int:
        """Watches from a version below this get 410 Gone."""
        if len(self._history) == self._history.maxlen:
            return max(self._floor, self._history[0].version - 1)
        return self._floor

    def select(self, kind: Kind, namespace: str | None, matches: Predicate) -> list[Obj]:
        items = self._objects[kind.key].values()
        return [
            obj for obj in items if (namespace is None or _meta(obj).get("namespace") == namespace) and matches(obj)
        ]

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        try:
            return self._objects[kind.key][(namespace if kind.namespaced else "", name)]
        except KeyError:
            raise NotFound(f'{kind.plural} "{name}" not found') from None

    def history_since(self, version: int) -> list[Event]:
        return [event for event in self._history if event.version > version]

    # writing ----------------------------------------------------------------------------------
    def _bump(self) -> str:
        self._version += 1
        return str(self._version)

    def _record(self, kind: Kind, type_: str, obj: Obj, previous: Obj | None) -> None:
        event = Event(self._version, kind.key, type_, obj, previous)
        self._history.append(event)
        for watcher in list(self._watchers):
            if watcher.kind_key == kind.key:
                watcher.queue.put_nowait(event)

    def create(self, obj: Obj) -> Obj:
        kind = kind_of(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not kind.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = "default"
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{next(self._uids):05d}"
        key = (meta.get("namespace", ""), meta["name"])
        if key in self._objects[kind.key]:
            raise AlreadyExists(f'{kind.plural} "{meta["name"]}" already exists')
        meta["uid"] = meta.get("uid") or f"00000000-0000-4000-8000-{next(self._uids):012d}"
        meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        meta["resourceVersion"] = self._bump()
        self._objects[kind.key][key] = obj
        self._record(kind, "ADDED", obj, None)
        return obj

    def replace(self, obj: Obj, *, check_version: bool = True) -> Obj:
        kind = kind_of(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "default") if kind.namespaced else ""
        if kind.namespaced:
            meta["namespace"] = namespace
        key = (namespace, meta.get("name", ""))
        current = self._objects[kind.key].get(key)
        if current is None:
            raise NotFound(f'{kind.plural} "{key[1]}" not found')
        sent = meta.get("resourceVersion")
        if check_version and sent and sent != _meta(current).get("resourceVersion"):
            raise Conflict(
                f'Operation cannot be fulfilled on {kind.plural} "{key[1]}": the object has been modified; '
                f"please apply your changes to the latest version and try again"
            )
        meta["uid"] = _meta(current).get("uid")
        meta["creationTimestamp"] = _meta(current).get("creationTimestamp")
        meta["resourceVersion"] = self._bump()
        self._objects[kind.key][key] = obj
        self._record(kind, "MODIFIED", obj, current)
        return obj

    def apply(self, obj: Obj) -> Obj:
        """Create or replace regardless of version: how tests and the demo seed the cluster."""
        kind = kind_of(obj)
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", "default") if kind.namespaced else "", meta.get("name", ""))
        if key in self._objects[kind.key]:
            return self.replace(obj, check_version=False)
        return self.create(obj)

    def delete(self, kind: Kind, namespace: str, name: str) -> Obj:
        key = (namespace if kind.namespaced else "", name)
        current = self._objects[kind.key].pop(key, None)
        if current is None:
            raise NotFound(f'{kind.plural} "{name}" not found')
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._bump()
        self._record(kind, "DELETED", gone, None)
        return gone

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: every older watch version now gets 410."""
        self._history.clear()
        self._floor = self._version

    # watching ---------------------------------------------------------------------------------
    def subscribe(self, kind: Kind, namespace: str | None, matches: Predicate) -> Watcher:
        watcher = Watcher(kind.key, namespace, matches)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)


def visible(event: Event, watcher_namespace: str | None, matches: Predicate) -> str | None:
    """The event type this watcher sees (selector moves become ADDED/DELETED), or None."""

    def fits(obj: Obj | None) -> bool:
        if obj is None:
            return False
        if watcher_namespace is not None and _meta(obj).get("namespace") != watcher_namespace:
            return False
        return matches(obj)

    now = fits(event.obj)
    if event.type == "MODIFIED":
        before = fits(event.previous)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        if before:
            return "DELETED"
        return None
    return event.type if now else None
