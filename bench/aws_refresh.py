"""AWS: 500 target groups x 20 targets — the API budget, and how soon a change of target health shows.

Measurements:

1. **Watching, against moto** (the issue's numbers): moto in server mode on loopback holds 500 target
   groups tagged for the cluster, 20 ip targets each, 50 ALBs. lbdoctor's collector runs as the cluster
   role runs it (a round, a 5 s pause, again) in a process of its own, at its default settings; with
   ``--reference PATH`` (a git worktree of main) the reference runs beside it, against the same moto
   and the same changes. Once both have read every target group, one target every ``--change-every``
   seconds turns ``unhealthy`` (``Target.Timeout``) and back two minutes later, alternately a change
   only the load balancer sees (a security group edit: no probe fails) and one a node agent's probe
   sees at the same moment. This process plays the load balancer: it serves the verdicts through moto's
   DescribeTargetHealth and publishes each target group's ``UnHealthyHostCount`` to moto's CloudWatch at
   every minute's end, as ELB does. Reported: calls per operation per minute, and seconds from each
   change to the end of the round that shows it (when the metric would).
2. **Full refresh** (``lbdoctor diagnose``): one ``collect(full=True)`` at the default budget.
3. **Simulated hours** (this checkout only): the real collector and limiter on a fake clock with canned
   answers, at 500 and 50 target groups: calls per hour, and the same change-to-metric delays.

    .venv/bin/python -m bench.aws_refresh --reference /tmp/lbdoctor-main   # about 15 minutes
    .venv/bin/python -m bench.aws_refresh --watch-minutes 0 --skip-full    # the simulated hours only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLUSTER = "bench"
REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[1]
ELBV2_OPERATIONS = ("DescribeTargetGroups", "DescribeTags", "DescribeLoadBalancers", "DescribeTargetHealth")


def _environment(url: str) -> dict[str, str]:
    values = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_ENDPOINT_URL": url,
    }
    os.environ.update(values)
    return values


@dataclass
class Seeded:
    targets: dict[str, list[str]]  # target group ARN -> target IPs
    lbs: dict[str, list[str]]  # target group ARN -> load balancer ARNs


def seed(url: str, groups: int, targets: int) -> Seeded:
    """The cluster's AWS side in moto."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
    elbv2 = boto3.client("elbv2", region_name=REGION, endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    lb_subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
        for i, z in ((0, "a"), (1, "b"))
    ]
    # Two /18s: 32,000 addresses, room for 10,000 pod IPs.
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
    index = 0
    while len(addresses) < groups * targets:
        eni = ec2.create_network_interface(SubnetId=node_subnets[index % 2], Groups=[node_sg], SecondaryPrivateIpAddressCount=49)
        addresses = list(dict.fromkeys([*addresses, *(a["PrivateIpAddress"] for a in eni["NetworkInterface"]["PrivateIpAddresses"])]))
        index += 1
    random.Random(1).shuffle(addresses)
    lbs = [
        elbv2.create_load_balancer(Name=f"k8s-lb-{i}", Subnets=lb_subnets, SecurityGroups=[lb_sg])["LoadBalancers"][0][
            "LoadBalancerArn"
        ]
        for i in range(max(groups // 10, 1))
    ]
    seeded = Seeded({}, {})
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
        lb = lbs[index % len(lbs)]
        elbv2.create_listener(
            LoadBalancerArn=lb, Protocol="HTTP", Port=8000 + index // len(lbs), DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}]
        )
        chunk = addresses[index * targets : (index + 1) * targets]
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ip, "Port": 8080} for ip in chunk])
        seeded.targets[arn] = chunk
        seeded.lbs[arn] = [lb]
    return seeded


def cluster(seeded: Seeded) -> Any:
    """The Kubernetes side: a pod behind every target IP, so every ELB target maps to a pod."""
    from exporter.model.objects import ObjectMeta, Pod
    from exporter.model.snapshot import ClusterSnapshot

    pods = [
        Pod(ObjectMeta(f"ns{index % 40}", f"svc{index}-{n}", labels={"app": f"svc{index}"}), "node-1", "Running", ip)
        for index, ips in enumerate(seeded.targets.values())
        for n, ip in enumerate(ips)
    ]
    return ClusterSnapshot.of(pods=pods)


def _max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- changes and how soon they show ---------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    at: float
    arn: str
    target: str
    state: str  # what the load balancer says from `at` on
    probe_visible: bool  # a node agent's probe fails (or passes again) at the same moment


