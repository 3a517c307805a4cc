"""Describe* answers (plain dicts) -> the typed model. Pure; tolerant of missing fields.

AWS adds fields and moto leaves some out, so every reader takes what is there and defaults the
rest. An entry without its identifier cannot be used and raises ``MalformedEntry``; the collector
counts it as an error and carries on with the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exporter.aws.model import (
    TRAFFIC_PORT,
    HealthCheckSettings,
    Instance,
    LoadBalancer,
    NaclEntry,
    NetworkAcl,
    NetworkInterface,
    Route,
    RouteTable,
    SecurityGroup,
    SgRule,
    Subnet,
    TargetGroup,
    TargetHealth,
    Vpc,
)

Raw = Mapping[str, Any]


class MalformedEntry(ValueError):
    """An entry of an AWS answer lacks the field that identifies it."""


def _text(raw: Raw, key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else str(value)


def _required(raw: Raw, key: str, what: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEntry(f"{what} without {key}")
    return value


def _int(raw: Raw, key: str) -> int | None:
    value = raw.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _list(raw: Raw, key: str) -> list[Raw]:
    value = raw.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def tags(items: Iterable[Raw]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in items if "Key" in tag}


def target_group(raw: Raw, tag_map: Mapping[str, str] | None = None) -> TargetGroup:
    arn = _required(raw, "TargetGroupArn", "target group")
    matcher = raw.get("Matcher") if isinstance(raw.get("Matcher"), Mapping) else {}
    assert isinstance(matcher, Mapping)
    health_check = HealthCheckSettings(
        enabled=bool(raw.get("HealthCheckEnabled", True)),
        protocol=_text(raw, "HealthCheckProtocol"),
        port=_text(raw, "HealthCheckPort") or TRAFFIC_PORT,
        path=_text(raw, "HealthCheckPath"),
        http_codes=_text(matcher, "HttpCode"),
        grpc_codes=_text(matcher, "GrpcCode"),
        interval=_int(raw, "HealthCheckIntervalSeconds"),
        timeout=_int(raw, "HealthCheckTimeoutSeconds"),
        healthy_threshold=_int(raw, "HealthyThresholdCount"),
        unhealthy_threshold=_int(raw, "UnhealthyThresholdCount"),
    )
    return TargetGroup(
        arn=arn,
        name=_text(raw, "TargetGroupName") or arn.rsplit("/", 2)[-2],
        target_type=(_text(raw, "TargetType") or "instance").lower(),
        protocol=_text(raw, "Protocol"),
        port=_int(raw, "Port"),
        vpc_id=_text(raw, "VpcId"),
        protocol_version=_text(raw, "ProtocolVersion"),
        ip_address_type=(_text(raw, "IpAddressType") or "ipv4").lower(),
        load_balancer_arns=tuple(str(a) for a in raw.get("LoadBalancerArns") or ()),
        health_check=health_check,
        tags=dict(tag_map or {}),
    )


def target_health(raw: Raw) -> TargetHealth:
    target = raw.get("Target") if isinstance(raw.get("Target"), Mapping) else {}
    health = raw.get("TargetHealth") if isinstance(raw.get("TargetHealth"), Mapping) else {}
    assert isinstance(target, Mapping)
    assert isinstance(health, Mapping)
    return TargetHealth(
        id=_required(target, "Id", "target health entry"),
        port=_int(target, "Port"),
        state=(_text(health, "State") or "unknown").lower(),
        reason=_text(health, "Reason"),
        description=_text(health, "Description"),
        availability_zone=_text(target, "AvailabilityZone"),
        health_check_port=_text(raw, "HealthCheckPort"),
    )


def load_balancer(raw: Raw) -> LoadBalancer:
    arn = _required(raw, "LoadBalancerArn", "load balancer")
    return LoadBalancer(
        arn=arn,
        name=_text(raw, "LoadBalancerName") or arn,
        type=(_text(raw, "Type") or "application").lower(),
        scheme=_text(raw, "Scheme") or "internal",
        vpc_id=_text(raw, "VpcId"),
        security_groups=tuple(str(g) for g in raw.get("SecurityGroups") or ()),
        subnet_ids=tuple(str(z["SubnetId"]) for z in _list(raw, "AvailabilityZones") if z.get("SubnetId")),
        ip_address_type=(_text(raw, "IpAddressType") or "ipv4").lower(),
    )


def _rule(raw: Raw) -> SgRule:
    cidrs = [str(r["CidrIp"]) for r in _list(raw, "IpRanges") if "CidrIp" in r]
    cidrs += [str(r["CidrIpv6"]) for r in _list(raw, "Ipv6Ranges") if "CidrIpv6" in r]
    return SgRule(
        protocol=str(raw.get("IpProtocol", "-1")).lower(),
        from_port=_int(raw, "FromPort"),
        to_port=_int(raw, "ToPort"),
        cidrs=tuple(cidrs),
        group_ids=tuple(str(p["GroupId"]) for p in _list(raw, "UserIdGroupPairs") if "GroupId" in p),
        prefix_list_ids=tuple(str(p["PrefixListId"]) for p in _list(raw, "PrefixListIds") if "PrefixListId" in p),
    )


def security_group(raw: Raw) -> SecurityGroup:
    return SecurityGroup(
        id=_required(raw, "GroupId", "security group"),
        name=_text(raw, "GroupName") or "",
        vpc_id=_text(raw, "VpcId"),
        tags=tags(_list(raw, "Tags")),
        ingress=tuple(_rule(p) for p in _list(raw, "IpPermissions")),
        egress=tuple(_rule(p) for p in _list(raw, "IpPermissionsEgress")),
    )


def network_interface(raw: Raw) -> NetworkInterface:
    addresses = [str(a["PrivateIpAddress"]) for a in _list(raw, "PrivateIpAddresses") if "PrivateIpAddress" in a]
    primary = _text(raw, "PrivateIpAddress")
    if primary and primary not in addresses:
        addresses.insert(0, primary)
    addresses += [str(a["Ipv6Address"]) for a in _list(raw, "Ipv6Addresses") if "Ipv6Address" in a]
    attachment = raw.get("Attachment") if isinstance(raw.get("Attachment"), Mapping) else {}
    assert isinstance(attachment, Mapping)
    return NetworkInterface(
        id=_required(raw, "NetworkInterfaceId", "network interface"),
        subnet_id=_text(raw, "SubnetId"),
        vpc_id=_text(raw, "VpcId"),
        private_ips=tuple(addresses),
        group_ids=tuple(str(g["GroupId"]) for g in _list(raw, "Groups") if "GroupId" in g),
        instance_id=_text(attachment, "InstanceId"),
        interface_type=_text(raw, "InterfaceType") or "interface",
        description=_text(raw, "Description") or "",
    )


def instances(reservations: Iterable[Raw]) -> Iterable[Instance]:
    for reservation in reservations:
        for raw in _list(reservation, "Instances"):
            yield instance(raw)


def instance(raw: Raw) -> Instance:
    interfaces = _list(raw, "NetworkInterfaces")
    primary = next(
        (i for i in interfaces if (i.get("Attachment") or {}).get("DeviceIndex") == 0),
        interfaces[0] if interfaces else None,
    )
    groups = _list(primary, "Groups") if primary is not None else _list(raw, "SecurityGroups")
    state = raw.get("State") if isinstance(raw.get("State"), Mapping) else {}
    assert isinstance(state, Mapping)
    return Instance(
        id=_required(raw, "InstanceId", "instance"),
        state=_text(state, "Name") or "unknown",
        subnet_id=_text(raw, "SubnetId"),
        vpc_id=_text(raw, "VpcId"),
        private_ip=_text(raw, "PrivateIpAddress"),
        group_ids=tuple(str(g["GroupId"]) for g in groups if "GroupId" in g),
    )


def subnet(raw: Raw) -> Subnet:
    ipv6 = [
        str(a["Ipv6CidrBlock"])
        for a in _list(raw, "Ipv6CidrBlockAssociationSet")
        if "Ipv6CidrBlock" in a and not _leaving(a.get("Ipv6CidrBlockState"))
    ]
    return Subnet(
        id=_required(raw, "SubnetId", "subnet"),
        vpc_id=_text(raw, "VpcId"),
        cidr=_text(raw, "CidrBlock"),
        ipv6_cidrs=tuple(ipv6),
        availability_zone=_text(raw, "AvailabilityZone"),
    )


def _leaving(state: Any) -> bool:
    """An association on its way out (or failed) no longer routes; anything else counts."""
    text = str(state.get("State", "")) if isinstance(state, Mapping) else ""
    return text in ("disassociating", "disassociated", "failing", "failed")


def network_acl(raw: Raw) -> NetworkAcl:
    entries = []
    for entry in _list(raw, "Entries"):
        cidr = _text(entry, "CidrBlock") or _text(entry, "Ipv6CidrBlock")
        number = _int(entry, "RuleNumber")
        if cidr is None or number is None:
            continue
        ports = entry.get("PortRange") if isinstance(entry.get("PortRange"), Mapping) else None
        entries.append(
            NaclEntry(
                rule_number=number,
                protocol=str(entry.get("Protocol", "-1")),
                allow=str(entry.get("RuleAction", "deny")).lower() == "allow",
                egress=bool(entry.get("Egress", False)),
                cidr=cidr,
                port_from=_int(ports, "From") if ports else None,
                port_to=_int(ports, "To") if ports else None,
            )
        )
    return NetworkAcl(
        id=_required(raw, "NetworkAclId", "network ACL"),
        vpc_id=_text(raw, "VpcId"),
        subnet_ids=tuple(str(a["SubnetId"]) for a in _list(raw, "Associations") if a.get("SubnetId")),
        entries=tuple(entries),
        is_default=bool(raw.get("IsDefault", False)),
    )


_ROUTE_TARGETS = (
    "GatewayId",
    "NatGatewayId",
    "TransitGatewayId",
    "NetworkInterfaceId",
    "InstanceId",
    "VpcPeeringConnectionId",
    "EgressOnlyInternetGatewayId",
    "CarrierGatewayId",
    "LocalGatewayId",
    "CoreNetworkArn",
)


def route_table(raw: Raw) -> RouteTable:
    routes = []
    for route in _list(raw, "Routes"):
        target = next((str(route[key]) for key in _ROUTE_TARGETS if route.get(key)), "unknown")
        routes.append(
            Route(
                destination=_text(route, "DestinationCidrBlock") or _text(route, "DestinationIpv6CidrBlock"),
                target=target,
                state=(_text(route, "State") or "active").lower(),
                prefix_list_id=_text(route, "DestinationPrefixListId"),
            )
        )
    associations = _list(raw, "Associations")
    return RouteTable(
        id=_required(raw, "RouteTableId", "route table"),
        vpc_id=_text(raw, "VpcId"),
        subnet_ids=tuple(str(a["SubnetId"]) for a in associations if a.get("SubnetId")),
        main=any(bool(a.get("Main")) for a in associations),
        routes=tuple(routes),
    )


def vpc(raw: Raw) -> Vpc:
    cidrs = [str(a["CidrBlock"]) for a in _list(raw, "CidrBlockAssociationSet") if "CidrBlock" in a]
    if not cidrs and raw.get("CidrBlock"):
        cidrs.append(str(raw["CidrBlock"]))
    cidrs += [str(a["Ipv6CidrBlock"]) for a in _list(raw, "Ipv6CidrBlockAssociationSet") if "Ipv6CidrBlock" in a]
    return Vpc(id=_required(raw, "VpcId", "VPC"), cidrs=tuple(cidrs))
