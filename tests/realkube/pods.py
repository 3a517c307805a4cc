"""Start a rendered chart's container the way the kubelet does, as a real ``lbdoctor`` process.

For one pod of a Deployment or DaemonSet template:

- the Pod object is created in the API server (the ServiceAccount admission plugin adds its token
  volume), bound to a Node the test made, and its status set through the ``status`` subresource, as the
  kubelet reports it (Running, pod IP; Ready once ``/readyz`` answers 200, the chart's readiness probe);
- the environment is the kubelet's (tests/kubelet.py): service links of the namespace's Services as the
  API server allocated them, the downward-API fields, the chart's env;
- a private mount namespace (``unshare --mount``, as root) holds what the container runtime mounts: the
  service-account token (a TokenRequest bound to the pod, as the kubelet's projected volume), the CA and
  the namespace at ``/var/run/secrets/kubernetes.io/serviceaccount``, ``/etc/hosts``, a tmpfs per
  ``emptyDir`` volume, and everything else read-only (``readOnlyRootFilesystem``);
- the process runs as the securityContext's user and groups with its capabilities and
  ``no_new_privs`` (``setpriv``), the image's entrypoint (``lbdoctor``) with the container's args.

Where this departs from a node, and why:

- No kube-proxy forwards the ``kubernetes`` Service's cluster IP, so ``KUBERNETES_SERVICE_HOST`` and
  ``_PORT`` name the API server's loopback address (the other service links keep the kubelet's values).
- The pods share the test machine's network: each listens on its own loopback "pod IP" instead of
  ``0.0.0.0`` (``LBDOCTOR_LISTEN``'s port stays the chart's), so runs on one machine never collide.
- No cluster DNS: ``/etc/hosts`` names the Services the pod must reach (``<svc>.<ns>.svc``), pointing
  where the test wants the Service to lead.
- seccomp and cgroup limits are not applied.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.kubelet import PodFacts, PodTemplate, container_env

ROOT = Path(__file__).resolve().parents[2]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class ApiAdmin(Protocol):
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any: ...
    def get(self, path: str, **query: str) -> Any: ...
    def create(self, path: str, body: Any) -> Any: ...
    def patch(self, path: str, body: Any) -> Any: ...
    def apply(self, obj: Mapping[str, Any]) -> Any: ...
    def delete(self, path: str) -> Any: ...
    def namespace(self, name: str) -> None: ...


class ClusterAccess(Protocol):
    """What starting a pod needs of the cluster: the real one (tests/realkube/cluster.py) or the fake."""

    admin: ApiAdmin
    port: int

    @property
    def ca_path(self) -> Path: ...
    def pod_token(self, pod: Mapping[str, Any]) -> str: ...


@dataclass(frozen=True)
class Node:
    name: str
    ip: str  # a loopback address: the node's InternalIP, and host-network pods' IP


def register_node(admin: ApiAdmin, node: Node) -> None:
    """A Node as a kubelet registers it: address and Ready condition (status subresource)."""
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": node.name},
            },
        }
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    admin.patch(
        f"/api/v1/nodes/{node.name}/status",
        {"status": {"addresses": [{"type": "InternalIP", "address": node.ip}], "conditions": [ready]}},
    )


@dataclass
class PodProcess:
    name: str
    namespace: str
    uid: str
    ip: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    directory: Path
    admin: ApiAdmin = field(repr=False)

    @property
    def base(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """As the kubelet's readiness probe: /readyz until 200; then the pod's Ready condition is set."""
        deadline = time.monotonic() + timeout
        answer: tuple[int, str] = (0, "not polled")
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited {self.process.returncode}: {self.log()[-3000:]}")
            with contextlib.suppress(OSError):
                answer = self.get("/readyz", timeout=2)
                if answer[0] == 200:
                    self._set_ready(True)
                    return
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready after {timeout:.0f} s: {answer}; log: {self.log()[-3000:]}")

    def _set_ready(self, ready: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [
            {"type": kind, "status": "True" if ready or kind == "PodScheduled" else "False", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        self.admin.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status", {"status": {"conditions": conditions}}
        )

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching ``labels`` in /metrics (0 when there is none)."""
        _, text = self.get("/metrics")
        return metric_value(text, name, **labels)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as the kubelet stops a container; SIGKILL after ``timeout``."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        return int(self.process.returncode)