def schedule(seeded: Seeded, start: float, seconds: float, every: float, seed_: int = 7) -> list[Change]:
    """One target turns unhealthy every `every` seconds, and healthy again two minutes later; the kinds
    alternate. Each target group changes at most once, so every change starts from a settled state."""
    rng = random.Random(seed_)
    arns = list(seeded.targets)
    rng.shuffle(arns)
    changes = []
    for n in range(int(seconds // every)):
        arn = arns[n % len(arns)]
        target = rng.choice(seeded.targets[arn])
        at = start + n * every
        visible = n % 2 == 1
        changes += [Change(at, arn, target, "unhealthy", visible), Change(at + 120.0, arn, target, "healthy", visible)]
    return sorted(changes, key=lambda c: c.at)


def delays(changes: Iterable[Change], rounds: Sequence[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Per kind of change: seconds from each change to the end of the first round showing it (None: never)."""
    shown: dict[tuple[str, str, str], list[float]] = {}
    for round_ in rounds:
        for arn, target, state in round_.get("changed") or ():
            shown.setdefault((arn, target, state), []).append(round_["t"])
    found: dict[str, list[float | None]] = {}
    for change in changes:
        kind = f"{'probe-visible' if change.probe_visible else 'LB-only'} → {change.state}"
        times = [t for t in shown.get((change.arn, change.target, change.state), []) if t >= change.at]
        found.setdefault(kind, []).append(min(times) - change.at if times else None)
    return found


def describe(values: Sequence[float | None]) -> str:
    seen = sorted(v for v in values if v is not None)
    missed = len(values) - len(seen)
    if not seen:
        return f"none shown ({missed} missed)"
    p90 = seen[min(len(seen) - 1, math.ceil(0.9 * len(seen)) - 1)]
    text = f"n={len(seen)} mean {statistics.mean(seen):.0f} s, median {statistics.median(seen):.0f} s, p90 {p90:.0f} s, max {seen[-1]:.0f} s"
    return text + (f", {missed} not shown by the end" if missed else "")


# -- 1. watching, against moto ------------------------------------------------------------------------


class LoadBalancer:
    """This process plays ELB: verdicts through moto's DescribeTargetHealth, UnHealthyHostCount to its CloudWatch."""

    def __init__(self, url: str, seeded: Seeded) -> None:
        import boto3

        from exporter.demo.elb import MotoTargetHealth, UnhealthyCounts

        self.seeded = seeded
        self.health = MotoTargetHealth()
        self.health.install()
        self.counts = UnhealthyCounts()
        now = time.time()
        for arn, ips in seeded.targets.items():
            for ip in ips:
                self.counts.record(arn, ip, "healthy", now - 120)
        self.cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish_forever, name="elb-metrics", daemon=True)

    def apply(self, change: Change) -> None:
        from exporter.demo.elb import Verdict

        verdict = Verdict("unhealthy", "Target.Timeout", "Request timed out") if change.state == "unhealthy" else Verdict("healthy")
        self.health.set(change.arn, change.target, verdict)
        self.counts.record(change.arn, change.target, change.state, time.time())

    def start(self) -> None:
        self._thread.start()

    def _publish_forever(self) -> None:
        from exporter.demo.elb import publish

        published = math.floor(time.time() / 60) * 60 - 60
        while not self._stop.is_set():
            ended = math.floor(time.time() / 60) * 60  # the last minute that is over
            while published < ended:
                publish(self.cloudwatch, published, self.counts.minute(published), self.seeded.lbs)
                published += 60
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.health.uninstall()


@dataclass
class Driver:
    name: str
    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    @property
    def warm(self) -> dict[str, Any] | None:
        return next((line for line in self.lines if "warm" in line), None)


def start_driver(name: str, checkout: Path, env: dict[str, str], probe_file: Path) -> Driver:
    command = [sys.executable, str(ROOT / "bench" / "aws_watch_driver.py"), "--cluster", CLUSTER, "--region", REGION, "--probe-file", str(probe_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, **env, "PYTHONPATH": str(checkout)}, cwd=checkout)
    driver = Driver(name, process)
    driver.thread = threading.Thread(target=driver.read, daemon=True)
    driver.thread.start()
    return driver


def per_minute(before: Iterable[Sequence[Any]], after: Iterable[Sequence[Any]], seconds: float) -> dict[str, float]:
    first = {(op, outcome): n for op, outcome, n in before}
    rates: dict[str, float] = {}
    for op, outcome, n in after:
        if outcome == "success":
            rates[op] = (n - first.get((op, outcome), 0)) * 60.0 / seconds
    return dict(sorted(rates.items()))


def watch(url: str, env: dict[str, str], seeded: Seeded, references: dict[str, Path], minutes: float, every: float) -> None:
    elb = LoadBalancer(url, seeded)
    elb.start()
    probe_file = Path(tempfile.mkdtemp(prefix="lbdoctor-bench-")) / "failing-probes.json"
    probe_file.write_text("[]")
    drivers = [start_driver(name, checkout, env, probe_file) for name, checkout in references.items()]
    try:
        started = time.time()
        while not all(d.warm for d in drivers):
            for d in drivers:
                if d.process.poll() is not None:
                    raise SystemExit(f"{d.name}: the driver exited with {d.process.returncode}")
            time.sleep(1)
        for d in drivers:
            print(f"  {d.name}: {d.lines[0]['exporter']} (ELBv2 {d.lines[0]['elbv2_rate']}/s) read every target group once after {d.warm['warm'] - started:.0f} s")  # type: ignore[index]
        begin = time.time() + 5
        changes = schedule(seeded, begin, minutes * 60, every)
        failing: set[str] = set()
        for change in changes:
            time.sleep(max(0.0, change.at - time.time()))
            elb.apply(change)
            if change.probe_visible:
                failing.symmetric_difference_update({change.target})
                probe_file.write_text(json.dumps(sorted(failing)))
        time.sleep(60)  # let the last changes show
        end = time.time()
    finally:
        for d in drivers:
            d.process.terminate()
        for d in drivers:
            d.process.wait(timeout=60)
            if d.thread is not None:
                d.thread.join(timeout=10)
        elb.stop()
    print(f"watching: {minutes:g} min of changes (one every {every:g} s, back after 120 s), then 60 s to settle")
    for d in drivers:
        stopped = next(line for line in d.lines if "stopped" in line)
        warm = d.warm
        assert warm is not None
        seconds = stopped["stopped"] - warm["warm"]
        rates = per_minute(warm["counts"], stopped["counts"], seconds)
        elbv2 = sum(n for op, n in rates.items() if op in ELBV2_OPERATIONS)
        ec2 = sum(n for op, n in rates.items() if op.startswith("Describe") and op not in ELBV2_OPERATIONS)
        rounds = [line for line in d.lines if "changed" in line and line["t"] >= begin]
        print(f"  {d.name}: calls per minute {rates}")
        print(f"    ELBv2 {elbv2:.1f}/min = {elbv2 / 60:.2f}/s, EC2 {ec2:.1f}/min over {seconds:.0f} s; rounds {len(rounds)}")
        for kind, values in sorted(delays(changes, rounds).items()):
            print(f"    {kind}: {describe(values)}")
    del end


# -- 2. full refresh --------------------------------------------------------------------------------


async def refresh_once(snapshot: Any) -> dict[str, Any]:
    import boto3

    from exporter.aws.config import AwsSettings
    from exporter.aws.doctor import AwsDoctor
    from exporter.checks.aws_round import evaluate_aws
    from exporter.lb.plan import LbPlan

    sent: list[float] = []

    def client(service: str) -> Any:
        made = boto3.session.Session(region_name=REGION).client(service)
        made.meta.events.register("before-call", lambda model, **_: sent.append(time.monotonic()) if model.name == "DescribeTargetHealth" else None)
        return made

    settings = AwsSettings(cluster_name=CLUSTER, region=REGION)
    doctor = AwsDoctor(settings, client_factory=client)
    await asyncio.gather(asyncio.to_thread(doctor.api._client, "elbv2"), asyncio.to_thread(doctor.api._client, "ec2"))
    started = time.perf_counter()
    aws = await doctor.collector.collect(snapshot, time.time(), full=True)
    wall = time.perf_counter() - started
    evaluated = time.perf_counter()
    round_ = evaluate_aws(snapshot, aws, LbPlan(()), (), time.time())
    evaluate_seconds = time.perf_counter() - evaluated
    doctor.close()
    return {
        "rate": settings.elbv2_rate,
        "burst": settings.elbv2_burst,
        "wall_seconds": wall,
        "target_groups": len(aws.health),
        "targets": sum(len(h.targets) for h in aws.health.values()),
        "calls": {op: n for (op, outcome), n in doctor.api.counts().items() if outcome == "success"},
        "failures": {key: n for key, n in doctor.api.counts().items() if key[1] != "success"},
        "max_target_health_calls_in_1s": _max_in_window(sent),
        "evaluate_seconds": evaluate_seconds,
        "results": len(round_.results),
    }


# -- 3. simulated hours ------------------------------------------------------------------------------


class CannedAws:
    """Instant answers shaped like AWS's on a fake clock, with target states that change on schedule and
    the load balancers' per-minute UnHealthyHostCount (visible once the minute is over)."""

    def __init__(self, groups: int, targets: int, clock: list[float]) -> None:
        from exporter.demo.elb import UnhealthyCounts

        self.meta = type("Meta", (), {"region_name": REGION})()
        self.clock = clock
        self.arns = [f"arn:aws:elasticloadbalancing:{REGION}:1:targetgroup/tg{i}/{i:016x}" for i in range(groups)]
        self.lb = f"arn:aws:elasticloadbalancing:{REGION}:1:loadbalancer/app/lb/{1:016x}"
        self.ips = {arn: [f"10.{1 + i // 250}.{i % 250}.{n}" for n in range(targets)] for i, arn in enumerate(self.arns)}
        self.state: dict[tuple[str, str], str] = {}
        self.counts = UnhealthyCounts(keep_seconds=1e9)
        self.calls: Counter[str] = Counter()

    def seeded(self) -> Seeded:
        return Seeded(self.ips, {arn: [self.lb] for arn in self.arns})

    def apply(self, change: Change) -> None:
        self.state[(change.arn, change.target)] = change.state
        self.counts.record(change.arn, change.target, change.state, change.at)

    def describe_target_groups(self, **params: Any) -> dict[str, Any]:
        start = int(params.get("Marker") or 0)
        page = self.arns[start : start + params.get("PageSize", 400)]
        answer: dict[str, Any] = {"TargetGroups": [{"TargetGroupArn": arn, "TargetType": "ip", "VpcId": "vpc-1", "LoadBalancerArns": [self.lb]} for arn in page]}
        if start + len(page) < len(self.arns):
            answer["NextMarker"] = str(start + len(page))
        return answer

    def describe_tags(self, ResourceArns: list[str]) -> dict[str, Any]:
        tags = [{"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER}]
        return {"TagDescriptions": [{"ResourceArn": arn, "Tags": tags} for arn in ResourceArns]}

    def describe_load_balancers(self, **_: Any) -> dict[str, Any]:
        return {"LoadBalancers": [{"LoadBalancerArn": self.lb, "VpcId": "vpc-1", "Type": "application"}]}

    def describe_target_health(self, TargetGroupArn: str) -> dict[str, Any]:
        descriptions = []
        for ip in self.ips[TargetGroupArn]:
            state = self.state.get((TargetGroupArn, ip), "healthy")
            health = {"State": state} if state == "healthy" else {"State": state, "Reason": "Target.Timeout"}
            descriptions.append({"Target": {"Id": ip, "Port": 8080}, "TargetHealth": health})
        return {"TargetHealthDescriptions": descriptions}

    def get_metric_data(self, MetricDataQueries: list[dict[str, Any]], StartTime: Any, EndTime: Any, **_: Any) -> dict[str, Any]:
        by_dimension = {arn.split(":", 5)[5]: arn for arn in self.arns}
        now = self.clock[0]
        minutes = range(int(StartTime.timestamp()), int(EndTime.timestamp()), 60)
        values = {start: self.counts.minute(start) for start in minutes if start + 60 <= now}
        results = []
        for query in MetricDataQueries:
            dims = {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]}
            arn = by_dimension[dims["TargetGroup"]]
            stamps = sorted((start for start in values if arn in values[start]), reverse=True)
            results.append({"Id": query["Id"], "Timestamps": stamps, "Values": [float(values[s][arn]) for s in stamps]})
        return {"MetricDataResults": results}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("describe_"):
            return lambda **_: {}  # EC2: empty answers are enough to count the calls
        raise AttributeError(name)


async def simulate(groups: int, targets: int, seconds: float, every: float, tick: float = 5.0, **overrides: Any) -> dict[str, Any]:
    """The real collector and limiter on a fake clock: one round, a `tick` pause, again, for `seconds`."""
    from exporter.aws.api import AwsApi
    from exporter.aws.collect import AwsCollector
    from exporter.aws.config import AwsSettings
    from exporter.aws.limiter import TokenBucket
    from exporter.model.snapshot import ClusterSnapshot

    clock = [1_800_000_000.0]  # a fake wall clock (CloudWatch minutes are wall-clock minutes)

    async def sleep(pause: float) -> None:
        clock[0] += pause

    settings = AwsSettings(cluster_name=CLUSTER, region=REGION, **overrides)
    fake = CannedAws(groups, targets, clock)

    def bucket(rate: float, burst: int) -> TokenBucket:
        return TokenBucket(rate, burst, clock=lambda: clock[0], sleep=sleep)

    api = AwsApi(
        region=REGION,
        elbv2_limiter=bucket(settings.elbv2_rate, settings.elbv2_burst),
        ec2_limiter=bucket(settings.ec2_rate, settings.ec2_burst),
        cloudwatch_limiter=bucket(settings.cloudwatch_rate, settings.cloudwatch_burst),
        workers=1,
        client_factory=lambda _service: fake,
    )
    collector = AwsCollector(api, settings)
    snapshot = ClusterSnapshot()
    # Warm up: every target group read once (the first pass is start-up, not cadence).
    while True:
        aws = await collector.collect(snapshot, clock[0])
        clock[0] += tick
        if len(aws.health) == groups:
            break
    warm_counts = api.counts()
    begin = clock[0]
    changes = schedule(fake.seeded(), begin, seconds, every)
    pending = list(changes)
    failing: set[str] = set()
    rounds: list[dict[str, Any]] = []
    seen = {arn: h.fetched_at for arn, h in aws.health.items()}
    states = {(arn, t.id): t.state for arn, h in aws.health.items() for t in h.targets}
    while clock[0] < begin + seconds + 120 + 60:
        while pending and pending[0].at <= clock[0]:
            change = pending.pop(0)
            fake.apply(change)
            if change.probe_visible:
                failing.symmetric_difference_update({change.target})
        aws = await collector.collect(snapshot, clock[0], hot_targets=set(failing))
        changed = []
        for arn, health in aws.health.items():
            if seen.get(arn) != health.fetched_at:
                seen[arn] = health.fetched_at
                for target in health.targets:
                    if states.get((arn, target.id)) != target.state:
                        states[(arn, target.id)] = target.state
                        changed.append([arn, target.id, target.state])
        rounds.append({"t": clock[0], "changed": changed})
        clock[0] += tick
    api.close()
    elapsed = clock[0] - begin
    counts = {op: (n - warm_counts.get((op, outcome), 0)) * 60.0 / elapsed for (op, outcome), n in sorted(api.counts().items()) if outcome == "success"}
    return {
        "per_minute": counts,
        "elbv2_per_second": sum(n for op, n in counts.items() if op in ELBV2_OPERATIONS) / 60.0,
        "delays": delays(changes, rounds),
        "reads": dict(aws.target_health_reads),
        "watched": aws.cloudwatch_watched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--reference", type=Path, help="a checkout of the reference (e.g. git worktree add /tmp/lbdoctor-main main)")
    parser.add_argument("--watch-minutes", type=float, default=5.0, help="minutes of changes against moto (0: skip)")
    parser.add_argument("--change-every", type=float, default=20.0)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--sim-minutes", type=float, default=30.0, help="simulated minutes of changes per size (0: skip)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if args.watch_minutes or not args.skip_full:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        env = _environment(url)
        try:
            started = time.perf_counter()
            seeded = seed(url, args.groups, args.targets)
            print(f"seeded {args.groups} target groups x {args.targets} targets in moto in {time.perf_counter() - started:.1f} s")
            if args.watch_minutes:
                checkouts = {"this branch": ROOT}
                if args.reference:
                    checkouts[f"reference ({args.reference})"] = args.reference.resolve()
                watch(url, env, seeded, checkouts, args.watch_minutes, args.change_every)
            if not args.skip_full:
                result = asyncio.run(refresh_once(cluster(seeded)))
                print(
                    f"full refresh at the default budget ({result['rate']:g}/s, burst {result['burst']}): {result['wall_seconds']:.1f} s, "
                    f"{result['target_groups']} groups / {result['targets']} targets, most DescribeTargetHealth in 1 s: "
                    f"{result['max_target_health_calls_in_1s']}; checks {result['evaluate_seconds']:.2f} s for {result['results']} results"
                )
                print(f"  calls: {result['calls']}  failures: {result['failures'] or 'none'}")
        finally:
            server.stop()
    if args.sim_minutes:
        for groups in (args.groups, 50):
            result = asyncio.run(simulate(groups, args.targets, args.sim_minutes * 60, args.change_every))
            print(f"simulated, {groups} groups, {args.sim_minutes:g} min of changes: ELBv2 {result['elbv2_per_second']:.2f}/s; "
                  f"CloudWatch watched {result['watched']} groups; reads by trigger {result['reads']}")
            print(f"  per minute {result['per_minute']}")
            for kind, values in sorted(result["delays"].items()):
                print(f"  {kind}: {describe(values)}")


if __name__ == "__main__":
    main()
