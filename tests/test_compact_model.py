"""What the roles keep of the cluster: only what the checks read, packed, shared where it repeats."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.kube import convert
from exporter.lb import annotations as ann
from exporter.model.objects import Endpoint, EndpointSlice, ObjectMeta

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def test_every_annotation_lbdoctor_reads_is_kept() -> None:
    # Every upper-case string of the annotations module naming a key, except the names of a controller or a
    # load-balancer class (values of spec fields, not annotation keys).
    names = [
        v
        for n, v in vars(ann).items()
        if n.isupper() and isinstance(v, str) and "/" in v and " " not in v and not n.endswith(("_CONTROLLER", "_CLASS"))
    ]
    names += list(ann.MISSPELLINGS)  # read to say they are misspelt
    names += list(ann.AUTO_MODE_UNSUPPORTED)  # read to say EKS Auto Mode ignores them
    assert names and all(name.startswith(convert.READ_ANNOTATIONS) for name in names), names
    assert "ingressclass.kubernetes.io/is-default-class".startswith(convert.READ_ANNOTATIONS)


def _service(index: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"svc-{index}",
            "namespace": "team-a",
            "uid": f"0f1e2d3c-{index:04d}-4b5a-9687-a1b2c3d4e5f6",
            "labels": {"app": "web", "service.kubernetes.io/headless": ""},
            "annotations": {
                LAST_APPLIED: '{"apiVersion":"v1","kind":"Service"' + " " * 2000 + "}",
                ann.NLB_TYPE: "external",
            },
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "clusterIP": "10.100.0.1",
            "clusterIPs": ["10.100.0.1"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def test_a_service_keeps_what_the_checks_read() -> None:
    service = convert.service(_service(1))
    assert dict(service.meta.annotations) == {ann.NLB_TYPE: "external"}  # not the 2 KB last-applied copy
    assert dict(service.meta.labels) == {"service.kubernetes.io/headless": ""}  # kube-proxy reads this one
    assert not hasattr(service.meta, "uid")
    assert service.cluster_ip == "10.100.0.1" and service.cluster_ips == ()  # one copy of a single-stack address
    other = convert.service(_service(2))
    assert other.meta.namespace is service.meta.namespace  # shared, not one string per object
    assert other.ports[0].protocol is service.ports[0].protocol


def test_an_ingress_keeps_the_controllers_annotations_only() -> None:
    raw = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "labels": {"team": "a"},
            "annotations": {LAST_APPLIED: "{}", ann.ALB_HC_PATH: "/healthz", ann.LEGACY_INGRESS_CLASS: "alb"},
        },
        "spec": {},
    }
    ingress = convert.ingress(raw)
    assert dict(ingress.meta.annotations) == {ann.ALB_HC_PATH: "/healthz", ann.LEGACY_INGRESS_CLASS: "alb"}
    assert not ingress.meta.labels


names = st.text(st.characters(codec="utf-8"), max_size=20)
endpoints = st.builds(
    Endpoint,
    addresses=st.lists(st.from_regex(r"[0-9a-f.:]{1,15}", fullmatch=True), max_size=3).map(tuple),
    ready=st.sampled_from([None, False, True]),
    serving=st.sampled_from([None, False, True]),
    terminating=st.sampled_from([None, False, True]),
    node_name=st.one_of(st.none(), st.sampled_from(["n1", "n2"])),
    pod_name=st.one_of(st.none(), st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True)),
    zone=st.one_of(st.none(), st.just("eu-west-1a")),
    hint_zones=st.one_of(st.none(), st.just(("eu-west-1a",))),
    hint_nodes=st.one_of(st.none(), st.just(("n1",))),
)


@given(st.lists(endpoints, max_size=8))
def test_packed_endpoints_read_back_as_given(given_endpoints: list[Endpoint]) -> None:
    eps = EndpointSlice(ObjectMeta("shop", "web-x"), "web", "IPv4", given_endpoints)
    assert eps.endpoints == tuple(given_endpoints)
    assert eps == EndpointSlice(ObjectMeta("shop", "web-x"), "web", "IPv4", tuple(given_endpoints))


@given(names, st.lists(names, max_size=3))
def test_no_name_or_address_breaks_the_packing(pod: str, addresses: list[str]) -> None:
    """Whatever a tenant writes in a manual EndpointSlice, the endpoints stay apart: a separator in an
    address drops that address, in a pod name it is replaced."""
    eps = EndpointSlice(
        ObjectMeta("shop", "x"),
        "web",
        "IPv4",
        (Endpoint(tuple(addresses), pod_name=pod), Endpoint(("10.0.0.9",), pod_name="next", ready=True)),
    )
    first, second = eps.endpoints
    assert second == Endpoint(("10.0.0.9",), pod_name="next", ready=True)
    assert all(address in addresses for address in first.addresses)
    assert first.pod_name is not None and len(first.pod_name) == len(pod)


def test_a_slice_costs_tens_of_bytes_per_endpoint() -> None:
    """100,000 endpoints (every node agent holds them all) in a few MiB, not the ~40 MiB of objects."""
    raw = [
        {
            "metadata": {
                "name": f"svc-{index:05d}-abcde",
                "namespace": f"team-{index % 100:03d}",
                "labels": {
                    "kubernetes.io/service-name": f"svc-{index:05d}",
                    "endpointslice.kubernetes.io/managed-by": "x",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [f"10.{index // 250 % 250}.{index % 250}.{replica + 1}"],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": f"ip-10-0-{(index + replica) % 4}-{(index + replica) % 250}",
                    "targetRef": {"kind": "Pod", "name": f"svc-{index:05d}-{replica:02d}", "namespace": "x"},
                }
                for replica in range(10)
            ],
        }
        for index in range(2000)
    ]
    gc.collect()
    tracemalloc.start()
    kept = [convert.endpoint_slice(item) for item in raw]
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert kept[5].endpoints[3].pod_name == "svc-00005-03" and kept[5].endpoints[3].ready is True
    assert dict(kept[5].meta.labels) == {"kubernetes.io/service-name": "svc-00005"}
    per_endpoint = used / 20_000
    assert per_endpoint < 120, per_endpoint
