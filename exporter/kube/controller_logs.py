"""The AWS Load Balancer Controller's recent log lines that matter: one reader for the cluster role and
``lbdoctor diagnose``.

The Deployment is found by the pure ``exporter.checks.controller.find_deployment`` (its name, else the
label ``app.kubernetes.io/name=aws-load-balancer-controller``); this adapter lists its pods by the
Deployment's selector and reads each pod's last lines. Only IAM denials and reconcile errors are kept,
so memory stays bounded whatever the controller logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import structlog

from exporter.kube.client import ApiError, KubeClient
from exporter.model.objects import Deployment
from exporter.telemetry import ErrorSink

log = structlog.get_logger("lbdoctor.kube")

# Log lines worth keeping: IAM denials (``exporter.checks.controller.denial`` reads them) and reconcile errors.
KEEP = ("AccessDenied", "UnauthorizedOperation", "AuthFailure", "Reconciler error")
SINCE_SECONDS = 900
TAIL_LINES = 2000
KEPT_LINES = 200  # per pod, the most recent


@dataclass(frozen=True)
class ControllerLogs:
    logs: dict[str, str] = field(default_factory=dict)  # pod key -> kept lines
    error: str | None = None  # why they could not be read (RBAC), for a Forbidden result


def kept(text: str) -> str:
    lines = [line for line in text.splitlines() if any(mark in line for mark in KEEP)]
    return "\n".join(lines[-KEPT_LINES:])


async def read(client: KubeClient, deployment: Deployment | None, errors: ErrorSink) -> ControllerLogs:
    """The kept lines of each of the Deployment's pods. RBAC forbidding it is an answer (``error``); other
    failures are counted (``lbdoctor_errors_total{component="kube"}``) and skip the pod."""
    if deployment is None or not deployment.selector:
        return ControllerLogs()
    namespace = deployment.meta.namespace
    selector = ",".join(f"{key}={value}" for key, value in sorted(deployment.selector.items()))
    logs: dict[str, str] = {}
    try:
        listed = await client.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": selector})
        names = sorted(
            str(name) for raw in listed.get("items") or () if (name := (raw.get("metadata") or {}).get("name"))
        )
        for name in names:
            path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
            try:
                text = await client.get_text(path, {"sinceSeconds": str(SINCE_SECONDS), "tailLines": str(TAIL_LINES)})
            except ApiError as failure:
                if failure.status == 403:
                    raise
                errors.error("kube", f"logs_http_{failure.status}")
                continue
            logs[f"{namespace}/{name}"] = kept(text)
    except ApiError as failure:
        if failure.status == 403:
            return ControllerLogs(logs, f"{failure.reason}: {failure.message}")
        errors.error("kube", f"logs_http_{failure.status}")
    except (aiohttp.ClientError, OSError, TimeoutError) as failure:
        errors.error("kube", "logs_unreachable")
        log.warning("could not read controller logs", deployment=deployment.meta.key, error=str(failure))
    return ControllerLogs(logs)
