"""Start a rendered chart's pod the way the kubelet does: every container a real process.

For one pod of a Deployment or DaemonSet template:

- the Pod object is created in the API server (the ServiceAccount admission plugin adds its token
  volume; a DaemonSet's pod carries the DaemonSet as its controlling owner), bound to a Node the test
  made, and its status set through the ``status`` subresource as the kubelet reports it: Running with
  the pod IP, then each container's readiness and the pod's Ready condition once every container's
  readiness probe passes (``httpGet`` on the pod IP, ``exec`` inside the container, ``tcpSocket``);
- every container, in the spec's order, gets the kubelet's environment (tests/kubelet.py: service links
  of the namespace's Services as the API server allocated them, downward-API fields, its own ``env``,
  ``$(VAR)`` in its args expanded) and runs the image's entrypoint (``lbdoctor``) with its args;
- each container has a private mount namespace (``unshare --mount``, as root) holding what the container
  runtime mounts: the service-account token (a TokenRequest bound to the pod, as the kubelet's projected
  volume), the CA and the namespace at ``/var/run/secrets/kubernetes.io/serviceaccount``, the pod's
  ``/etc/hosts``, an empty ``/run`` (the image's), its ``volumeMounts``, and everything else read-only
  (``readOnlyRootFilesystem``). An ``emptyDir`` is one directory per pod (mode 0777, as the kubelet makes
  it; group ``fsGroup`` and setgid with one), bind-mounted into each container that mounts it, so the
  containers of a pod share it as on a node; a ``secret`` volume is the Secret's files as the kubelet
  writes them (``defaultMode`` 0644, read-only). A mount point the image lacks (``/etc/lbdoctor/web``) is
  made in an overlay of its parent, as the runtime makes it in the container's own root filesystem;
- each process runs as its securityContext (the pod's merged with the container's, over the image's
  ``USER``) says: user, group and supplementary groups, exactly the added capabilities (bounding,
  permitted and effective; none inheritable or ambient) and ``no_new_privs`` (``setpriv``);
- the containers of a pod share its network: the pod IP (the node's address with ``hostNetwork``).

Where this departs from a node, and why:

- No kube-proxy forwards the ``kubernetes`` Service's cluster IP, so ``KUBERNETES_SERVICE_HOST`` and
  ``_PORT`` name the API server's loopback address (the other service links keep the kubelet's values).
- Every pod and node shares the test machine's network, and ``127.0.0.1`` is one address for all of
  them (and for other test runs on the machine). So each listen address is checked against the forms
  the chart uses and then mapped: ``[$(HOST_IP)]:P`` stays as the kubelet expands it (the node's
  loopback "node IP"); ``127.0.0.1:P`` — the node's own loopback for a host-network pod, the pod's for
  another — becomes a loopback address of that node (``Node.localhost``) or pod, unique like every test
  address; ``0.0.0.0:P`` becomes the pod IP in a pod's own network, and is refused with ``hostNetwork``
  (it would serve on every interface of the node). Any other form fails the test, naming it. Other
  ``127.0.0.1`` addresses lbdoctor uses by default (kube-proxy's ``127.0.0.1:10256``) reach the test
  machine's loopback, where nothing answers; the rules are read from the test machine's network
  namespace (read only: the sidecar runs ``iptables-save`` / ``nft list``).
- No cluster DNS: ``/etc/hosts`` names the Services the pod must reach (``<svc>.<ns>.svc``), pointing
  where the test wants the Service to lead.
- The image is this checkout's ``.venv`` (made reachable to every user inside the mount namespace), not
  ``/opt/lbdoctor``; seccomp, cgroup limits, ``sizeLimit`` and the other namespaces (PID, IPC, UTS) are
  not applied; liveness probes are not run.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import signal
import socket
import ssl
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

from tests.conftest import next_ip
from tests.kubelet import PodFacts, PodTemplate, Security, container_env, expand, security

ROOT = Path(__file__).resolve().parents[2]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _image_user() -> tuple[int, int]:
    """The Dockerfile's ``USER uid:gid``: whom a container runs as when its securityContext says nothing."""
    found = re.search(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, "the Dockerfile names no numeric USER uid:gid"
    return int(found.group(1)), int(found.group(2))


IMAGE_USER = _image_user()
IMAGE_PASSWD = {0: 0, IMAGE_USER[0]: IMAGE_USER[1]}  # root, and the user the Dockerfile adds


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
    localhost: str = field(default_factory=next_ip)  # this node's own 127.0.0.1 (module docstring)


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
    now = _now()
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _setpriv(who: Security) -> list[str]:
    """The runtime's credentials for a container process: user, groups, exactly the added capabilities."""
    return [
        "setpriv",
        f"--reuid={who.uid}",
        f"--regid={who.gid}",
        f"--groups={','.join(map(str, who.groups))}" if who.groups else "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=" + ",".join(["-all", *(f"+{c}" for c in who.capabilities)]),
        *(["--no-new-privs"] if who.no_new_privs else []),
        "--",
    ]


@dataclass
class Container:
    """One running container of a pod: its process and what the kubelet gave it."""

    name: str
    spec: dict[str, Any]
    security: Security
    env: dict[str, str]
    listen: tuple[tuple[str, int], ...]  # where it serves, after the mapping of the module docstring
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exec(self, command: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """As ``kubectl exec`` / an exec probe: in the container's mount namespace, as its user with its
        capabilities, with its environment."""
        argv = ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--", *_setpriv(self.security), *command]
        return subprocess.run(argv, env=self.env, cwd="/", capture_output=True, text=True, timeout=timeout)


@dataclass
class Pod:
    name: str
    namespace: str
    uid: str
    ip: str
    node: Node
    template: PodTemplate
    directory: Path  # the pod's directory on the "node": serviceaccount/, hosts, volumes/<name>/
    admin: ApiAdmin = field(repr=False)
    containers: list[Container] = field(default_factory=list)
    started: str = field(default_factory=_now)
    auth: tuple[str, str] | None = None  # basic auth for get(), when the web config asks for it

    @property
    def main(self) -> Container:
        """The chart's first container (``lbdoctor``): what ``kubectl logs`` shows by default."""
        return self.containers[0]

    def container(self, name: str) -> Container:
        (found,) = [c for c in self.containers if c.name == name]
        return found

    def volume(self, name: str) -> Path:
        return self.directory / "volumes" / name

    @property
    def port(self) -> int:
        """The main container's first port (``http-metrics``): where the kubelet's HTTP probes go."""
        return int(self.main.spec["ports"][0]["containerPort"])

    @property
    def scheme(self) -> str:
        """https when the chart's probes say the web config serves TLS."""
        http = (self.main.spec.get("readinessProbe") or {}).get("httpGet") or {}
        return str(http.get("scheme", "HTTP")).lower()

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    def get(
        self, path: str, timeout: float = 5.0, host: str | None = None, auth: tuple[str, str] | None = None
    ) -> tuple[int, str]:
        """GET on the main container's port (the pod IP, or ``host``), with basic auth when ``auth`` or
        ``self.auth`` is set; the certificate is not verified (the roles' own reads verify it)."""
        base = self.base if host is None else f"{self.scheme}://{host}:{self.port}"
        request = urllib.request.Request(base + path)
        user = auth or self.auth
        if user is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=_unverified()) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log(self, container: str | None = None) -> str:
        return (self.main if container is None else self.container(container)).log()

    def alive(self) -> bool:
        return all(c.alive() for c in self.containers)

    def probe(self, container: Container, kind: str = "readinessProbe") -> tuple[bool, str]:
        """One run of a container's probe as the kubelet runs it: (passed, what it saw)."""
        spec = container.spec.get(kind)
        if not spec:
            return True, "no probe: ready once running"
        timeout = float(spec.get("timeoutSeconds", 1))
        if "exec" in spec:
            try:
                done = container.exec(list(spec["exec"]["command"]), timeout=timeout)
            except subprocess.TimeoutExpired:
                return False, f"exec timed out after {timeout:g} s"
            return done.returncode == 0, f"exit {done.returncode}: {(done.stdout + done.stderr).strip()}"
        if "httpGet" in spec:
            http = spec["httpGet"]
            port = self._port(container, http["port"])
            scheme = str(http.get("scheme", "HTTP")).lower()
            context = _unverified() if scheme == "https" else None  # the kubelet does not verify it
            url = f"{scheme}://{self.ip}:{port}{http.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
                    return 200 <= response.status < 400, f"{url}: {response.status}"
            except urllib.error.HTTPError as error:
                return 200 <= error.code < 400, f"{url}: {error.code} {error.read()[:300].decode(errors='replace')}"
            except OSError as error:
                return False, f"{url}: {error}"
        if "tcpSocket" in spec:
            port = self._port(container, spec["tcpSocket"]["port"])
            try:
                socket.create_connection((self.ip, port), timeout=timeout).close()
            except OSError as error:
                return False, f"{self.ip}:{port}: {error}"
            return True, f"{self.ip}:{port}: connected"
        raise AssertionError(f"{container.name}: {kind} {sorted(spec)} is not modelled")

    @staticmethod
    def _port(container: Container, port: int | str) -> int:
        if isinstance(port, int):
            return port
        (found,) = [p["containerPort"] for p in container.spec.get("ports") or [] if p.get("name") == port]
        return int(found)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """As the kubelet: every container's readiness probe until each passes; then the pod is Ready."""
        deadline = time.monotonic() + timeout
        ready: dict[str, bool] = {}
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            for container in self.containers:
                if not container.alive():
                    raise AssertionError(
                        f"{self.name}/{container.name} exited {container.process.returncode}: {container.log()[-3000:]}"
                    )
                if not ready.get(container.name):
                    ready[container.name], seen[container.name] = self.probe(container)
            if all(ready.get(c.name) for c in self.containers):
                self._report(ready)
                return
            time.sleep(0.3)
        waiting = [c for c in self.containers if not ready.get(c.name)]
        raise AssertionError(
            f"{self.name} not ready after {timeout:.0f} s: "
            + "; ".join(f"{c.name}: {seen.get(c.name)}; log: {c.log()[-3000:]}" for c in waiting)
        )

    def _report(self, ready: Mapping[str, bool]) -> None:
        """The pod's status as the kubelet writes it: each container's, and the pod's conditions."""
        now = _now()
        everything = all(ready.get(c.name) for c in self.containers)
        conditions = [
            {
                "type": kind,
                "status": "True" if everything or kind in ("PodScheduled", "Initialized") else "False",
                "lastTransitionTime": now,
            }
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        statuses = [
            {
                "name": c.name,
                "ready": bool(ready.get(c.name)),
                "started": True,
                "restartCount": 0,
                "image": c.spec["image"],
                "imageID": "",
                "containerID": f"containerd://{c.pid:064x}",
                "state": {"running": {"startedAt": self.started}},
            }
            for c in self.containers
        ]
        self.admin.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
            {"status": {"conditions": conditions, "containerStatuses": statuses}},
        )

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching ``labels`` in /metrics (0 when there is none)."""
        _, text = self.get("/metrics")
        return metric_value(text, name, **labels)

    def signal(self, signum: int) -> None:
        """To every container still running, as the kubelet stops a pod."""
        for container in self.containers:
            if container.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(container.pid, signum)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for container in self.containers:
            container.process.wait(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM to every container, as the kubelet stops a pod; SIGKILL after ``timeout``. The main
        container's exit code."""
        self.signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            for container in self.containers:
                container.process.wait()
        return int(self.main.process.returncode)


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


_LISTEN = re.compile(r"^(?:\[(?P<bracketed>[^\]]+)\]|(?P<plain>[^:\[\]]*)):(?P<port>\d+)$")


def listen_mapping(
    raw: str, *, host_network: bool, pod_ip: str, localhost: str, port: int
) -> list[tuple[str, str, int]]:
    """Each address of the chart's ``LBDOCTOR_LISTEN`` (as written, before the kubelet expands it) and
    where the test serves it: (the chart's form, host, port). Only the forms the module docstring names
    are accepted; anything else fails, so a changed chart is looked at, not silently mapped."""
    mapped = []
    for part in raw.split(","):
        found = _LISTEN.match(part.strip())
        if not found or int(found.group("port")) != port:
            raise AssertionError(f"the chart's listen address changed: {part!r} in {raw!r} (port {port} expected)")
        host = found.group("bracketed") or found.group("plain")
        if host == "$(HOST_IP)" and host_network:  # the node's address, which is this pod's
            mapped.append((part, pod_ip, port))
        elif host == "127.0.0.1":
            mapped.append((part, localhost, port))
        elif host in ("0.0.0.0", "", "::") and not host_network:
            mapped.append((part, pod_ip, port))
        elif host in ("0.0.0.0", "", "::"):
            raise AssertionError(f"a host-network pod serving on every interface of the node: {raw!r}")
        else:
            raise AssertionError(f"the chart's listen address changed: {part!r} in {raw!r} is not modelled")
    return mapped


def _volumes(cluster: ClusterAccess, template: PodTemplate, directory: Path, fs_group: int | None) -> dict[str, Path]:
    """Each volume of the pod as the kubelet sets it up on the node, once for all its containers."""
    made: dict[str, Path] = {}
    for volume in template.spec.get("volumes") or []:
        path = directory / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "emptyDir" in volume:
            if volume["emptyDir"].get("medium"):
                raise AssertionError(f"volume {volume['name']}: emptyDir medium {volume['emptyDir']['medium']!r}")
            # pkg/volume/emptydir: 0777; with fsGroup, SetVolumeOwnership adds the group and setgid.
            path.chmod(0o777)
            if fs_group is not None:
                os.chown(path, -1, fs_group)
                path.chmod(0o2777)
        elif "secret" in volume:
            _secret_volume(cluster, template.namespace, volume["secret"], path, fs_group)
        else:
            raise AssertionError(f"volume {volume['name']}: only emptyDir and secret volumes are modelled")
        made[volume["name"]] = path
    return made


def _secret_volume(
    cluster: ClusterAccess, namespace: str, source: Mapping[str, Any], path: Path, fs_group: int | None
) -> None:
    """The Secret's keys as the kubelet's AtomicWriter lays them out: the files in a timestamped directory,
    ``..data`` pointing at it, and each name a symlink through ``..data`` (how an update swaps them all at
    once). ``defaultMode`` 0644 (or the item's mode); with fsGroup, the group and its read bit."""
    secret = cluster.admin.get(f"/api/v1/namespaces/{namespace}/secrets/{source['secretName']}")
    data = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    default_mode = int(source.get("defaultMode", 0o644))
    items = source.get("items") or [{"key": key, "path": key} for key in sorted(data)]
    path.chmod(0o1777 if fs_group is None else 0o3777)  # the volume's tmpfs root, as the kubelet mounts it
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.000000001", time.gmtime())
    payload = path / stamp
    payload.mkdir(mode=0o755)
    for item in items:
        target = payload / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[item["key"]])
        mode = int(item.get("mode", default_mode))
        if fs_group is not None:  # SetVolumeOwnership: the group, and its read bit on a read-only volume
            os.chown(target, -1, fs_group)
            mode |= 0o440
        target.chmod(mode)
    (path / "..data").symlink_to(stamp)
    for top in sorted({Path(item["path"]).parts[0] for item in items}):
        (path / top).symlink_to(Path("..data") / top)


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
) -> Pod:
    """Create the pod in the API and start each of its containers as the kubelet would. ``env`` adds
    variables the test needs over the chart's (a shorter lease, say) to every container; ``hosts`` maps
    names to addresses in /etc/hosts."""
    if os.geteuid() != 0:
        raise PermissionError("starting a pod the kubelet's way needs root (a private mount namespace, setpriv)")
    admin = cluster.admin
    namespace = template.namespace
    host_network = bool(template.spec.get("hostNetwork"))
    ip = node.ip if host_network else pod_ip
    owner = None
    if template.kind == "DaemonSet":
        daemonset = admin.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{template.name}")
        owner = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": template.name,
            "uid": daemonset["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    created = admin.create(f"/api/v1/namespaces/{namespace}/pods", template.pod(index, node.name, owner))
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    pod_localhost = node.localhost if host_network else next_ip()

    directory = workdir / name
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    pod = Pod(name, namespace, uid, ip, node, template, directory, admin)
    admin.patch(
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": node.ip,
                "startTime": pod.started,
            }
        },
    )

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
    fs_group = (template.spec.get("securityContext") or {}).get("fsGroup")
    volumes = _volumes(cluster, template, directory, None if fs_group is None else int(fs_group))
    secrets = directory / "serviceaccount"
    secrets.mkdir()
    secrets.chmod(0o755)
    token = cluster.pod_token(created)
    for file_name, content in (("token", token), ("ca.crt", cluster.ca_path.read_text()), ("namespace", namespace)):
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

    for spec in template.containers:
        who = security(template.spec, spec, IMAGE_USER, IMAGE_PASSWD)
        variables = container_env(
            spec, facts, services, enable_service_links=template.spec.get("enableServiceLinks", True)
        )
        # Departures (module docstring): the API server's reachable address; the listen addresses mapped.
        variables["KUBERNETES_SERVICE_HOST"], variables["KUBERNETES_SERVICE_PORT"] = "127.0.0.1", str(cluster.port)
        listen: tuple[tuple[str, int], ...] = ()
        raw = {item["name"]: item.get("value") for item in spec.get("env") or []}.get("LBDOCTOR_LISTEN")
        if raw is not None:
            port = int(spec["ports"][0]["containerPort"])
            mapped = listen_mapping(raw, host_network=host_network, pod_ip=ip, localhost=pod_localhost, port=port)
            # A form kept (the node's address) is served as the kubelet expanded it, brackets and all.
            kept = variables["LBDOCTOR_LISTEN"].split(",")
            for number, (form, host, port_) in enumerate(mapped):
                if form.startswith("[$(HOST_IP)]"):
                    assert kept[number] == f"[{host}]:{port_}", (kept, mapped)  # as the kubelet expanded it
            variables["LBDOCTOR_LISTEN"] = ",".join(
                kept[number] if form.startswith("[$(HOST_IP)]") else f"{host}:{port_}"
                for number, (form, host, port_) in enumerate(mapped)
            )
            listen = tuple((host, port_) for _, host, port_ in mapped)
        elif (spec.get("args") or [None])[0] == "run":
            raise AssertionError(f"{spec['name']}: a daemon without LBDOCTOR_LISTEN would serve on 0.0.0.0:9850")
        # What the image sets (Dockerfile ENV), and what the runtime adds.
        image_env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": node.name if host_network else name,
            "HOME": "/root" if who.uid == 0 else "/home/lbdoctor",  # the image's user has no home directory
        }
        variables = {**image_env, **variables, **(env or {})}
        own = directory / "containers" / spec["name"]
        own.mkdir(parents=True)
        script = _mount_script(spec, who, volumes, secrets, hosts_file, own, directory, template)
        command = [expand(str(part), variables) for part in [*(spec.get("command") or ["lbdoctor"]), *spec["args"]]]
        script.append("exec " + shlex.join([*_setpriv(who), *command]))
        log_path = directory / f"{spec['name']}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-euc", "\n".join(script)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=variables,
                cwd="/",
                start_new_session=True,
            )
        pod.containers.append(Container(spec["name"], spec, who, variables, listen, process, log_path))
    return pod


