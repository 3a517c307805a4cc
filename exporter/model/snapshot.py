"""An immutable picture of the cluster at one moment, the only input checks read besides probe outcomes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

from exporter.model.objects import (
    EndpointSlice,
    Ingress,
    IngressClass,
    Node,
    ObjectMeta,
    Pod,
    Service,
    TargetGroupBinding,
)


class _HasMeta(Protocol):
    @property
    def meta(self) -> ObjectMeta: ...


_T = TypeVar("_T", bound=_HasMeta)


def _by_key(items: Iterable[_T]) -> dict[str, _T]:
    return {item.meta.key: item for item in items}


@dataclass(frozen=True)
class ClusterSnapshot:
    """Objects keyed by ``namespace/name`` (cluster-scoped objects by name).

    ``generation`` grows with every rebuild so consumers can tell a new picture from an old one.
    ``absent`` names the resources the API server does not serve (a missing CRD), so a check can
    say "TargetGroupBindings are not installed" instead of "there are none".
    """

    generation: int = 0
    pods: Mapping[str, Pod] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    endpoint_slices: Mapping[str, EndpointSlice] = field(default_factory=dict)
    ingresses: Mapping[str, Ingress] = field(default_factory=dict)
    ingress_classes: Mapping[str, IngressClass] = field(default_factory=dict)
    target_group_bindings: Mapping[str, TargetGroupBinding] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

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
        absent: Iterable[str] = (),
    ) -> ClusterSnapshot:
        return cls(
            generation=generation,
            pods=_by_key(pods),
            services=_by_key(services),
            endpoint_slices=_by_key(endpoint_slices),
            ingresses=_by_key(ingresses),
            ingress_classes=_by_key(ingress_classes),
            target_group_bindings=_by_key(target_group_bindings),
            nodes=_by_key(nodes),
            absent=frozenset(absent),
        )

    @cached_property
    def pods_by_namespace(self) -> Mapping[str, tuple[Pod, ...]]:
        grouped: dict[str, list[Pod]] = defaultdict(list)
        for pod in self.pods.values():
            grouped[pod.meta.namespace].append(pod)
        return {ns: tuple(pods) for ns, pods in grouped.items()}

    @cached_property
    def slices_by_service(self) -> Mapping[str, tuple[EndpointSlice, ...]]:
        grouped: dict[str, list[EndpointSlice]] = defaultdict(list)
        for eps in self.endpoint_slices.values():
            if eps.service_name:
                grouped[f"{eps.meta.namespace}/{eps.service_name}"].append(eps)
        return {key: tuple(slices) for key, slices in grouped.items()}

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get(f"{namespace}/{name}")

    def selected_pods(self, service: Service) -> tuple[Pod, ...]:
        """Pods the Service's selector matches (none for a selector-less Service)."""
        if not service.selector:
            return ()
        return tuple(
            pod
            for pod in self.pods_by_namespace.get(service.meta.namespace, ())
            if matches(service.selector, pod.meta.labels)
        )


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
