"""The expected state follows kube-proxy's rules for which Services and endpoints it programs."""

from __future__ import annotations

from dataclasses import replace

from exporter.dataplane.expected import ExpectedPort, expected_state
from exporter.model.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Node,
    NodeAddress,
    ObjectMeta,
    Service,
    ServicePort,
)
from exporter.model.snapshot import ClusterSnapshot

NODE = "node-a"
ZONE = "eu-west-1a"


def service(name: str = "web", **spec: object) -> Service:
    base: dict[str, object] = {
        "meta": ObjectMeta("shop", name),
        "type": "ClusterIP",
        "selector": {"app": name},
        "ports": (ServicePort("http", 80, 8080),),
        "cluster_ip": "172.20.0.10",
    }
    base.update(spec)
    return Service(**base)  # type: ignore[arg-type]


def ep(ip: str, node: str = NODE, **conditions: object) -> Endpoint:
    return Endpoint(addresses=(ip,), node_name=node, pod_name=f"pod-{ip.rsplit('.', 1)[-1]}", **conditions)  # type: ignore[arg-type]


def slice_of(*endpoints: Endpoint, name: str = "web", suffix: str = "a", **extra: object) -> EndpointSlice:
    base: dict[str, object] = {
        "meta": ObjectMeta("shop", f"{name}-{suffix}", labels={"kubernetes.io/service-name": name}),
        "service_name": name,
        "address_type": "IPv4",
        "endpoints": endpoints,
        "ports": (EndpointPort("http", 8080),),
    }
    base.update(extra)
    return EndpointSlice(**base)  # type: ignore[arg-type]


def only(snapshot: ClusterSnapshot, node: str = NODE) -> ExpectedPort:
    [port] = expected_state(snapshot, node).ports
    return port


def keys(*ips: str) -> frozenset[tuple[str, int]]:
    return frozenset((ip, 8080) for ip in ips)