def _mount_script(
    spec: Mapping[str, Any],
    who: Security,
    volumes: Mapping[str, Path],
    secrets: Path,
    hosts: Path,
    own: Path,
    pod_directory: Path,
    template: PodTemplate,
) -> list[str]:
    quote = shlex.quote
    script = _reachable_script([ROOT, Path(sys.base_prefix)], own / "staging")
    mounts = list(spec.get("volumeMounts") or [])
    for mount in mounts:  # the "image" is this checkout and its Python: a volume over them would hide them
        for needed in (ROOT, Path(sys.base_prefix)):
            if needed.is_relative_to(mount["mountPath"]):
                raise AssertionError(
                    f"{needed} is under {mount['mountPath']}, which volume {mount['name']} of {spec['name']} covers "
                    "in the container: run the tests from a checkout elsewhere"
                )
    # Mount points the image lacks, outside /run (an empty tmpfs below): the runtime makes them in the
    # container's own root filesystem; here, in an overlay of their nearest existing parent.
    overlays: list[Path] = []
    for mount in mounts:
        target = Path(mount["mountPath"])
        if target.exists() or Path("/run") in target.parents:
            continue
        parent = next(p for p in target.parents if p.exists())
        if parent in (Path("/"), Path("/tmp")) or pod_directory.is_relative_to(parent):
            raise AssertionError(f"{spec['name']}: no overlay of {parent} for the mount point {target}")
        if parent not in overlays:
            layer = own / "overlay" / str(len(overlays))
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            options = f"lowerdir={parent},upperdir={layer / 'upper'},workdir={layer / 'work'}"
            script.append(f"mount -t overlay -o {quote(options)} overlay {quote(str(parent))}")
            overlays.append(parent)
        script.append(f"mkdir -p {quote(str(target))}")
    if who.read_only_root:
        # Every mount of the namespace's copy of the tree read-only, but the kernel's and /dev (a
        # container's /dev is its own writable tmpfs); the volumes below are mounted after, writable.
        script += [
            "findmnt -rn -o TARGET | while read -r target; do",
            '  case "$target" in /proc|/proc/*|/dev|/dev/*) continue ;; esac',
            '  mount -o remount,bind,ro "$target" 2>/dev/null || true',
            "done",
        ]
    # /var/run is /run: the image's is empty; the secrets' and volumes' mount points are made in it.
    script.append("mount -t tmpfs -o mode=0755,size=1m run /run")
    script += [f"mkdir -p {quote(m['mountPath'])}" for m in mounts if Path("/run") in Path(m["mountPath"]).parents]
    if template.spec.get("automountServiceAccountToken", True):
        script += [
            f"mkdir -p {SA_MOUNT}",
            f"mount --bind {quote(str(secrets))} {SA_MOUNT}",
            f"mount -o remount,bind,ro {SA_MOUNT}",
        ]
    script.append(f"mount --bind {quote(str(hosts))} /etc/hosts")
    # The volumes last, and last of them one that covers the pod's directory on the node (/tmp), where
    # the sources are. A bind takes the read-only flag of its source's mount: set each one's own.
    mounts.sort(key=lambda m: pod_directory.is_relative_to(m["mountPath"]))
    kinds = {v["name"]: v for v in template.spec.get("volumes") or []}
    for mount in mounts:
        target = quote(mount["mountPath"])
        read_only = bool(mount.get("readOnly")) or "secret" in kinds[mount["name"]]
        script.append(f"mount --bind {quote(str(volumes[mount['name']]))} {target}")
        script.append(f"mount -o remount,bind,{'ro' if read_only else 'rw'},nosuid,nodev {target}")
    if who.read_only_root:
        script.append("mount -o remount,ro /run")
    return script
