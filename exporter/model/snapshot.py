"""An immutable picture of the cluster at one moment, the only input checks read besides probe outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.model.gateway import FrontEnds
from exporter.model.index import ObjectIndex
from exporter.model.objects import (
    Deployment,
    EndpointSlice,
    Ingress,
    IngressClass,
    KubeEvent,
    Node,
    Pod,
    Service,
    TargetGroupBinding,
)


def _empty() -> ObjectIndex[Any]:
    return ObjectIndex({})


@dataclass(frozen=True)
class ClusterSnapshot:
    """Objects keyed by ``namespace/name`` (cluster-scoped objects by name), grouped by namespace.

    ``generation`` grows with every rebuild. ``absent`` names resources the API server does not serve
    (a missing CRD) and ``forbidden`` those RBAC hides, so checks can say "cannot see" rather than
    "there are none". ``controller_logs`` holds recent log text of the AWS Load Balancer Controller's
    pods, keyed by pod key.
    """

    generation: int = 0
    pods: ObjectIndex[Pod] = field(default_factory=_empty)
    services: ObjectIndex[Service] = field(default_factory=_empty)
    endpoint_slices: ObjectIndex[EndpointSlice] = field(default_factory=_empty)
    ingresses: ObjectIndex[Ingress] = field(default_factory=_empty)
    ingress_classes: ObjectIndex[IngressClass] = field(default_factory=_empty)
    target_group_bindings: ObjectIndex[TargetGroupBinding] = field(default_factory=_empty)
    nodes: ObjectIndex[Node] = field(default_factory=_empty)
    deployments: ObjectIndex[Deployment] = field(default_factory=_empty)
    events: ObjectIndex[KubeEvent] = field(default_factory=_empty)
    controller_logs: Mapping[str, str] = field(default_factory=dict)
    controller_logs_error: str | None = None
    front_ends: FrontEnds = field(default_factory=FrontEnds)  # Gateway API and front-end configuration
    absent: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()
    # Lazily built per-namespace indexes; a snapshot never changes, so they never go stale.
    _labels: dict[str, dict[tuple[str, str], set[str]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    _slices: dict[str, dict[str, list[EndpointSlice]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        *,
        generation: int = 0,
        pods: Iterable[Pod] = (),
        services: Iterable[Service] = (),
        endpoint_slices: Iterable[EndpointSlice] = (),
        ingresses: Iterable[Ingress] = (),
        ingress_classes: Iterable[IngressClass] = (),
        target_group_bindings: Iterable[TargetGroupBinding] = (),
        nodes: Iterable[Node] = (),
        deployments: Iterable[Deployment] = (),
        events: Iterable[KubeEvent] = (),
        controller_logs: Mapping[str, str] | None = None,
        front_ends: FrontEnds | None = None,
        absent: Iterable[str] = (),
        forbidden: Iterable[str] = (),
    ) -> ClusterSnapshot:
        return cls(
            generation=generation,
            pods=ObjectIndex.of(pods),
            services=ObjectIndex.of(services),
            endpoint_slices=ObjectIndex.of(endpoint_slices),
            ingresses=ObjectIndex.of(ingresses),
            ingress_classes=ObjectIndex.of(ingress_classes),
            target_group_bindings=ObjectIndex.of(target_group_bindings),
            nodes=ObjectIndex.of(nodes),
            deployments=ObjectIndex.of(deployments),
            events=ObjectIndex.of(events),
            controller_logs=dict(controller_logs or {}),
            front_ends=front_ends or FrontEnds(),
            absent=frozenset(absent),
            forbidden=frozenset(forbidden),
        )

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get(f"{namespace}/{name}")

    def slices_of(self, service: Service) -> tuple[EndpointSlice, ...]:
        namespace = service.meta.namespace
        index = self._slices.get(namespace)
        if index is None:
            index = {}
            for eps in self.endpoint_slices.in_namespace(namespace).values():
                if eps.service_name:
                    index.setdefault(eps.service_name, []).append(eps)
            self._slices[namespace] = index
        return tuple(index.get(service.meta.name, ()))

    def selected_pods(self, service: Service) -> tuple[Pod, ...]:
        """Pods the Service's selector matches (none for a selector-less Service)."""
        if not service.selector:
            return ()
        return self.pods_matching(service.meta.namespace, service.selector)

    def pods_matching(self, namespace: str, selector: Mapping[str, str]) -> tuple[Pod, ...]:
        """Pods of the namespace whose labels include every pair of ``selector``, via a label index."""
        index = self._labels.get(namespace)
        pods = self.pods.in_namespace(namespace)
        if index is None:
            index = {}
            for key, pod in pods.items():
                for pair in pod.meta.labels.items():
                    index.setdefault(pair, set()).add(key)
            self._labels[namespace] = index
        candidates = sorted((index.get(pair, set()) for pair in selector.items()), key=len)
        if not candidates:
            return ()
        keys = candidates[0].intersection(*candidates[1:])
        return tuple(pods[key] for key in sorted(keys))

    def unseen(self, resource: str) -> str | None:
        """Why lbdoctor cannot see a resource, or None when it can."""
        if resource in self.forbidden:
            return f"RBAC forbids listing {resource}"
        if resource in self.absent:
            return f"the API server does not serve {resource}"
        return None


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