def test_ready_endpoints_are_programmed_not_ready_ones_are_not() -> None:
    port = only(
        ClusterSnapshot.of(
            services=[service()],
            endpoint_slices=[slice_of(ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3"))],
        )
    )
    assert port.cluster.required == port.cluster.allowed == keys("10.0.0.1", "10.0.0.3")
    assert port.local.allowed == frozenset()  # no Local policy: no SVL chain
    assert port.pods[("10.0.0.1", 8080)] == "pod-1"


def test_serving_terminating_endpoints_are_the_fallback_only_when_none_is_ready() -> None:
    draining = ep("10.0.0.5", ready=False, serving=True, terminating=True)
    gone = ep("10.0.0.6", ready=False, serving=False, terminating=True)
    alone = only(ClusterSnapshot.of(services=[service()], endpoint_slices=[slice_of(draining, gone)]))
    assert alone.cluster.required == keys("10.0.0.5")
    mixed = only(ClusterSnapshot.of(services=[service()], endpoint_slices=[slice_of(draining, ep("10.0.0.1"))]))
    assert mixed.cluster.required == keys("10.0.0.1")


def test_local_policies_keep_this_nodes_endpoints() -> None:
    lb = service(
        type="LoadBalancer",
        ports=(ServicePort("http", 80, 8080, node_port=30080),),
        external_traffic_policy="Local",
        health_check_node_port=32000,
    )
    port = only(
        ClusterSnapshot.of(services=[lb], endpoint_slices=[slice_of(ep("10.0.0.1"), ep("10.0.0.2", node="node-b"))])
    )
    assert port.external_local and port.node_port == 30080 and port.health_check_node_port == 32000
    assert port.cluster.required == keys("10.0.0.1", "10.0.0.2")  # ClusterIP traffic still uses all of them
    assert port.local.required == keys("10.0.0.1")
    assert port.external is port.local and port.internal is port.cluster
    assert port.nodes[("10.0.0.2", 8080)] == "node-b"

    internal = only(
        ClusterSnapshot.of(
            services=[service(internal_traffic_policy="Local")],
            endpoint_slices=[slice_of(ep("10.0.0.1"), ep("10.0.0.2", node="node-b"))],
        )
    )
    assert internal.internal is internal.local and internal.local.required == keys("10.0.0.1")
    assert internal.cluster.allowed == frozenset()  # nothing uses the Cluster chain


def test_zone_hints_narrow_the_set_when_the_node_zone_is_known() -> None:
    hinted = [
        ep("10.0.0.1", hint_zones=(ZONE,)),
        ep("10.0.0.2", node="node-b", hint_zones=("eu-west-1b",)),
    ]
    snapshot = ClusterSnapshot.of(services=[service()], endpoint_slices=[slice_of(*hinted)])
    known = only(
        replace(snapshot, nodes={NODE: Node(ObjectMeta("", NODE, labels={"topology.kubernetes.io/zone": ZONE}))})
    )
    assert known.topology == "zone" and known.cluster.required == keys("10.0.0.1")
    unknown = only(snapshot)  # no Node object: any hinted endpoint may be programmed, none must be
    assert unknown.topology == "unknown"
    assert unknown.cluster.required == frozenset() and unknown.cluster.allowed == keys("10.0.0.1", "10.0.0.2")
    other_zone = only(
        replace(
            snapshot, nodes={NODE: Node(ObjectMeta("", NODE, labels={"topology.kubernetes.io/zone": "eu-west-1c"}))}
        )
    )
    assert other_zone.topology == "" and other_zone.cluster.required == keys("10.0.0.1", "10.0.0.2")


def test_hints_apply_only_when_every_ready_endpoint_has_one() -> None:
    partial = [ep("10.0.0.1", hint_zones=(ZONE,)), ep("10.0.0.2", node="node-b")]
    port = only(ClusterSnapshot.of(services=[service()], endpoint_slices=[slice_of(*partial)]), NODE)
    assert port.topology == "" and port.cluster.required == keys("10.0.0.1", "10.0.0.2")


def test_node_hints_prefer_this_node() -> None:
    hinted = [ep("10.0.0.1", hint_nodes=(NODE,)), ep("10.0.0.2", node="node-b", hint_nodes=("node-b",))]
    port = only(ClusterSnapshot.of(services=[service()], endpoint_slices=[slice_of(*hinted)]))
    assert port.topology == "node" and port.cluster.required == keys("10.0.0.1")


def test_services_kube_proxy_does_not_program() -> None:
    ignored = [
        service("headless", cluster_ip="None"),
        service("external", type="ExternalName", cluster_ip=None),
        service(
            "other-proxy",
            meta=ObjectMeta("shop", "other-proxy", labels={"service.kubernetes.io/service-proxy-name": "x"}),
        ),
    ]
    assert expected_state(ClusterSnapshot.of(services=ignored), NODE).ports == ()


def test_endpoints_are_deduplicated_across_slices_and_matched_by_port_name_and_protocol() -> None:
    first = slice_of(ep("10.0.0.1", ready=False, terminating=True), suffix="a")
    second = slice_of(ep("10.0.0.1"), suffix="b")
    udp = slice_of(ep("10.0.0.9"), suffix="c", ports=(EndpointPort("http", 8080, "UDP"),))
    other_port = slice_of(ep("10.0.0.8"), suffix="d", ports=(EndpointPort("metrics", 8080),))
    port = only(ClusterSnapshot.of(services=[service()], endpoint_slices=[first, second, udp, other_port]))
    assert port.cluster.required == keys("10.0.0.1")  # the non-terminating copy wins


def test_dual_stack_services_get_one_port_per_family_and_ipv6_is_canonical() -> None:
    dual = service(cluster_ips=("172.20.0.10", "fd00:10:96:0:0:0:0:a"))
    v6 = slice_of(ep("fd00:244:0:0:0:0:0:5"), suffix="v6", address_type="IPv6")
    state = expected_state(ClusterSnapshot.of(services=[dual], endpoint_slices=[slice_of(ep("10.0.0.1")), v6]), NODE)
    by_family = {port.family: port for port in state.ports}
    assert set(by_family) == {"IPv4", "IPv6"}
    assert by_family["IPv6"].cluster_ip == "fd00:10:96::a"
    assert by_family["IPv6"].cluster.required == frozenset({("fd00:244::5", 8080)})
    assert by_family["IPv4"].cluster.required == keys("10.0.0.1")


def test_node_addresses_and_large_cluster_mode() -> None:
    node = Node(ObjectMeta("", NODE), (NodeAddress("InternalIP", "10.0.1.23"),))
    many = slice_of(*(ep(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1001)))
    state = expected_state(ClusterSnapshot.of(services=[service()], endpoint_slices=[many], nodes=[node]), NODE)
    assert state.node_addresses == frozenset({"10.0.1.23"})
    assert state.endpoints == 1001 and state.large_cluster
