"""``lbdoctor run``: connect, serve, supervise the role's tasks, and shut down in stages on a signal."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import structlog

from exporter import __version__
from exporter.app import Supervisor, install_signal_handlers, staged_shutdown
from exporter.kube.client import ConfigError, KubeClient
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.roles.cluster import LEADER_ELECTION, ClusterAgent
from exporter.roles.node import NodeAgent
from exporter.settings import Settings
from exporter.state import Board
from exporter.web import server
from exporter.web.listener import Limits, connection_budget, raise_descriptor_limit
from exporter.web.webconfig import Watched, WebConfigError

log = structlog.get_logger("lbdoctor")

ReadyCallback = Callable[[int], None]


def fail(message: str) -> int:
    print(f"lbdoctor: {message}", file=sys.stderr)
    return 2


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: ReadyCallback | None = None,
) -> int:
    """Run the daemon until ``stop`` is set (or SIGTERM/SIGINT). Returns the exit code."""
    metrics = SelfMetrics(settings.role)
    board = Board(settings.role)
    # Descriptors: the soft limit up to the hard one, and the HTTP face kept below what probes need.
    soft, hard = raise_descriptor_limit()
    limits = Limits(
        max_connections=connection_budget(settings.web_max_connections, settings.probe_concurrency),
        max_per_client=settings.web_max_connections_per_client,
        handshake_timeout=settings.web_header_timeout_seconds,
    )
    watched: Watched | None = None
    if settings.web_config_file:

        def config_failed(error: WebConfigError) -> None:
            metrics.error("web", "config")
            log.error("the changed web config does not load; keeping the last good one", error=str(error))

        try:
            watched = Watched(settings.web_config_file, config_failed, clock=time.monotonic)
        except WebConfigError as error:
            return fail(str(error))
    options = server.WebOptions(limits=limits, header_timeout=settings.web_header_timeout_seconds, config=watched)
    try:
        client = await KubeClient.connect(settings.kubeconfig, settings.context)
    except ConfigError as error:
        return fail(f"no usable cluster configuration: {error}")
    agent: NodeAgent | ClusterAgent = (
        NodeAgent(settings, client, metrics, board)
        if settings.role == "node"
        else ClusterAgent(settings, client, metrics, board)
    )
    try:
        runner, bound = await server.start(server.build_app(board, metrics, options), settings.listen_addresses)
    except OSError as error:
        await client.close()
        return fail(f"cannot listen on {settings.listen}: {error.strerror or error}")
    supervisor = Supervisor(metrics)
    for name, job in agent.tasks().items():
        supervisor.spawn(name, job)
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    log.info(
        "lbdoctor started",
        version=__version__,
        role=settings.role,
        node=settings.node_name if settings.role == "node" else None,
        listen=",".join(
            f"[{host}]:{port or bound}" if ":" in host else f"{host}:{port or bound}"
            for host, port in settings.listen_addresses
        ),
        tls=bool(watched is not None and watched.config.tls),
        basic_auth=bool(watched is not None and watched.config.users),
        max_connections=limits.max_connections,
        open_files=f"{soft}/{hard}",
        api_server=client.host,
    )
    if on_ready is not None:
        on_ready(bound)
    await stop.wait()
    loop = asyncio.get_running_loop()
    budget = settings.shutdown_timeout_seconds
    deadline = loop.time() + budget
    if isinstance(agent, ClusterAgent) and LEADER_ELECTION in supervisor.names:
        # The Lease first, with its own deadline (half the budget): a standby takes over at once only if
        # it is released, and an API server answering slowly must not eat that time in later stages.
        await supervisor.stop([LEADER_ELECTION], timeout=budget * 0.1)
        await agent.release(budget * 0.5)
    watchers = [name for name in supervisor.names if name.startswith("watch ")]
    others = [name for name in supervisor.names if name not in watchers and name != LEADER_ELECTION]
    remaining = max(deadline - loop.time(), 0.2)
    await staged_shutdown(supervisor, [("stop watching", watchers), ("stop the role's loops", others)], remaining * 0.6)
    await agent.close()
    await runner.cleanup()
    await client.close()
    log.info("lbdoctor stopped")
    return 0
