"""TCP health check: what ``nc -z POD_IP PORT`` does and what an NLB's TCP check does: connect, close."""

from __future__ import annotations

import asyncio

from exporter.model.probe import ProbeOutcome, ProbeRequest
from exporter.probes.errors import reason_for


async def probe_tcp(request: ProbeRequest) -> ProbeOutcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(request.timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, request.ip, request.port)
    except Exception as error:  # a probe never raises: every failure becomes a reason
        reason, detail = reason_for(error)
        return ProbeOutcome(success=False, reason=reason, duration=loop.time() - started, detail=detail)
    connected = loop.time()
    transport.close()
    return ProbeOutcome(
        success=True,
        reason=None,
        duration=connected - started,
        phases=(("connect", connected - started),),
        detail="connected",
    )
