"""What a prober is asked to do and what it answers. Plain data shared by probers, scheduler and checks."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.model.results import Reason

ELB_USER_AGENT = "ELB-HealthChecker/2.0"


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One health check, exactly as the load balancer would send it."""

    protocol: str  # HTTP | HTTPS | TCP
    ip: str
    port: int
    timeout: float
    path: str = "/"
    success_ranges: tuple[tuple[int, int], ...] = ((200, 200),)
    host_header: str | None = None  # None: "ip:port", what ALB health checks send
    user_agent: str = ELB_USER_AGENT
    body_limit: int = 16 * 1024

    def accepts(self, code: int) -> bool:
        return any(low <= code <= high for low, high in self.success_ranges)


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe's answer. Probers never raise: every failure is a reason from the closed set."""

    success: bool
    reason: Reason | None
    duration: float
    status_code: int | None = None
    # Phase timings in seconds: connect, tls, processing (request sent to first byte), transfer.
    phases: tuple[tuple[str, float], ...] = ()
    detail: str = ""  # free text for logs and the status page, never a label