def metric_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name) or line[len(name) : len(name) + 1] not in ("{", " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in head for key, wanted in labels.items()):
            total += float(value)
    return total


def _untraversable_ancestor(path: Path) -> Path | None:
    """The highest directory above ``path`` that other users cannot enter (mode without o+x)."""
    for ancestor in reversed(path.parents):
        if ancestor != Path("/") and not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _reachable_script(paths: list[Path], staging: Path) -> list[str]:
    """Shell lines that make ``paths`` reachable by any user inside the mount namespace.

    In the image lbdoctor lives in /opt/lbdoctor, readable by all. Here it is this checkout's .venv and
    the Python it was made with; when one sits under a directory only root may enter (/root/.pyenv), a
    world-readable tmpfs replaces that directory and the path is bound back into it.
    """
    lines: list[str] = []
    by_top: dict[Path, list[Path]] = {}
    for path in paths:
        top = _untraversable_ancestor(path)
        if top is not None:
            by_top.setdefault(top, []).append(path)
    for number, (top, inside) in enumerate(sorted(by_top.items())):
        for index, path in enumerate(inside):
            hold = staging / f"{number}-{index}"
            hold.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount --bind {shlex.quote(str(path))} {shlex.quote(str(hold))}")
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(str(top))}")
        for index, path in enumerate(inside):
            hold = staging / f"{number}-{index}"
            lines.append(f"mkdir -p {shlex.quote(str(path))}")
            lines.append(f"mount --bind {shlex.quote(str(hold))} {shlex.quote(str(path))}")
            lines.append(f"umount {shlex.quote(str(hold))}")
    return lines


def _security(template: PodTemplate) -> tuple[int, int, list[int], list[str], bool, bool]:
    """uid, gid, supplementary groups, capabilities, no_new_privs and read-only root, as the kubelet
    merges the pod's and the container's securityContext."""
    pod = template.spec.get("securityContext") or {}
    container = template.container.get("securityContext") or {}
    uid = int(container.get("runAsUser", pod.get("runAsUser", 0)))
    gid = int(container.get("runAsGroup", pod.get("runAsGroup", 0)))
    if container.get("runAsNonRoot", pod.get("runAsNonRoot")) and uid == 0:
        raise AssertionError(f"{template.name}: runAsNonRoot with user 0: the kubelet refuses to start it")
    groups = [gid, *([pod["fsGroup"]] if "fsGroup" in pod else []), *pod.get("supplementalGroups", [])]
    capabilities = container.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        raise AssertionError(f"{template.name}: only containers that drop ALL capabilities are modelled")
    added = [str(c).lower().removeprefix("cap_") for c in capabilities.get("add") or []]
    no_new_privs = container.get("allowPrivilegeEscalation") is False
    read_only = bool(container.get("readOnlyRootFilesystem"))
    return uid, gid, sorted(set(groups)), added, no_new_privs, read_only


