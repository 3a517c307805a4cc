"""What the causal rules cost the cluster role per published round (docs/performance.md, "Causal rules").

    .venv/bin/python -m bench.causes [--services 10000 --pods 100000 --ingresses 2000 --node-results 2000]

All times are CPU time of the process (``time.process_time``). Builds the synthetic cluster of bench/synthetic.py as a snapshot (no API server), evaluates every
object check once as the cluster role does, adds ``--node-results`` failing node-agent results (probe
failures of crash-looping pods, as the cluster role reads them from the agents), then times:

- the full evaluation (the reference: what the cluster role already spends on its first round);
- what the cluster role now runs before every publication, incremental ones included: ``split`` of the
  round into passing and failing results (kept apart per unit), ``link_round`` over the failing ones with
  the node agents' results, and the published tuple;
- ``link_round`` over the whole round (what ``lbdoctor diagnose`` links once);
- ``order``: roots first, as the JSON API and the status page sort a round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.synthetic import objects
from exporter.checks import health_probe
from exporter.checks.causes import link_round, order
from exporter.checks.cluster import cluster_results
from exporter.checks.controller import ControllerLocation
from exporter.kube import resources
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import build_plan
from exporter.lb.targets import TargetStatus, node_targets
from exporter.lb.thresholds import LbState, PredictedHealth
from exporter.model.probe import ProbeOutcome
from exporter.model.results import CheckResult, Reason
from exporter.model.snapshot import ClusterSnapshot
from exporter.roles.cluster_evaluator import IncrementalEvaluator

_KINDS = {
    "Pod": resources.PODS,
    "Service": resources.SERVICES,
    "EndpointSlice": resources.ENDPOINT_SLICES,
    "Ingress": resources.INGRESSES,
    "IngressClass": resources.INGRESS_CLASSES,
    "Node": resources.NODES,
}


def snapshot(services: int, pods: int, ingresses: int) -> ClusterSnapshot:
    found: dict[str, list[Any]] = {}
    for raw in objects(services, pods, ingresses, namespaces=100, nodes=500):
        resource = _KINDS.get(raw["kind"])
        if resource is not None:
            found.setdefault(raw["kind"], []).append(resource.convert(raw))
    return ClusterSnapshot.of(
        pods=found.get("Pod", ()),
        services=found.get("Service", ()),
        endpoint_slices=found.get("EndpointSlice", ()),
        ingresses=found.get("Ingress", ()),
        ingress_classes=found.get("IngressClass", ()),
        nodes=found.get("Node", ()),
    )


def node_results(cluster: ClusterSnapshot, limit: int) -> list[CheckResult]:
    """Failing probes of the crash-looping pods' targets (what their node agents publish), up to ``limit``."""
    plan = build_plan(cluster, ControllerConfig())
    crashing = {p.node_name for p in cluster.pods.values() if any(c.waiting_reason for c in p.container_statuses)}
    refused = ProbeOutcome(False, Reason.CONNECTION_REFUSED, 0.001, detail="connection refused")
    found: list[CheckResult] = []
    for node in sorted(n for n in crashing if n):
        for target in node_targets(plan, cluster, node).targets:
            pod = cluster.pods.get(f"{target.namespace}/{target.pod}")
            if pod is not None and any(c.waiting_reason for c in pod.container_statuses):
                status = TargetStatus(target, refused, 1000.0, PredictedHealth(LbState.UNHEALTHY, 0, 3), refused)
                found.append(health_probe.verdict(status, 1000.0))
                if len(found) >= limit:
                    return found
    return found


def timed(action: Callable[[], object], runs: int = 7) -> tuple[float, float]:
    """CPU seconds of this process (median, max): on a shared VM, wall time mostly measures the neighbours."""
    samples = []
    for _ in range(runs):
        started = time.process_time()
        action()
        samples.append(time.process_time() - started)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--ingresses", type=int, default=2_000)
    parser.add_argument("--node-results", type=int, default=2_000)
    args = parser.parse_args()
    cluster = snapshot(args.services, args.pods, args.ingresses)
    started = time.process_time()
    own = cluster_results(cluster, ControllerConfig(), ControllerLocation())
    evaluation = time.process_time() - started
    imported = node_results(cluster, args.node_results)
    linked = link_round(own, imported)
    failing = sum(1 for r in own if r.status.value in ("fail", "warn"))
    links = sum(1 for r in linked if r.caused_by is not None)
    evaluator = IncrementalEvaluator(ControllerConfig(), ControllerLocation(), include_controller=True)
    evaluator.evaluate(cluster, None)

    def publish() -> tuple[CheckResult, ...]:
        steady, failing = evaluator.split()
        return (*steady, *link_round(failing, imported))

    assert len(publish()) == len(linked)
    before_median, before_max = timed(evaluator.results)  # what a publication cost before: the round's tuple
    round_median, round_max = timed(publish)
    link_median, link_max = timed(lambda: link_round(own, imported))
    order_median, order_max = timed(lambda: order(linked))
    print(f"results in the round: {len(own):,} ({failing:,} failing or warning), node results read: {len(imported):,}")
    print(f"links drawn: {links:,}; imported results published: {len(linked) - len(own):,}")
    print(f"full evaluation (reference): {evaluation * 1000:.0f} ms")
    print(
        f"cluster role, per publication before (the round's tuple): median {before_median * 1000:.1f} ms, "
        f"max {before_max * 1000:.1f} ms"
    )
    print(
        f"cluster role, per publication (split + link failures): median {round_median * 1000:.1f} ms, "
        f"max {round_max * 1000:.1f} ms (7 runs)"
    )
    print(
        f"link_round over the whole round (diagnose): median {link_median * 1000:.1f} ms, max {link_max * 1000:.1f} ms"
    )
    print(f"order: median {order_median * 1000:.1f} ms, max {order_max * 1000:.1f} ms (7 runs)")


if __name__ == "__main__":
    main()
