"""Each fault of docs/reliability.md as a scenario against the real daemon; each returns its figures.

The figures are plain numbers so ``tests/faults`` can assert on them and ``bench/faults.py`` can print
them. Every scenario is bounded: a fixed number of objects and connections, a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

from tests.conftest import next_ip
from tests.faults.harness import (
    NLB,
    Daemon,
    Pod,
    cluster,
    healthy_pod,
    max_gap,
    nlb_object,
    node_object,
    pod_object,
)

VICTIM_INTERVAL = 5.0
WARM_UP = 7.0  # first probes are spread over one interval; the first verdicts need two


def verdicts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many targets are predicted healthy, unhealthy, and how many last probes failed."""
    return {
        "healthy": sum(1 for row in rows if row["predicted_state"] == "healthy"),
        "unhealthy": sum(1 for row in rows if row["predicted_state"] == "unhealthy"),
        "failed_last": sum(1 for row in rows if row["last_probe"] and not row["last_probe"]["success"]),
    }


async def victims_window(daemon: Daemon, victims: list[Pod], seconds: float) -> dict[str, float]:
    """Watch the victims for ``seconds``: the longest gap between two probes of one victim, CPU used."""
    start, cpu = time.monotonic(), daemon.cpu_seconds()
    await asyncio.sleep(seconds)
    end = time.monotonic()
    return {
        "window_seconds": end - start,
        "cpu_seconds": daemon.cpu_seconds() - cpu,
        "victim_max_gap_seconds": max(max_gap(v.probe_times(), start, end) for v in victims),
    }


# ---- probing ------------------------------------------------------------------------------------------


