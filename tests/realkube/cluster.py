"""A real kube-apiserver and etcd for the tests, as envtest runs them: no other control-plane part.

``RealCluster`` starts etcd and kube-apiserver (built by scripts/kube-binaries) on free loopback ports
with TLS, a client CA (the admin is a client certificate in ``system:masters``), service-account token
signing (ES256) and ``--authorization-mode=RBAC``. No controller-manager, scheduler or kubelet runs:
tests create ServiceAccounts, EndpointSlices and pods themselves and set pod status through the
``status`` subresource; tokens come from the TokenRequest API.

``Admin`` is a small synchronous client for setting the cluster up (threads may share it).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.100.0.0/16"
COMPACTION_INTERVAL = "5s"  # etcd compaction by the API server (default 5 min): old resourceVersions expire fast
UNCACHED = "ingressclasses.networking.k8s.io"  # watched straight from etcd: compaction reaches its watches


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiFailure(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


# ---- certificates -------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usages = [x509.ExtendedKeyUsageOID.CLIENT_AUTH] if client else [x509.ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        names: list[x509.GeneralName] = []
        for name in server_names:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                names.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca: Path
    serving_cert: Path
    serving_key: Path
    sa_public: Path
    sa_private: Path
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca_cert = _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lbdoctor-test-ca")]), ca_key, None, ca=True
        )
        serving_key = _key()
        serving = _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            serving_key,
            (ca_cert, ca_key),
            server_names=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        sa_key = _key()
        files = {
            "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
            "ca.key": _pem_key(ca_key),
            "apiserver.crt": serving.public_bytes(serialization.Encoding.PEM),
            "apiserver.key": _pem_key(serving_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in files.items():
            (directory / name).write_bytes(data)
        (directory / "ca.crt").chmod(0o644)
        return cls(
            ca=directory / "ca.crt",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            sa_public=directory / "sa.pub",
            sa_private=directory / "sa.key",
            directory=directory,
        )

    def client(self, user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A client certificate for ``user`` (its groups as O=), signed by the cluster's client CA."""
        ca_cert = x509.load_pem_x509_certificate((self.directory / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key = _key()
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
            + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        )
        cert = _certificate(subject, key, (ca_cert, ca_key), client=True)
        cert_path, key_path = self.directory / f"{user}.crt", self.directory / f"{user}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path


# ---- the admin client ---------------------------------------------------------------------------


_CLONE_NEWNET = 0x40000000


def in_netns(netns: str, make: Callable[[], T]) -> T:
    """``make()`` on a thread that entered the network namespace ``netns`` (``ip netns add``): the sockets it
    makes belong there and keep working from any thread. setns(2) moves only the calling thread."""
    box: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/var/run/netns/{netns}", "rb") as handle:
            if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                number = ctypes.get_errno()
                box["error"] = OSError(number, f"setns {netns}: {os.strerror(number)}")
                return
        try:
            box["value"] = make()
        except BaseException as error:  # handed to the caller's thread
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Admin:
    """JSON over HTTPS with a client certificate; one connection per thread. ``netns``: the API server listens
    in that network namespace (its 127.0.0.1)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, netns: str | None = None) -> None:
        self._host, self._port, self._context, self._netns = host, port, context, netns
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=60)
            netns = self._netns
            if netns is not None:
                plain = connection._create_connection  # type: ignore[attr-defined]
                connection._create_connection = lambda *args: in_netns(netns, lambda: plain(*args))  # type: ignore[attr-defined]
            self._local.connection = connection
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        is_json = "json" in (response.getheader("Content-Type") or "")
        parsed = json.loads(raw) if raw and is_json else raw.decode(errors="replace")
        if response.status >= 400:
            raise ApiFailure(response.status, parsed)
        return parsed

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        with contextlib.suppress(ApiFailure):
            return self.request("DELETE", path)
        return None

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def apply(self, obj: Mapping[str, Any]) -> Any:
        """Create the object, or replace it when it exists (what ``kubectl apply`` amounts to here)."""
        path = object_path(obj)
        try:
            return self.create(path.rsplit("/", 1)[0], obj)
        except ApiFailure as failure:
            if failure.status != 409:
                raise
        current = self.get(path)
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        return self.request("PUT", path, body)

    def namespace(self, name: str) -> None:
        """A namespace with its ``default`` ServiceAccount (no controller-manager creates it here)."""
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}})

    def token(
        self, namespace: str, account: str, *, seconds: int = 3600, bound: Mapping[str, str] | None = None
    ) -> str:
        """A service-account token from the TokenRequest API (bound to a Pod or Secret when given)."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if bound is not None:
            spec["boundObjectRef"] = dict(bound)
        answer = self.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])


