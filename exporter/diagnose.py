"""``lbdoctor diagnose``: the runbook once, from a laptop with a kubeconfig, as a table or JSON.

Exit codes: 0 nothing fails (warnings allowed), 1 a check fails, 2 usage or configuration error,
3 the cluster cannot be reached (the reason in one line).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from exporter import diagnose_output, diagnose_probes
from exporter.aws.ids import eks_cluster_of
from exporter.checks.causes import link_round, order
from exporter.checks.cluster import cluster_results, pods_of
from exporter.checks.controller import ControllerLocation, find_deployment
from exporter.checks.registry import REGISTRY, Needs
from exporter.dataplane import offline
from exporter.kube import controller_logs, resources
from exporter.kube.client import ApiError, ConfigError, KubeClient, kubeconfig_cluster
from exporter.kube.snapshots import build_snapshot
from exporter.kube.store import Store
from exporter.kube.watch import Reflector, served
from exporter.lb import annotations as ann
from exporter.lb.healthcheck import ControllerConfig
from exporter.lb.plan import ROUTE_OWNER_KINDS, build_plan, ingress_class_of, plan_all
from exporter.model.results import Check, CheckResult, ObjectRef, Status
from exporter.model.snapshot import ClusterSnapshot
from exporter.report import iso, results_json, summary
from exporter.settings import Settings

SCHEMA = "lbdoctor.diagnosis/v1"

EXIT_OK, EXIT_FAILING, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

# What a laptop lacks for some steps, and where to get it (the registry says which step needs what).
NEEDS = {  # with --no-cluster-role
    Needs.NODE_AGENT: "not read (--no-cluster-role): lbdoctor's node agents probe where pod IPs are reachable",
    Needs.NODE_DUMP: "not read (--no-cluster-role); or --node NAME --iptables-save-file FILE",
}


def not_run(
    *, node_dump: bool, aws_not_run: str | None, probes: diagnose_probes.ProbeReport | None = None
) -> dict[Check, str]:
    """The steps diagnose did not run (or that brought nothing back), each with what it needs: the "not run"
    lines of its table. ``probes``: what reading the node agents' probes from lbdoctor's cluster role found."""
    found: dict[Check, str] = {}
    for entry in REGISTRY:
        if entry.needs is Needs.AWS and aws_not_run:
            found[entry.check] = aws_not_run
        elif (entry.needs is Needs.NODE_DUMP and not node_dump) or entry.needs is Needs.NODE_AGENT:
            found[entry.check] = (
                NEEDS[entry.needs] if probes is None else diagnose_probes.not_run_text(probes, entry.check)
            )
    return found


class Unreachable(Exception):
    """The API server could not be reached; the message is one line."""


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # None with all_namespaces False: "default"
    all_namespaces: bool = False
    target: str | None = None  # "service/NAME", "ingress/NAME" or a route, "httproute/NAME"
    output: str = "table"
    show_ok: bool = False
    node: str | None = None  # with a saved dump: compare that node's kube-proxy rules with the cluster
    iptables_save_file: str | None = None
    nft_json_file: str | None = None
    cluster_name: str | None = None  # None: from an `aws eks update-kubeconfig` context's ARN
    region: str | None = None
    aws: bool = True  # False: skip the AWS steps
    cluster_role: str | None = None  # NAMESPACE/NAME of lbdoctor's cluster role Service; None: by its labels
    probes: bool = True  # False: do not read the node agents' probes from lbdoctor's cluster role
    # The daemon's settings model: the controller's location and flags, the AWS settings (flags,
    # LBDOCTOR_* variables and --config, as for ``lbdoctor run``).
    settings: Settings = field(default_factory=lambda: Settings(role="cluster"))

    @property
    def controller(self) -> ControllerLocation:
        return ControllerLocation.from_settings(self.settings)

    @property
    def controller_config(self) -> ControllerConfig:
        return ControllerConfig.from_settings(self.settings)


class _Quiet:
    def watch_started(self, resource: str) -> None:
        pass

    def watch_restarted(self, resource: str, reason: str) -> None:
        pass

    def error(self, component: str, kind: str) -> None:
        pass


def parse_target(target: str | None) -> tuple[str, str] | None:
    if target is None:
        return None
    kind, sep, name = target.partition("/")
    kinds = {"service": "Service", "svc": "Service", "ingress": "Ingress", "ing": "Ingress"}
    kinds.update({route.lower(): route for route in ROUTE_OWNER_KINDS})  # httproute/NAME, grpcroute/NAME, …
    if not sep or not name or kind.lower() not in kinds:
        raise ValueError(f"expected service/NAME, ingress/NAME or httproute/NAME (any route kind), got {target!r}")
    return kinds[kind.lower()], name


async def collect(
    client: KubeClient, options: Options, progress: Callable[[str], None] = lambda _text: None
) -> ClusterSnapshot:
    """List everything the checks read, once. Forbidden or absent resources are recorded, not fatal."""
    namespace = None if options.all_namespaces else (options.namespace or "default")
    wanted: list[tuple[resources.Resource, str | None]] = [
        (resources.PODS, namespace),
        (resources.SERVICES, namespace),
        (resources.ENDPOINT_SLICES, namespace),
        (resources.INGRESSES, namespace),
        (resources.INGRESS_CLASSES, None),
        (resources.TARGET_GROUP_BINDINGS, namespace),
        (resources.NODES, None),
        (resources.DEPLOYMENTS, options.controller.namespace),
        (resources.EVENTS, namespace),
        # Routes of the namespace; Gateways and their configuration wherever they are (a route's Gateway
        # and its default TargetGroupConfiguration often live in a platform team's namespace).
        *((route, namespace) for route in resources.ROUTES),
        (resources.TARGET_GROUP_CONFIGURATIONS, None),
        *(
            (r, None)
            for r in resources.FRONT_ENDS
            if r not in resources.ROUTES and r is not resources.TARGET_GROUP_CONFIGURATIONS
        ),
    ]
    changed = asyncio.Event()
    stores = {resource.name: Store(resource.name, changed) for resource, _ in wanted}

    async def list_one(resource: resources.Resource, where: str | None) -> None:
        store = stores[resource.name]
        reflector = Reflector(client, resource, store, _Quiet(), namespace=where, page_size=1000)
        try:
            await reflector.list_once()
        except ApiError as error:
            if error.status == 403 and not (resource.optional and not await served(client, resource)):
                store.mark_forbidden(f"{error.reason}: {error.message}")
            elif error.status in (403, 404):
                store.mark_absent()
            else:
                raise Unreachable(
                    f"the API server answered {error.status} {error.reason} listing {resource.name}"
                ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise Unreachable(f"cannot reach the API server at {client.host}: {_why(error)}") from None
        done.append(resource.name)
        progress(f"listed {', '.join(done)} ({sum(len(s) for s in stores.values()):,} objects)")

    done: list[str] = []
    progress("listing…")
    # All at once: the API server prepares one list while lbdoctor converts another.
    await asyncio.gather(*(list_one(resource, where) for resource, where in wanted))
    listed = build_snapshot(stores, 1)
    found = await controller_logs.read(client, find_deployment(listed, options.controller), _Quiet())
    return build_snapshot(stores, 1, found.logs, found.error)


def _why(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return str(error.os_error.strerror or error.os_error) if error.os_error else str(error)
    return str(error) or type(error).__name__


def scope(results: Sequence[CheckResult], snapshot: ClusterSnapshot, options: Options) -> list[CheckResult]:
    """Keep only what concerns ``service/NAME`` or ``ingress/NAME``: the owner, its Services and pods,
    and the controller."""
    target = parse_target(options.target)
    if target is None:
        return list(results)
    kind, name = target
    namespace = options.namespace or "default"
    owner = ObjectRef(kind, namespace, name)
    related: set[ObjectRef] = {owner}
    for plan in plan_all(snapshot, options.controller_config):
        if plan.owner == owner or (kind == "Service" and f"{namespace}/{name}" in plan.services):
            related.add(plan.owner)
            for backend in plan.backends:
                gateway = backend.gateway and snapshot.front_ends.gateway(
                    backend.gateway.namespace, backend.gateway.name
                )
                if gateway:
                    related.add(ObjectRef("GatewayClass", "", gateway.class_name))
                if backend.service is not None:
                    related.add(ObjectRef("Service", namespace, backend.service.meta.name))
                    related.update(ObjectRef("Pod", namespace, p.meta.name) for p in pods_of(snapshot, backend.service))
    service = snapshot.service(namespace, name) if kind == "Service" else None
    if service is not None:
        related.update(ObjectRef("Pod", namespace, p.meta.name) for p in pods_of(snapshot, service))
    # The controller's Deployment, its IngressClass, the GatewayClasses of the routes and the IngressClasses of
    # the Ingresses concerned (EKS Auto Mode's are kept only for their own Ingresses).
    for ref in list(related):
        ingress = snapshot.ingresses.get(f"{ref.namespace}/{ref.name}") if ref.kind == "Ingress" else None
        found = ingress_class_of(ingress, snapshot) if ingress is not None else None
        class_name = found.meta.name if found is not None else ingress.class_name if ingress is not None else None
        if class_name:
            related.add(ObjectRef("IngressClass", "", class_name))

    def concerned(ref: ObjectRef) -> bool:
        if ref in related or ref.kind == "Deployment":
            return True
        if ref.kind != "IngressClass":
            return False
        found = snapshot.ingress_classes.get(ref.name)
        return found is None or found.controller != ann.AUTO_MODE_ALB_CONTROLLER

    kept = [r for r in results if concerned(r.object)]
    # Keep what the kept results follow from, wherever it is: an effect names its cause in the same report.
    by_key = {r.key: r for r in results}
    wanted = {r.key for r in kept}
    for result in list(kept):
        up = result.caused_by
        while up is not None and up not in wanted and up in by_key:
            wanted.add(up)
            kept.append(by_key[up])
            up = by_key[up].caused_by
    return kept


async def aws_steps(snapshot: ClusterSnapshot, options: Options) -> tuple[tuple[CheckResult, ...], str | None]:
    """The AWS steps once (every target group, security group, NACL and route at once), or why not."""
    if not options.aws:
        return (), "skipped (--no-aws)"
    found = eks_cluster_of(options.context) or eks_cluster_of(kubeconfig_cluster(options.kubeconfig, options.context))
    cluster_name = options.cluster_name or options.settings.cluster_name or (found[1] if found else None)
    region = options.region or options.settings.aws_region or (found[0] if found else None)
    if not cluster_name:
        return (
            (),
            "needs the EKS cluster's name: --cluster-name NAME (found by itself in aws eks contexts)",
        )
    # boto3 is imported only here: the node agent never loads it.
    from exporter.aws.config import AwsSettings
    from exporter.aws.doctor import AwsDoctor

    named = options.settings.model_copy(update={"cluster_name": cluster_name, "aws_region": region})
    doctor = AwsDoctor(AwsSettings.from_settings(named))
    try:
        if await doctor.api.credential_source() is None:
            return (), "no AWS credentials found (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, …); the other steps ran"
        round_ = await doctor.refresh(snapshot, plan=build_plan(snapshot, options.controller_config), full=True)
        return tuple(round_.results), None
    finally:
        doctor.close()


def _read_dumps(options: Options) -> dict[str, str]:
    """The saved rules given with --node, read before connecting so a typo fails fast."""
    files = {"iptables_save": options.iptables_save_file, "nft_json": options.nft_json_file}
    if options.node is None:
        if any(files.values()):
            raise ValueError("--iptables-save-file and --nft-json-file need --node NAME (the node they come from)")
        return {}
    if not any(files.values()):
        raise ValueError("--node needs the node's saved rules: --iptables-save-file FILE and/or --nft-json-file FILE")
    if not options.all_namespaces:
        raise ValueError("--node compares the node's rules with every Service: add -A")
    dumps = {}
    for key, path in files.items():
        if path is not None:
            try:
                dumps[key] = Path(path).read_text(errors="replace")
            except OSError as error:
                raise ValueError(f"cannot read {path}: {error.strerror}") from None
    return dumps


def unreadable(snapshot: ClusterSnapshot) -> dict[str, str]:
    """The resources RBAC did not let diagnose list, and why: their objects are left out of the results."""
    return {resource: why for resource in sorted(snapshot.forbidden) if (why := snapshot.unseen(resource))}


def document(
    results: Sequence[CheckResult],
    generated_at: float,
    cannot_read: Mapping[str, str] | None = None,
    probes: diagnose_probes.ProbeReport | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": iso(generated_at),
        "results": results_json(results),
        "summary": summary(results),
        "unreadable": dict(cannot_read or {}),
    }
    if probes is not None:
        found["probes"] = diagnose_probes.to_json(probes)
    return found


def exit_code(results: Sequence[CheckResult]) -> int:
    return EXIT_FAILING if any(r.status is Status.FAIL for r in results) else EXIT_OK


async def run(options: Options) -> int:
    try:
        parse_target(options.target)
        dumps = _read_dumps(options)
    except (ValueError, OSError) as error:
        print(f"lbdoctor: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        client = await KubeClient.connect(options.kubeconfig, options.context)
    except ConfigError as error:
        print(f"lbdoctor: no usable cluster configuration: {error}", file=sys.stderr)
        return EXIT_USAGE
    probes: diagnose_probes.ProbeReport | None = None
    try:
        with diagnose_output.progress(options.output) as progress:
            snapshot = await collect(client, options, progress)
            if options.probes:
                progress("reading the node agents' probes from lbdoctor's cluster role…")
                probes = await diagnose_probes.read(
                    client,
                    service=options.cluster_role,
                    namespace=None if options.all_namespaces else (options.namespace or "default"),
                    now=time.time(),
                )
    except Unreachable as error:
        print(f"lbdoctor: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await client.close()
    results: tuple[CheckResult, ...] = tuple(cluster_results(snapshot, options.controller_config, options.controller))
    if options.node is not None:
        if options.node not in snapshot.nodes:
            print(f"lbdoctor: node {options.node!r} is not in the cluster (kubectl get nodes)", file=sys.stderr)
            return EXIT_USAGE
        found = offline.analyse(
            snapshot,
            options.node,
            iptables_save=dumps.get("iptables_save"),
            nft_json=dumps.get("nft_json"),
            controller=options.controller_config,
        )
        results = (*results, *found)
    aws_results, aws_not_run = await aws_steps(snapshot, options)
    # One round: every step that ran and the node agents' probes (as lbdoctor's cluster role gathered them),
    # linked by the causal rules, then narrowed to the target asked for.
    seen = diagnose_probes.results(probes) if probes is not None else ()
    results = order(scope(link_round((*results, *aws_results), seen), snapshot, options))
    if options.output == "json":
        print(json.dumps(document(results, time.time(), unreadable(snapshot), probes), indent=2))
    else:
        skipped = not_run(node_dump=options.node is not None, aws_not_run=aws_not_run, probes=probes)
        diagnose_output.table(
            results, snapshot, options.show_ok, skipped, diagnose_probes.summary_line(probes) if probes else None
        )
    return exit_code(results)
