"""What a prober is asked to do and what it answers. Plain data shared by probers, scheduler and checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.model.results import Reason

ELB_USER_AGENT = "ELB-HealthChecker/2.0"


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One health check, exactly as the load balancer would send it."""

    protocol: str  # HTTP | HTTPS | TCP (the health check's protocol; HTTPS means TLS to the target)
    ip: str
    port: int
    timeout: float
    path: str = "/"
    success_ranges: tuple[tuple[int, int], ...] = ((200, 200),)
    host_header: str | None = None  # None: "ip:port", what ALB health checks send
    user_agent: str = ELB_USER_AGENT
    body_limit: int = 16 * 1024
    # HTTP1 | HTTP2 | GRPC: the target group's protocol version. GRPC health checks are HTTP/2 POSTs judged by
    # their grpc-status; success_ranges then holds gRPC status codes (0-99), not HTTP codes.
    protocol_version: str = "HTTP1"

    def accepts(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.success_ranges)

    @property
    def kind(self) -> str:
        """Which prober speaks this check: HTTP, HTTPS, TCP, or GRPC (over HTTP/2, TLS when ``protocol`` is HTTPS)."""
        if self.protocol_version == "GRPC" and self.protocol in ("HTTP", "HTTPS"):
            return "GRPC"
        return self.protocol


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe's answer. Probers never raise: every failure is a reason from the closed set."""

    success: bool
    reason: Reason | None
    duration: float
    status_code: int | None = None  # the HTTP status of the answer
    # Phase timings in seconds: connect, tls, processing (request sent to first byte), transfer.
    phases: tuple[tuple[str, float], ...] = ()
    detail: str = ""  # free text for logs and the status page, never a label
    grpc_status: int | None = None  # the grpc-status of a gRPC health check's answer


def success_codes_text(ranges: Sequence[tuple[int, int]]) -> str:
    """Success codes as the controller's annotations write them: ``200,301-302``."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)