_CORE = {"Pod", "Service", "Node", "Namespace", "ServiceAccount", "Secret", "ConfigMap", "Event", "Endpoints"}


def object_path(obj: Mapping[str, Any]) -> str:
    """The REST path of an object: /api/v1/namespaces/NS/pods/NAME, /apis/GROUP/VERSION/…"""
    kind = obj["kind"]
    api = obj["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    plural = {
        "Ingress": "ingresses",
        "Endpoints": "endpoints",
        "IngressClass": "ingressclasses",
        "EndpointSlice": "endpointslices",
        "CustomResourceDefinition": "customresourcedefinitions",
        "TargetGroupBinding": "targetgroupbindings",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Lease": "leases",
        "Deployment": "deployments",
        "DaemonSet": "daemonsets",
        "PodDisruptionBudget": "poddisruptionbudgets",
        "NetworkPolicy": "networkpolicies",
        # Gateway API, the AWS Load Balancer Controller's Gateway CRDs, IngressClassParams
        "GatewayClass": "gatewayclasses",
        "Gateway": "gateways",
        "HTTPRoute": "httproutes",
        "GRPCRoute": "grpcroutes",
        "TCPRoute": "tcproutes",
        "UDPRoute": "udproutes",
        "TLSRoute": "tlsroutes",
        "TargetGroupConfiguration": "targetgroupconfigurations",
        "LoadBalancerConfiguration": "loadbalancerconfigurations",
        "IngressClassParams": "ingressclassparams",
    }.get(kind) or (kind.lower() + "s" if kind in _CORE else None)
    if plural is None:
        raise ValueError(f"no REST path known for {kind}")
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace and kind not in ("Namespace", "Node") else ""
    return f"{base}{scope}/{plural}/{obj['metadata']['name']}"


# ---- the processes ------------------------------------------------------------------------------


