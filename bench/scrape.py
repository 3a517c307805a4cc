"""Scrape: how long /metrics takes to render for 5,000 targets, and whether scrapes delay probes.

Part 1, render (in this process): the real node-role pipeline (snapshot from the bench cluster's
objects, plan, targets, checks) for N targets with realistic last outcomes (90 % healthy, the rest
failing with assorted reasons), then ``render_metrics`` — the work of one /metrics request, run to
the end in one go — timed over many runs, plus gzip. The reference is client_python's generic path
rendering the same series (a custom collector yielding ``GaugeMetricFamily`` / ``CounterMetricFamily``
and ``generate_latest``), which is what a collector-based exporter would do.

Part 2, lag (the real daemon): ``lbdoctor run --role node`` with N pods (fake API server in this
process, target fleet in another), health checks every 30 s. Two phases of equal length: no scrapes,
then /metrics scraped back to back (gzip, as Prometheus asks), a far heavier load than any real
scrape interval. ``lbdoctor_probe_schedule_lag_seconds`` (how late each probe starts against its
schedule) is read at the phase boundaries and compared between the phases.

Part 3, design (one process): the real scheduler probing 1,000 targets and the real web app
publishing 5,000, scraped back to back in turns: no scrapes; /metrics as it was first built (the
whole exposition rendered in a worker thread); /metrics as it is now (rendered on the event loop in
slices). Same process, same minute, so the lag each adds can be compared directly.

    .venv/bin/python -m bench.scrape                             # all three parts, ~6 min
    .venv/bin/python -m bench.scrape --skip-lag --skip-design    # render timing only, ~20 s
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import time
from collections.abc import Iterable
from typing import Any

from bench.cluster import NODE, objects, sample_sum, scrape_text, start_api, start_daemon, stop_process
from bench.probe_cost import free_port
from bench.targets import TargetFleet, machine_note, raised_fd_limit

# --- part 1: render ----------------------------------------------------------------------------


def published_board(count: int, now: float | None = None) -> Any:
    """A Board holding what the node role would publish for ``count`` targets."""
    from exporter.checks import NodeContext, evaluate_node
    from exporter.kube import convert
    from exporter.lb.healthcheck import ControllerConfig
    from exporter.lb.plan import build_plan
    from exporter.lb.targets import TargetStatus, node_targets
    from exporter.lb.thresholds import LbState, PredictedHealth
    from exporter.model.probe import ProbeOutcome
    from exporter.model.results import Reason, ResultSet
    from exporter.model.snapshot import ClusterSnapshot
    from exporter.state import Board, Published

    converters = {
        "Pod": convert.pod,
        "Service": convert.service,
        "EndpointSlice": convert.endpoint_slice,
        "Ingress": convert.ingress,
        "IngressClass": convert.ingress_class,
    }
    by_kind: dict[str, list[Any]] = {kind: [] for kind in converters}
    for raw in objects(count, 8080):
        if raw["kind"] in converters:
            by_kind[raw["kind"]].append(converters[raw["kind"]](raw))
    snapshot = ClusterSnapshot.of(
        generation=1,
        pods=by_kind["Pod"],
        services=by_kind["Service"],
        endpoint_slices=by_kind["EndpointSlice"],
        ingresses=by_kind["Ingress"],
        ingress_classes=by_kind["IngressClass"],
        absent=["targetgroupbindings"],
    )
    plan = build_plan(snapshot, ControllerConfig(default_target_type="instance"))
    targets = node_targets(plan, snapshot, NODE)
    rng = random.Random(7)
    failures = (Reason.TIMEOUT, Reason.CONNECTION_REFUSED, Reason.RESPONSE_CODE_MISMATCH, Reason.CONNECTION_RESET)
    now = time.time() if now is None else now
    statuses = []
    for target in targets.targets:
        if rng.random() < 0.9:
            connect, wait, transfer = rng.uniform(1e-4, 1e-3), rng.uniform(1e-4, 5e-3), rng.uniform(1e-5, 1e-4)
            outcome = ProbeOutcome(
                True,
                None,
                connect + wait + transfer,
                200,
                (("connect", connect), ("processing", wait), ("transfer", transfer)),
                "HTTP 200",
            )
            health = PredictedHealth(LbState.HEALTHY, 5, 0, rng.randint(0, 3))
        else:
            reason = rng.choice(failures)
            code = 503 if reason is Reason.RESPONSE_CODE_MISMATCH else None
            outcome = ProbeOutcome(False, reason, rng.uniform(1e-3, 2.0), code, (("connect", 5e-4),), "failed")
            health = PredictedHealth(LbState.UNHEALTHY, 0, 3, rng.randint(1, 5))
        statuses.append(TargetStatus(target, outcome, now - rng.uniform(0, 5), health, None))
    results = evaluate_node(NodeContext(NODE, snapshot, plan, targets, tuple(statuses), now))
    board = Board("node")
    board.publish(Published(ResultSet(1, now, results), tuple(statuses), node=NODE))
    return board


class GenericCollector:
    """The reference: the same families through client_python's generic metric-family objects."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from exporter.lb.thresholds import LbState
        from exporter.metrics import names
        from exporter.model.results import Status

        published = self.board.current
        status = GaugeMetricFamily(names.CHECK_STATUS.name, names.CHECK_STATUS.help, labels=names.CHECK_STATUS.labels)
        reason = GaugeMetricFamily(
            names.CHECK_FAILURE_REASON.name, names.CHECK_FAILURE_REASON.help, labels=names.CHECK_FAILURE_REASON.labels
        )
        worst: dict[tuple[str, str, str, str], Any] = {}
        reasons: dict[tuple[str, str, str, str], set[str]] = {}
        for result in published.results.results:
            key = (result.check.value, result.object.namespace, result.object.kind, result.object.name)
            if key not in worst or result.status.severity > worst[key].severity:
                worst[key] = result.status
            if result.status is not Status.OK and result.reason is not None:
                reasons.setdefault(key, set()).add(result.reason.value)
        for key in sorted(worst):
            for each in Status:
                status.add_metric([*key, each.value], 1 if worst[key] is each else 0)
            for text in sorted(reasons.get(key, ())):
                reason.add_metric([*key, text], 1)
        yield status
        yield reason

        def gauge(metric: Any) -> Any:
            return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)

        success, duration, phases = (
            gauge(names.PROBE_SUCCESS),
            gauge(names.PROBE_DURATION),
            gauge(names.PROBE_PHASE_DURATION),
        )
        code, failure, predicted = (
            gauge(names.PROBE_HTTP_STATUS),
            gauge(names.PROBE_FAILURE_REASON),
            gauge(names.PROBE_PREDICTED_HEALTHY),
        )
        transitions = CounterMetricFamily(
            names.PROBE_TRANSITIONS.name.removesuffix("_total"), names.PROBE_TRANSITIONS.help, labels=names.PROBE_LABELS
        )
        last, interval = gauge(names.PROBE_LAST_TIMESTAMP), gauge(names.PROBE_INTERVAL)
        for each in published.probes:
            labels = list(each.target.labels)
            interval.add_metric(labels, each.target.interval)
            transitions.add_metric(labels, each.health.transitions)
            if each.health.state is not LbState.INITIAL:
                predicted.add_metric(labels, 1 if each.health.state is LbState.HEALTHY else 0)
            outcome = each.outcome
            if outcome is None:
                continue
            success.add_metric(labels, 1 if outcome.success else 0)
            duration.add_metric(labels, outcome.duration)
            for phase, seconds in outcome.phases:
                phases.add_metric([*labels, phase], seconds)
            code.add_metric(labels, outcome.status_code or 0)
            if not outcome.success and outcome.reason is not None:
                failure.add_metric([*labels, outcome.reason.value], 1)
            last.add_metric(labels, each.probed_at)
        yield from (success, duration, phases, code, failure, predicted, transitions, last, interval)