def start_pod(
    cluster: ClusterAccess,
    template: PodTemplate,
    *,
    index: int,
    node: Node,
    pod_ip: str,
    workdir: Path,
    hosts: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> PodProcess:
    """Create the pod in the API and start its container as the kubelet would. ``env`` adds variables the
    test needs over the chart's (a shorter lease, say); ``hosts`` maps names to addresses in /etc/hosts."""
    if os.geteuid() != 0:
        raise PermissionError("starting a pod the kubelet's way needs root (a private mount namespace, setpriv)")
    admin = cluster.admin
    namespace = template.namespace
    host_network = bool(template.spec.get("hostNetwork"))
    ip = node.ip if host_network else pod_ip
    created = admin.create(f"/api/v1/namespaces/{namespace}/pods", template.pod(index, node.name))
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    admin.patch(
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": node.ip, "startTime": started}},
    )

    container = template.container
    services = list(admin.get(f"/api/v1/namespaces/{namespace}/services").get("items") or [])
    if namespace != "default":
        services.append(admin.get("/api/v1/namespaces/default/services/kubernetes"))
    facts = PodFacts(
        name=name,
        namespace=namespace,
        uid=uid,
        node_name=node.name,
        service_account=template.service_account,
        pod_ip=ip,
        host_ip=node.ip,
        labels=template.labels,
    )
    variables = container_env(
        container, facts, services, enable_service_links=template.spec.get("enableServiceLinks", True)
    )
    # Departures (module docstring): the API server's reachable address; a loopback pod IP to listen on.
    variables["KUBERNETES_SERVICE_HOST"], variables["KUBERNETES_SERVICE_PORT"] = "127.0.0.1", str(cluster.port)
    listen = variables.get("LBDOCTOR_LISTEN", "0.0.0.0:9850")
    listen_host, _, listen_port = listen.rpartition(":")
    assert listen_host == "0.0.0.0", f"the chart's listen address changed: {listen}"
    variables["LBDOCTOR_LISTEN"] = f"{ip}:{listen_port}"
    uid_, gid, groups, capabilities, no_new_privs, read_only = _security(template)
    # What the image sets (Dockerfile ENV), and what the runtime adds.
    image_env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOSTNAME": node.name if host_network else name,
        "HOME": "/root" if uid_ == 0 else "/home/lbdoctor",  # the image's user has no home directory
    }
    variables = {**image_env, **variables, **(env or {})}

    directory = workdir / name
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    secrets = directory / "serviceaccount"
    secrets.mkdir()
    secrets.chmod(0o755)
    token = cluster.pod_token(created)
    for file_name, content in (
        ("token", token),
        ("ca.crt", cluster.ca_path.read_text()),
        ("namespace", namespace),
    ):
        path = secrets / file_name
        path.write_text(content)
        path.chmod(0o644)  # the projected volume's defaultMode (420) that admission sets
    hosts_file = directory / "hosts"
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if not host_network:
        lines.append(f"{ip}\t{name}")
    lines += [f"{address}\t{host}" for host, address in (hosts or {}).items()]
    hosts_file.write_text("\n".join(lines) + "\n")
    hosts_file.chmod(0o644)

    script = _mount_script(template, secrets, hosts_file, directory, read_only)
    command = [
        "setpriv",
        f"--reuid={uid_}",
        f"--regid={gid}",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=" + ",".join(["-all", *(f"+{c}" for c in capabilities)]),
        *(["--no-new-privs"] if no_new_privs else []),
        "--",
        str(ROOT / ".venv" / "bin" / "lbdoctor"),
        *container["args"],
    ]
    script.append("exec " + shlex.join(command))
    log_path = directory / "container.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-euc", "\n".join(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=variables,
            cwd="/",
            start_new_session=True,
        )
    return PodProcess(name, namespace, uid, ip, int(listen_port), process, log_path, directory, admin)


def _mount_script(template: PodTemplate, secrets: Path, hosts: Path, directory: Path, read_only: bool) -> list[str]:
    quote = shlex.quote
    script = _reachable_script([ROOT, Path(sys.base_prefix)], directory / "staging")
    if read_only:
        # Every mount of the namespace's copy of the tree read-only, but the kernel's and /dev (a
        # container's /dev is its own writable tmpfs); the volumes below are mounted writable after.
        script += [
            "findmnt -rn -o TARGET | while read -r target; do",
            '  case "$target" in /proc|/proc/*|/dev|/dev/*) continue ;; esac',
            '  mount -o remount,bind,ro "$target" 2>/dev/null || true',
            "done",
        ]
    if template.spec.get("automountServiceAccountToken", True):
        # /var/run is /run: a tmpfs there holds the secrets' mount point, as an image's empty /run does.
        script += [
            "mount -t tmpfs -o mode=0755,size=1m run /run",
            f"mkdir -p {SA_MOUNT}",
            f"mount --bind {quote(str(secrets))} {SA_MOUNT}",
            f"mount -o remount,bind,ro {SA_MOUNT}",
        ]
        if read_only:
            script.append("mount -o remount,ro /run")
    script.append(f"mount --bind {quote(str(hosts))} /etc/hosts")
    # The emptyDir volumes last: one may cover the directory the files above come from (/tmp).
    volumes = {v["name"]: v for v in template.spec.get("volumes") or []}
    for mount in template.container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            raise AssertionError(f"volume {mount['name']}: only emptyDir volumes are modelled")
        size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
        script.append(f"mount -t tmpfs -o mode=0777,size={size} {quote(mount['name'])} {quote(mount['mountPath'])}")
    return script