async def interim_flood(folder: Path, attackers: int = 9, victims: int = 7, seconds: float = 15.0) -> dict[str, Any]:
    """Pods that answer every probe with an endless stream of ``HTTP/1.1 100 Continue``."""

    async def stream(reader: Any, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        chunk = b"HTTP/1.1 100 Continue\r\n\r\n" * 2600  # ~64 KiB a write, forever
        while True:
            writer.write(chunk)
            await writer.drain()

    async with cluster(folder) as made:
        good = await made.add_victims(victims)
        for index in range(attackers):
            pod = await made.pod(await Pod(stream).start())
            name = f"flood-{index}"
            made.apply(
                pod_object("attacker", name, name, pod.ip, pod.port), nlb_object("attacker", name, name, pod.port)
            )
        async with made.daemon() as daemon:
            await asyncio.sleep(WARM_UP)
            figures = await victims_window(daemon, good, seconds)
            figures["rss_mib"] = daemon.rss_mib()[1]
            rows = await daemon.targets()
    attacked = [row for row in rows if row["namespace"] == "attacker"]
    figures |= {f"victims_{k}": v for k, v in verdicts([r for r in rows if r["namespace"] == "shop"]).items()}
    figures["victims"] = victims
    figures["attacker_reasons"] = sorted({(r["last_probe"] or {}).get("reason") or "none" for r in attacked})
    figures["cpu_share"] = figures["cpu_seconds"] / figures["window_seconds"]
    return figures


async def hanging_pod(folder: Path, services: int = 600, victims: int = 4, seconds: float = 20.0) -> dict[str, Any]:
    """One pod that accepts and never answers, behind ``services`` Services (10 s timeout each), in one
    namespace; then the Services are deleted."""

    async def hang(reader: Any, _writer: Any) -> None:
        await reader.read()  # holds the connection until the prober gives up

    async with cluster(folder) as made:
        good = await made.add_victims(victims)
        sink = await made.pod(await Pod(hang).start())
        made.apply(pod_object("tenant", "hang", "hang", sink.ip, sink.port))
        for index in range(services):
            made.apply(nlb_object("tenant", f"hang-{index:03d}", "hang", sink.port, interval=10, timeout=10))
        async with made.daemon() as daemon:
            await asyncio.sleep(WARM_UP)
            figures = await victims_window(daemon, good, seconds)
            figures["hanging_connections_before_delete"] = sink.open
            for index in range(services):
                made.delete("v1/services", "tenant", f"hang-{index:03d}")
            deleted = time.monotonic()
            open_after = []
            for _ in range(8):
                await asyncio.sleep(0.5)
                open_after.append((time.monotonic() - deleted, sink.open))
            figures["hanging_connections_3s_after_delete"] = next(n for t, n in open_after if t >= 3.0)
            figures["seconds_until_released"] = next((t for t, n in open_after if n == 0), float("inf"))
            rows = await daemon.targets("shop")
            figures["rss_mib"] = daemon.rss_mib()[1]
    figures |= {f"victims_{k}": v for k, v in verdicts(rows).items()}
    figures["victims"] = victims
    return figures


async def banner_and_held(folder: Path) -> dict[str, Any]:
    """What held must keep holding: a non-HTTP banner (never echoed), HTML in an annotation (escaped), CRLF
    in a path (never reaches a request), an endless body (read up to the cap), huge request headers to
    the daemon (400, and it keeps serving)."""

    async def banner(_reader: Any, writer: Any) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 tenant-secret-banner\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    endless_ref: list[Pod] = []

    async def endless(reader: Any, writer: Any) -> None:
        await endless_ref[0].read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(100_000):
            writer.write(chunk)
            await writer.drain()

    async with cluster(folder) as made:
        ssh = await made.pod(await Pod(banner).start())
        made.apply(pod_object("shop", "ssh", "ssh", ssh.ip, ssh.port), nlb_object("shop", "ssh", "ssh", ssh.port))
        body = Pod(endless)
        endless_ref.append(body)
        await made.pod(await body.start())
        made.apply(pod_object("shop", "big", "big", body.ip, body.port), nlb_object("shop", "big", "big", body.port))
        xss = await made.pod(await healthy_pod())
        script = "<img src=x onerror=alert(1)>"
        made.apply(
            pod_object("shop", "xss", "xss", xss.ip, xss.port),
            nlb_object("shop", "xss", "xss", xss.port, annotations={NLB + "healthcheck-success-codes": script}),
        )
        crlf = await made.pod(await healthy_pod())
        made.apply(
            pod_object("shop", "crlf", "crlf", crlf.ip, crlf.port),
            nlb_object(
                "shop", "crlf", "crlf", crlf.port, annotations={NLB + "healthcheck-path": "/ok\r\nX-Injected: yes"}
            ),
        )
        async with made.daemon() as daemon:
            await asyncio.sleep(WARM_UP + 5)
            page = (await daemon.get("/")).decode()
            api = (await daemon.get("/api/v1/results")).decode()
            metrics = (await daemon.get("/metrics")).decode()
            reader, writer = await asyncio.open_connection(daemon.ip, daemon.port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            huge_header_status = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            still_serving = len(await daemon.get("/metrics")) > 0
            rows = {row["service"]: row for row in await daemon.targets("shop")}
            log = daemon.log.read_text()
    return {
        "banner_echoed": any("tenant-secret" in text or "SSH-2.0" in text for text in (page, api, metrics, log)),
        "banner_reason": (rows["ssh"]["last_probe"] or {}).get("reason"),
        "script_unescaped": script in page,
        "script_escaped": "&lt;img src=x onerror=alert(1)&gt;" in page,
        "crlf_injected": any(b"X-Injected" in head for _, head in crlf.heads),
        "crlf_probed_default_path": bool(crlf.heads) and all(h.startswith(b"GET / HTTP/1.1") for _, h in crlf.heads),
        "endless_body_healthy": (rows["big"]["last_probe"] or {}).get("success") is True,
        "huge_header_status": huge_header_status.decode(errors="replace").strip(),
        "still_serving": still_serving,
    }


# ---- the HTTP face ----------------------------------------------------------------------------------


async def _hold(ip: str, port: int, count: int, sources: list[str]) -> list[asyncio.StreamWriter]:
    held: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(64)

    async def one(index: int) -> None:
        async with gate:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(ip, port, local_addr=(sources[index % len(sources)], 0))
                held.append(writer)

    await asyncio.gather(*(one(index) for index in range(count)))
    return held


async def idle_connections(folder: Path, count: int = 1100, victims: int = 7, seconds: float = 12.0) -> dict[str, Any]:
    """``count`` idle connections to the daemon's port, from one address, then from 110 addresses; the
    daemon runs with 1,024 descriptors (soft and hard), as on many nodes."""
    async with cluster(folder) as made:
        good = await made.add_victims(victims)
        async with made.daemon(descriptors=1024) as daemon:
            await asyncio.sleep(WARM_UP)
            log_before = daemon.log_bytes()
            figures: dict[str, Any] = {}
            for phase, sources in (("one_source", [next_ip()]), ("many_sources", [next_ip() for _ in range(110)])):
                start, cpu = time.monotonic(), daemon.cpu_seconds()
                held = await _hold(daemon.ip, daemon.port, count, sources)
                scrape_ok, scrape_seconds = True, 0.0
                began = time.monotonic()
                try:
                    await daemon.get("/metrics", source=next_ip(), timeout=10)
                except OSError:
                    scrape_ok = False
                scrape_seconds = time.monotonic() - began
                peak = 0
                while time.monotonic() - start < seconds:
                    peak = max(peak, daemon.descriptors())
                    await asyncio.sleep(0.25)
                end = time.monotonic()
                figures[f"{phase}_connected"] = len(held)
                figures[f"{phase}_peak_descriptors"] = peak
                figures[f"{phase}_scrape_ok"] = scrape_ok
                figures[f"{phase}_scrape_seconds"] = scrape_seconds
                figures[f"{phase}_victim_max_gap_seconds"] = max(max_gap(v.probe_times(), start, end) for v in good)
                figures[f"{phase}_cpu_seconds"] = daemon.cpu_seconds() - cpu
                for writer in held:
                    writer.transport.abort()
                await asyncio.sleep(1)
            figures["log_bytes"] = daemon.log_bytes() - log_before
            figures["rss_mib"] = daemon.rss_mib()[1]
            figures["too_many_open_files_logged"] = "Too many open files" in daemon.log.read_text()
            rows = await daemon.targets("shop")
            metrics = (await daemon.get("/metrics")).decode()
    figures |= {f"victims_{k}": v for k, v in verdicts(rows).items()}
    figures["victims"] = victims
    found = re.search(r'lbdoctor_errors_total\{component="web",kind="connection_limit"\} (\S+)', metrics)
    figures["connections_reset"] = float(found.group(1)) if found else 0.0
    return figures


# ---- annotations ----------------------------------------------------------------------------------


async def huge_annotation(folder: Path, size: int = 200_000, pods: int = 10, scrapes: int = 8) -> dict[str, Any]:
    """A ``size``-character healthcheck-path on a Service of ``pods`` pods, and a 1,000-character path AWS
    accepts on another; then ``scrapes`` concurrent scrapes, three times."""
    async with cluster(folder) as made:
        for index in range(pods):
            pod = await made.pod(await healthy_pod())
            made.apply(pod_object("tenant", f"huge-{index}", "huge", pod.ip, pod.port))
        made.apply(
            nlb_object("tenant", "huge", "huge", pod.port, annotations={NLB + "healthcheck-path": "/" + "x" * size})
        )
        long_pod = await made.pod(await healthy_pod())
        long_path = "/" + "l" * 999
        made.apply(
            pod_object("tenant", "long", "long", long_pod.ip, long_pod.port),
            nlb_object("tenant", "long", "long", long_pod.port, annotations={NLB + "healthcheck-path": long_path}),
        )
        async with made.daemon() as daemon:
            await asyncio.sleep(WARM_UP)
            baseline = daemon.rss_mib()[0]
            metrics = await daemon.get("/metrics")
            for _ in range(3):
                await asyncio.gather(*(daemon.get("/metrics") for _ in range(scrapes)))
            peak = daemon.rss_mib()[1]
            results = await daemon.results()
            page = await daemon.get("/")
    findings = [r for r in results["results"] if r["object"]["name"] == "huge" and r["check"] == "service_annotations"]
    return {
        "metrics_bytes": len(metrics),
        "longest_metrics_line": max(len(line) for line in metrics.splitlines()),
        "rss_before_scrapes_mib": baseline,
        "peak_rss_mib": peak,
        "api_bytes": len(str(results)),
        "page_bytes": len(page),
        "finding": sorted({r["reason"] for r in findings if r["status"] != "ok"}),
        "long_path_probed": any(head.split(b" ")[1] == long_path.encode() for _, head in long_pod.heads),
        "huge_path_requests": sum(1 for p in made.pods for _, head in p.heads if len(head) > 100_000),
    }


async def kubelet_port(folder: Path) -> dict[str, Any]:
    """An instance-target Service whose healthcheck-port names the kubelet's port on the node."""
    node_ip = next_ip()

    async def kubelet(reader: Any, _writer: Any) -> None:
        await reader.read(1024)

    async with cluster(folder) as made:
        made.apply(node_object(node_ip))
        fake_kubelet = await made.pod(await Pod(kubelet, node_ip).start())
        node_port = await made.pod(await healthy_pod(node_ip))
        app = await made.pod(await healthy_pod())
        made.apply(
            pod_object("tenant", "app", "app", app.ip, app.port),
            nlb_object(
                "tenant",
                "app",
                "app",
                app.port,
                target_type="instance",
                node_port=node_port.port,
                annotations={NLB + "healthcheck-port": str(fake_kubelet.port)},
            ),
        )
        async with made.daemon(env={"LBDOCTOR_PROBE_NODE_PATH": "true"}) as daemon:
            await asyncio.sleep(WARM_UP + 5)
            results = await daemon.results()
    findings = {r["reason"] for r in results["results"] if r["check"] == "service_annotations" and r["status"] != "ok"}
    return {
        "kubelet_connections": fake_kubelet.connections,
        "node_port_probes": len(node_port.heads),
        "finding": sorted(r for r in findings if r),
        "ports_probed": sorted({t["port"] for t in results["targets"]}),
        "kubelet_port": fake_kubelet.port,
    }