class RealCluster:
    """``netns``: run etcd and kube-apiserver in that network namespace (``ip netns add``; root), where the tests
    may give lo addresses the API server accepts in Endpoints and proxies to (TEST-NET-1), which the host's
    network never sees."""

    def __init__(self, binaries: Path, workdir: Path, netns: str | None = None) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.netns = netns
        self._prefix = ["ip", "netns", "exec", netns] if netns else []
        self.pki = Pki.create(workdir / "pki")
        self.etcd_port = free_port()
        self.port = free_port()
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        admin_cert, admin_key = self.pki.client("admin", ("system:masters",))
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(admin_cert), str(admin_key))
        self.admin = Admin("127.0.0.1", self.port, context, netns)
        self.admin_kubeconfig = self.kubeconfig("admin", admin_cert, admin_key)
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca_path(self) -> Path:
        return self.pki.ca

    def pod_token(self, pod: Mapping[str, Any]) -> str:
        """The token the kubelet's projected volume holds: bound to the pod, about an hour."""
        meta = pod["metadata"]
        bound = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
        return self.admin.token(meta["namespace"], pod["spec"]["serviceAccountName"], seconds=3607, bound=bound)

    def kubeconfig(self, user: str, cert: Path, key: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "real", "cluster": {"server": self.url, "certificate-authority": str(self.pki.ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": user, "context": {"cluster": "real", "user": user}}],
            "current-context": user,
        }
        path = self.workdir / f"kubeconfig-{user}"
        path.write_text(json.dumps(config, indent=1))
        return path

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        cert, key = self.pki.client(user, groups)
        return self.kubeconfig(user, cert, key)

    # lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        self._start_etcd()
        self.start_apiserver(timeout)
        self.aggregate_cluster_roles()

    def aggregate_cluster_roles(self) -> None:
        """What kube-controller-manager's clusterrole-aggregation controller does: fill the rules of
        ClusterRoles with an aggregationRule (admin, edit, view) from the ClusterRoles their selectors
        match. Without it the built-in ``view`` grants nothing."""
        roles = self.admin.get("/apis/rbac.authorization.k8s.io/v1/clusterroles")["items"]
        for role in roles:
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
            if not selectors:
                continue
            rules: list[Any] = []
            for other in roles:
                labels = other["metadata"].get("labels") or {}
                if other is not role and any(
                    all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
                    for selector in selectors
                ):
                    rules += [rule for rule in other.get("rules") or [] if rule not in rules]
            self.admin.request(
                "PUT",
                f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role['metadata']['name']}",
                {**role, "rules": rules},
            )

    def _start_etcd(self) -> None:
        peer = free_port()
        log = (self.workdir / "etcd.log").open("ab")
        self._etcd = subprocess.Popen(
            [
                *self._prefix,
                str(self.binaries / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",  # a test cluster: durability is not the point, speed is
                "--log-level=warn",
            ],
            stdout=log,
            stderr=log,
        )

    def start_apiserver(self, timeout: float = 90.0) -> None:
        pki = self.pki
        log = (self.workdir / "kube-apiserver.log").open("ab")
        self._apiserver = subprocess.Popen(
            [
                *self._prefix,
                str(self.binaries / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--etcd-compaction-interval={COMPACTION_INTERVAL}",
                f"--watch-cache-sizes={UNCACHED}#0",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--endpoint-reconciler-type=none",  # the kubernetes Service's Endpoints refuse 127.0.0.1
                "--profiling=false",
                "--enable-priority-and-fairness=false",  # fewer moving parts; lbdoctor does not depend on APF
                "--v=0",
            ],
            stdout=log,
            stderr=log,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self._apiserver is not None
            if self._apiserver.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited {self._apiserver.returncode}: {self.log_tail()}")
            try:
                if self.admin.get("/readyz") == "ok":
                    return
            except (ApiFailure, OSError, http.client.HTTPException) as error:
                last = error
            time.sleep(0.25)
        raise RuntimeError(f"kube-apiserver not ready after {timeout:.0f} s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "kube-apiserver.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_apiserver(self) -> None:
        process, self._apiserver = self._apiserver, None
        if process is not None:
            _stop(process)

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """Stop the API server (watches are cut) and start it again on the same port with the same etcd."""
        self.stop_apiserver()
        time.sleep(down_for)
        self.restarts += 1
        self.start_apiserver()

    def stop(self) -> None:
        self.stop_apiserver()
        process, self._etcd = self._etcd, None
        if process is not None:
            _stop(process)

    # etcd -------------------------------------------------------------------------------------
    def _etcd_call(self, path: str, body: Mapping[str, Any]) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=30)
        try:
            connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = json.loads(response.read() or b"{}")
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: {response.status} {payload}")
        return payload

    def revision(self) -> int:
        answer = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/registry/health").decode()})
        return int(answer["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd to its current revision (what the API server's compactor does every interval)."""
        revision = self.revision()
        self._etcd_call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(binaries: Path, workdir: Path, netns: str | None = None) -> Iterator[RealCluster]:
    cluster = RealCluster(binaries, workdir, netns)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def kube_binaries(wait: float = 3600.0) -> tuple[Path | None, str]:
    """Where scripts/kube-binaries put kube-apiserver and etcd, or why they are not there.

    scripts/test starts the build in the background (KUBE_BUILD_STATE names its folder: ``out``,
    ``log``, and ``rc`` once done); this waits for it. Run directly, pytest takes a finished build only.
    """
    build = os.environ.get("KUBE_BUILD_STATE")
    if build:
        folder = Path(build)
        deadline = time.monotonic() + wait
        while not (folder / "rc").exists():
            if time.monotonic() > deadline:
                return None, f"scripts/kube-binaries did not finish in {wait:.0f} s (log: {folder / 'log'})"
            time.sleep(2)
        code = (folder / "rc").read_text().strip()
        if code == "0":
            return Path((folder / "out").read_text().strip()), ""
        log = (folder / "log").read_text(errors="replace").strip().splitlines()
        return None, f"scripts/kube-binaries exited {code}: " + " | ".join(log[-5:])
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(root / "scripts" / "kube-binaries"), "--cached"], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return Path(done.stdout.strip()), ""
    return None, done.stderr.strip() or f"scripts/kube-binaries --cached exited {done.returncode}"
