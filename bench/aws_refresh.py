"""AWS refresh: 500 target groups x 20 targets — wall time of a full refresh, calls per refresh and per hour.

Three measurements:

1. **Full refresh against moto** (server mode, real HTTP on loopback, real boto3): 500 target groups
   tagged for the cluster, 20 ip targets each (secondary IPs of 200 ENIs, as the VPC CNI assigns
   them), 50 ALBs with 10 listeners each. One ``collect(full=True)`` — the topology (target groups,
   tags, LBs, ENIs, SGs, subnets, NACLs, routes, VPC) and every target group's DescribeTargetHealth —
   timed at several client-side ELBv2 rates, with every DescribeTargetHealth send time recorded to
   prove no second-long window exceeded the limiter's budget.
2. **The checks** (``evaluate_aws``) over that snapshot: 10,000 targets through elb_target_health,
   security_groups and network.
3. **One simulated hour** at the default cadence (fake clock, canned answers, the real collector and
   limiter): API calls per hour, by operation, all healthy and with 1 % of target groups hot.

    .venv/bin/python -m bench.aws_refresh                       # everything (about 3 minutes)
    .venv/bin/python -m bench.aws_refresh --rates 60 --skip-hour  # one quick refresh
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

CLUSTER = "bench"
REGION = "us-east-1"


def _environment(url: str) -> None:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_ENDPOINT_URL=url,
    )


def seed(url: str, groups: int, targets: int) -> dict[int, list[str]]:
    """The cluster's AWS side in moto; returns each target group's target IPs."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
    elbv2 = boto3.client("elbv2", region_name=REGION, endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    lb_subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in ((0, "a"), (1, "b"))
    ]
    # Two /18s: 32,000 addresses, room for 10,000 pod IPs drawn at random without many collisions.
    node_subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{64 * i}.0/18", AvailabilityZone=f"{REGION}{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in ((1, "a"), (2, "b"))
    ]
    lb_sg = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
    node_sg = ec2.create_security_group(GroupName="nodes", Description="nodes", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=node_sg, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": lb_sg}]}]
    )
    # Pod IPs: secondary addresses of node ENIs (the VPC CNI's layout), 50 per ENI.
    addresses: list[str] = []
    needed = groups * targets
    per_eni = 50
    index = 0
    while len(addresses) < needed:
        eni = ec2.create_network_interface(
            SubnetId=node_subnets[index % 2], Groups=[node_sg], SecondaryPrivateIpAddressCount=per_eni - 1
        )["NetworkInterface"]
        addresses = list(dict.fromkeys([*addresses, *(a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"])]))
        index += 1
    placed: dict[int, list[str]] = {}
    random.Random(1).shuffle(addresses)
    placed: dict[int, list[str]] = {}
    lbs = [
        elbv2.create_load_balancer(Name=f"k8s-lb-{i}", Subnets=lb_subnets, SecurityGroups=[lb_sg])["LoadBalancers"][0][
            "LoadBalancerArn"
        ]
        for i in range(max(groups // 10, 1))
    ]
    for index in range(groups):
        arn = elbv2.create_target_group(
            Name=f"k8s-ns{index % 40}-svc{index}",
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            TargetType="ip",
            HealthCheckPath="/healthz",
            Tags=[
                {"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER},
                {"Key": "service.k8s.aws/stack", "Value": f"ns{index % 40}/svc{index}"},
            ],
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.create_listener(
            LoadBalancerArn=lbs[index % len(lbs)],
            Protocol="HTTP",
            Port=8000 + index // len(lbs),
            DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
        )
        chunk = addresses[index * targets : (index + 1) * targets]
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ip, "Port": 8080} for ip in chunk])
        placed[index] = chunk
    return placed


def _max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def cluster(placed: dict[int, list[str]]) -> Any:
    """The Kubernetes side: a pod behind every target IP, so every ELB target maps to a pod."""
    from exporter.model.objects import ObjectMeta, Pod
    from exporter.model.snapshot import ClusterSnapshot

    pods = [
        Pod(ObjectMeta(f"ns{index % 40}", f"svc{index}-{n}", labels={"app": f"svc{index}"}), "node-1", "Running", ip)
        for index, ips in placed.items()
        for n, ip in enumerate(ips)
    ]
    return ClusterSnapshot.of(pods=pods)


async def refresh_once(rate: float, burst: int, snapshot: Any) -> dict[str, Any]:
    import boto3

    from exporter.aws.api import AwsApi
    from exporter.aws.collect import AwsCollector
    from exporter.aws.config import AwsSettings
    from exporter.aws.limiter import TokenBucket
    from exporter.checks.aws_round import evaluate_aws
    from exporter.lb.plan import LbPlan

    sent: list[float] = []

    def client(service: str) -> Any:
        made = boto3.session.Session(region_name=REGION).client(service)
        if service == "elbv2":

            def record(model: Any, **_: Any) -> None:
                if model.name == "DescribeTargetHealth":
                    sent.append(time.monotonic())

            made.meta.events.register("before-call", record)
        return made

    settings = AwsSettings(cluster_name=CLUSTER, region=REGION, elbv2_rate=rate, elbv2_burst=burst)
    api = AwsApi(
        region=REGION,
        elbv2_limiter=TokenBucket(rate, burst),
        ec2_limiter=TokenBucket(settings.ec2_rate, settings.ec2_burst),
        workers=settings.workers,
        client_factory=client,
    )
    # Build the clients before timing: loading botocore's models is start-up cost, not refresh cost.
    await asyncio.gather(
        asyncio.to_thread(api._client, "elbv2"),
        asyncio.to_thread(api._client, "ec2"),
    )
    collector = AwsCollector(api, settings)
    started = time.perf_counter()
    aws = await collector.collect(snapshot, time.time(), full=True)
    wall = time.perf_counter() - started
    evaluated = time.perf_counter()
    round_ = evaluate_aws(snapshot, aws, LbPlan(()), (), time.time())
    evaluate_seconds = time.perf_counter() - evaluated
    api.close()
    calls = Counter({op: n for (op, outcome), n in api.counts().items() if outcome == "success"})
    failures = {key: n for key, n in api.counts().items() if key[1] != "success"}
    return {
        "rate": rate,
        "burst": burst,
        "wall_seconds": wall,
        "target_groups": len(aws.health),
        "targets": sum(len(h.targets) for h in aws.health.values()),
        "calls": dict(calls),
        "failures": failures,
        "max_target_health_calls_in_1s": _max_in_window(sent),
        "limit_in_1s": burst + rate,
        "evaluate_seconds": evaluate_seconds,
        "results": len(round_.results),
        "not_ok": Counter(f"{r.check.value}/{r.reason}" for r in round_.results if r.status.value != "ok"),
    }


class _CannedClient:
    """Instant answers shaped like AWS's, for counting calls over a simulated hour (no correctness here)."""

    def __init__(self, groups: int, targets: int, hot: set[int]) -> None:
        self.meta = type("Meta", (), {"region_name": REGION})()
        self._arns = [f"arn:aws:elasticloadbalancing:{REGION}:1:targetgroup/tg{i}/{i:016x}" for i in range(groups)]
        self._targets = targets
        self._hot = {self._arns[i] for i in hot}

    def describe_target_groups(self, **params: Any) -> dict[str, Any]:
        start = int(params.get("Marker") or 0)
        page = self._arns[start : start + params.get("PageSize", 400)]
        answer: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": arn, "TargetType": "ip", "VpcId": "vpc-1", "LoadBalancerArns": ["lb-1"]}
                for arn in page
            ]
        }
        if start + len(page) < len(self._arns):
            answer["NextMarker"] = str(start + len(page))
        return answer

    def describe_tags(self, ResourceArns: list[str]) -> dict[str, Any]:
        tags = [{"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER}]
        return {"TagDescriptions": [{"ResourceArn": arn, "Tags": tags} for arn in ResourceArns]}

    def describe_load_balancers(self, **_: Any) -> dict[str, Any]:
        return {"LoadBalancers": [{"LoadBalancerArn": "lb-1", "VpcId": "vpc-1", "Type": "application"}]}

    def describe_target_health(self, TargetGroupArn: str) -> dict[str, Any]:
        state = {"State": "unhealthy", "Reason": "Target.Timeout"} if TargetGroupArn in self._hot else {"State": "healthy"}
        return {
            "TargetHealthDescriptions": [
                {"Target": {"Id": f"10.1.{i // 250}.{i % 250}", "Port": 8080}, "TargetHealth": state}
                for i in range(self._targets)
            ]
        }

    def __getattr__(self, name: str) -> Any:
        if name.startswith("describe_"):
            return lambda **_: {}  # EC2: empty answers are enough to count the calls
        raise AttributeError(name)


async def simulate_hour(groups: int, targets: int, hot_fraction: float, tick: float = 5.0) -> dict[str, Any]:
    from exporter.aws.api import AwsApi
    from exporter.aws.collect import AwsCollector
    from exporter.aws.config import AwsSettings
    from exporter.aws.limiter import TokenBucket
    from exporter.model.snapshot import ClusterSnapshot

    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    settings = AwsSettings(cluster_name=CLUSTER, region=REGION)
    hot = set(range(int(groups * hot_fraction)))
    fake = _CannedClient(groups, targets, hot)
    api = AwsApi(
        region=REGION,
        elbv2_limiter=TokenBucket(settings.elbv2_rate, settings.elbv2_burst, clock=lambda: clock[0], sleep=sleep),
        ec2_limiter=TokenBucket(settings.ec2_rate, settings.ec2_burst, clock=lambda: clock[0], sleep=sleep),
        workers=1,
        client_factory=lambda _service: fake,
    )
    collector = AwsCollector(api, settings)
    snapshot = ClusterSnapshot()
    last: dict[str, float] = {}
    gaps: dict[bool, list[float]] = {True: [], False: []}  # hot? -> seconds between two reads of a group
    hot_arns = {fake._arns[i] for i in hot}
    while clock[0] < 3600.0:
        started = clock[0]
        aws = await collector.collect(snapshot, clock[0])
        # Gaps are measured once every group has been read (the first pass is start-up, not cadence).
        warm = len(last) == groups
        for arn, health in aws.health.items():
            if warm and health.fetched_at != last[arn]:
                gaps[arn in hot_arns].append(health.fetched_at - last[arn])
            last[arn] = health.fetched_at
        clock[0] = max(clock[0], started + tick)
    api.close()
    scale = 3600.0 / clock[0]
    counts = {op: round(n * scale) for (op, outcome), n in sorted(api.counts().items()) if outcome == "success"}
    return {
        "per_hour": counts,
        "total": sum(counts.values()),
        "elbv2": sum(n for op, n in counts.items() if op in ELBV2_OPERATIONS),
        "cold_period": max(gaps[False], default=0.0),
        "hot_period": max(gaps[True], default=0.0),
    }


ELBV2_OPERATIONS = ("DescribeTargetGroups", "DescribeTags", "DescribeLoadBalancers", "DescribeTargetHealth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--rates", default="5,60", help="client-side ELBv2 rates to time a full refresh at")
    parser.add_argument("--skip-hour", action="store_true")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _environment(url)
    try:
        started = time.perf_counter()
        snapshot = cluster(seed(url, args.groups, args.targets))
        print(f"seeded {args.groups} target groups x {args.targets} targets in {time.perf_counter() - started:.1f} s")
        for text in args.rates.split(","):
            rate = float(text)
            burst = 10 if rate <= 5 else 40
            result = asyncio.run(refresh_once(rate, burst, snapshot))
            print(
                f"full refresh at {rate:g}/s (burst {burst}): {result['wall_seconds']:.1f} s wall, "
                f"{result['target_groups']} groups / {result['targets']} targets, "
                f"max DescribeTargetHealth in any 1 s: {result['max_target_health_calls_in_1s']} "
                f"(limit {result['limit_in_1s']:g}); checks: {result['evaluate_seconds']:.2f} s for "
                f"{result['results']} results (not ok: {dict(result['not_ok']) or 'none'})"
            )
            print(f"  calls: {result['calls']}  failures: {result['failures'] or 'none'}")
    finally:
        server.stop()
    if not args.skip_hour:
        for groups, fraction in ((args.groups, 0.0), (args.groups, 0.01), (50, 0.0), (50, 0.02)):
            hour = asyncio.run(simulate_hour(groups, args.targets, fraction))
            print(
                f"simulated hour, {groups} groups, {fraction:.0%} hot: {hour['total']} calls/h "
                f"({hour['elbv2']} ELBv2); after start-up, longest gap between reads of a group: cold {hour['cold_period']:.0f} s, "
                f"hot {hour['hot_period']:.0f} s\n  {hour['per_hour']}"
            )


if __name__ == "__main__":
    main()