def timed(function: Any, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def render_part(count: int, runs: int) -> list[tuple[str, float, float, float]]:
    import prometheus_client
    from prometheus_client import CollectorRegistry

    from exporter.metrics.collectors import ProbeRenderer
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.web.server import render_metrics

    board = published_board(count)
    metrics = SelfMetrics("node")
    renderer = ProbeRenderer()
    body = render_metrics(board, metrics, renderer)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GenericCollector(board))
    reference = prometheus_client.generate_latest(registry)
    ours = timed(lambda: render_metrics(board, metrics, renderer), runs)
    gz = timed(lambda: gzip.compress(render_metrics(board, metrics, renderer), compresslevel=1), runs)
    theirs = timed(lambda: prometheus_client.generate_latest(registry), max(runs // 3, 3))
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    series_ref = sum(1 for line in reference.splitlines() if line and not line.startswith(b"#"))
    print(
        f"render: {len(board.current.probes)} targets, {series} series ({series_ref} in the reference), "
        f"{len(body) / 1e6:.1f} MB, {len(gzip.compress(body, 1)) / 1e6:.2f} MB gzipped"
    )
    return [
        ("lbdoctor render_metrics", statistics.median(ours), percentile(ours, 0.95), max(ours)),
        ("lbdoctor render_metrics + gzip (level 1)", statistics.median(gz), percentile(gz, 0.95), max(gz)),
        (
            "reference: client_python generic collector",
            statistics.median(theirs),
            percentile(theirs, 0.95),
            max(theirs),
        ),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# --- part 2: lag -------------------------------------------------------------------------------


def histogram(text: str, name: str) -> tuple[dict[float, float], float, float]:
    """Cumulative buckets, sum and count of an unlabelled histogram in a text exposition."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum "):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count "):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, total, count


def difference(before: str, after: str) -> dict[str, float]:
    name = "lbdoctor_probe_schedule_lag_seconds"
    b0, s0, c0 = histogram(before, name)
    b1, s1, c1 = histogram(after, name)
    count = c1 - c0
    delta = {bound: b1[bound] - b0.get(bound, 0.0) for bound in b1}
    result = {"probes": count, "mean_ms": 1000 * (s1 - s0) / count if count else float("nan")}
    for q in (0.5, 0.99):
        result[f"p{int(q * 100)}_le_ms"] = 1000 * min(bound for bound, n in delta.items() if n >= q * count)
    result["late_over_10ms_pct"] = 100 * (count - delta.get(0.01, 0.0)) / count if count else 0.0
    result["late_over_50ms_pct"] = 100 * (count - delta.get(0.05, 0.0)) / count if count else 0.0
    return result


async def lag_part(count: int, seconds: float, interval: int) -> tuple[dict[str, float], dict[str, float], list[float]]:
    with TargetFleet(count) as fleet:
        api, kubeconfig = await start_api(count, fleet.port, interval)
        port = free_port()
        process = start_daemon(kubeconfig, f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 120 + interval
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                try:
                    text = await scrape_text(url)
                except OSError:
                    continue
                if (
                    sample_sum(text, "lbdoctor_probe_success") + sample_sum(text, "lbdoctor_probe_failure_reason")
                    >= count
                ):
                    break
            else:
                raise RuntimeError("the agent did not probe every target in time")
            await asyncio.sleep(5)
            start = await scrape_text(url)
            await asyncio.sleep(seconds)
            middle = await scrape_text(url)
            latencies: list[float] = []
            ended = time.monotonic() + seconds
            import urllib.request

            def scrape_gzip() -> None:
                request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()

            while time.monotonic() < ended:
                started = time.perf_counter()
                await asyncio.to_thread(scrape_gzip)
                latencies.append(time.perf_counter() - started)
            end = await scrape_text(url)
            return difference(start, middle), difference(middle, end), latencies
        finally:
            stop_process(process)
            await api.stop()


# --- part 3: the render design, before and after ----------------------------------------------

_SCRAPER = """
import sys, time, urllib.request
url, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
"""


class _LagRecorder:
    """SchedulerTelemetry that keeps every probe's lag with the time it was observed."""

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []

    def probe_lag(self, seconds: float) -> None:
        self.lags.append((time.monotonic(), seconds))

    def probed(self, lb: str, success: bool) -> None:
        pass

    def error(self, component: str, kind: str) -> None:
        pass


async def design_part(count: int, board_targets: int, seconds: float, rounds: int) -> dict[str, list[float]]:
    """In one process: the real scheduler probing ``count`` targets, the real web app publishing a
    board of ``board_targets``, and scrapes from another process, rotating between no scrapes,
    scrapes of the pre-change design (the whole exposition rendered and gzipped in a worker thread)
    and scrapes of /metrics as it is now (rendered on the loop in slices)."""
    import sys

    from aiohttp import web

    from bench.targets import addresses
    from exporter import logs
    from exporter.lb.targets import ProbeTarget
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.model.probe import ProbeRequest
    from exporter.model.results import ObjectRef
    from exporter.probes import PROBERS
    from exporter.scheduler import ProbeScheduler
    from exporter.web import server

    logs.configure("json", "warning")
    with TargetFleet(count) as fleet:
        recorder = _LagRecorder()
        scheduler = ProbeScheduler(PROBERS, recorder, min_interval=1.0)
        scheduler.set_targets(
            ProbeTarget(
                ObjectRef("Service", "bench", "web"),
                "bench",
                "web",
                f"web-{index}",
                NODE,
                "alb",
                ProbeRequest("HTTP", ip, fleet.port, 2.0, "/healthz"),
                5.0,
                2,
                2,
            )
            for index, ip in enumerate(addresses(count))
        )
        probing = asyncio.create_task(scheduler.run())
        board = published_board(board_targets)
        metrics = SelfMetrics("node")
        app = server.build_app(board, metrics)

        async def in_a_thread(_request: web.Request) -> web.Response:
            def produce() -> bytes:
                return gzip.compress(server.render_metrics(board, metrics, app[server.RENDERER]), compresslevel=1)

            body = await asyncio.get_running_loop().run_in_executor(None, produce)
            return web.Response(body=body, headers={"Content-Encoding": "gzip"})

        app.router.add_get("/metrics-in-a-thread", in_a_thread)
        runner, port = await server.start(app, [("127.0.0.1", 0)])
        lags: dict[str, list[float]] = {}
        try:
            await asyncio.sleep(6)  # every target probed once
            for _ in range(rounds):
                for mode, path in (
                    ("no scrapes", None),
                    ("before: render in a thread", "/metrics-in-a-thread"),
                    ("now: render in slices", "/metrics"),
                ):
                    started = time.monotonic()
                    if path is None:
                        await asyncio.sleep(seconds)
                    else:
                        scraper = await asyncio.create_subprocess_exec(
                            sys.executable, "-c", _SCRAPER, f"http://127.0.0.1:{port}{path}", str(seconds)
                        )
                        await scraper.wait()
                    ended = time.monotonic()
                    lags.setdefault(mode, []).extend(lag for at, lag in recorder.lags if started <= at < ended)
        finally:
            probing.cancel()
            await scheduler.close()
            await runner.cleanup()
        return lags


def report_lag(args: argparse.Namespace) -> None:
    with raised_fd_limit():
        quiet, busy, latencies = asyncio.run(lag_part(args.targets, args.seconds, args.interval))
    print()
    print(
        f"Scrape, part 2: probe schedule lag of the node agent with {args.targets} targets (every {args.interval} s), "
        f"{args.seconds:.0f} s without scrapes, then {args.seconds:.0f} s of back-to-back gzip scrapes"
    )
    print()
    header = (
        f"{'phase':<28} {'probes':>7} {'mean ms':>8} {'p50 <= ms':>10} {'p99 <= ms':>10} {'> 10 ms':>8} {'> 50 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, row in (("no scrapes", quiet), ("back-to-back scrapes", busy)):
        print(
            f"{name:<28} {row['probes']:>7.0f} {row['mean_ms']:>8.2f} {row['p50_le_ms']:>10g} {row['p99_le_ms']:>10g} "
            f"{row['late_over_10ms_pct']:>7.1f}% {row['late_over_50ms_pct']:>7.1f}%"
        )
    print()
    print(
        f"scrapes during phase 2: {len(latencies)}, latency median {1000 * statistics.median(latencies):.0f} ms, "
        f"p95 {1000 * percentile(latencies, 0.95):.0f} ms (request to last byte, gzip)"
    )
    print(f"mean lag ratio, scraping vs not: {busy['mean_ms'] / quiet['mean_ms']:.2f}x")


def report_design(args: argparse.Namespace) -> None:
    with raised_fd_limit():
        lags = asyncio.run(design_part(args.design_targets, args.targets, args.design_seconds, args.design_rounds))
    print()
    print(
        f"Scrape, part 3: probe schedule lag, {args.design_targets} targets probed every 5 s in one process "
        f"that publishes {args.targets} targets; {args.design_rounds} rounds of {args.design_seconds:.0f} s "
        "phases, back-to-back gzip scrapes"
    )
    print()
    header = f"{'phase':<30} {'probes':>7} {'mean ms':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'added mean':>11}"
    print(header)
    print("-" * len(header))
    base = statistics.mean(lags["no scrapes"])
    for mode, values in lags.items():
        mean = statistics.mean(values)
        print(
            f"{mode:<30} {len(values):>7} {1000 * mean:>8.2f} {1000 * percentile(values, 0.5):>7.2f} "
            f"{1000 * percentile(values, 0.9):>7.2f} {1000 * percentile(values, 0.99):>7.2f} "
            f"{1000 * (mean - base):>+10.2f}ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=30, help="render repetitions")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each lag phase")
    parser.add_argument("--interval", type=int, default=30, help="health-check interval of the daemon's targets")
    parser.add_argument("--skip-lag", action="store_true", help="render timing only")
    parser.add_argument("--skip-design", action="store_true", help="skip part 3 (render design before/after)")
    parser.add_argument("--design-targets", type=int, default=1000, help="targets probed in part 3")
    parser.add_argument("--design-seconds", type=float, default=10.0, help="length of each part-3 phase")
    parser.add_argument("--design-rounds", type=int, default=3)
    parser.add_argument("--goal-ms", type=float, default=100.0)
    args = parser.parse_args()
    note = machine_note()
    rows = render_part(args.targets, args.runs)
    print()
    print(f"Scrape, part 1: rendering /metrics for {args.targets} targets ({note}; absolute times drift with load)")
    print()
    header = f"{'renderer':<44} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'vs reference':>13}"
    print(header)
    print("-" * len(header))
    reference = rows[-1][1]
    for name, median, p95, worst in rows:
        print(f"{name:<44} {1000 * median:>10.1f} {1000 * p95:>8.1f} {1000 * worst:>8.1f} {median / reference:>12.2f}x")
    verdict = "met" if rows[0][1] * 1000 <= args.goal_ms else "NOT met"
    print(f"goal: render <= {args.goal_ms:.0f} ms (median): {verdict}")
    if not args.skip_lag:
        report_lag(args)
    if not args.skip_design:
        report_design(args)


if __name__ == "__main__":
    main()
