"""Settings from flags, ``LBDOCTOR_*`` environment variables and an optional YAML file.

Precedence: flag > environment > file > default. Unknown keys and bad values stop start-up with one
line naming the key and where it came from (``SettingsError``), so a typo never runs silently.

Kubernetes gives every container variables for the Services of its namespace (service links, unless
the pod says ``enableServiceLinks: false``): a Service named ``lbdoctor-cluster`` yields
``LBDOCTOR_CLUSTER_SERVICE_HOST``, ``LBDOCTOR_CLUSTER_PORT=tcp://10.100.0.7:9850`` and more. Such a
variable is ignored when its name *and* its value have the shape the kubelet writes and its name is
not a setting; a real setting always wins, and a typo (whose value is not a service link) still stops
start-up.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "LBDOCTOR_"


class SettingsError(Exception):
    """A setting is unknown or invalid. The message is one line, fit to print as is."""


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (for example 0.0.0.0:9850), got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def parse_listen_list(value: str) -> list[tuple[str, int]]:
    """``HOST:PORT[,HOST:PORT...]``: every address to serve on (the node's IP and 127.0.0.1, say)."""
    parts = [part for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"expected HOST:PORT (for example 0.0.0.0:9850), got {value!r}")
    return [parse_listen(part) for part in parts]


class Settings(BaseModel):
    """Every knob of the daemon. Field docs state the unit and why the default is what it is."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    role: Literal["node", "cluster"] = "node"
    listen: str = "0.0.0.0:9850"
    """Where /metrics, the status page and the API are served: HOST:PORT, or several separated by commas. The
    chart binds node agents to their node's address and 127.0.0.1 (kubectl port-forward), not every interface."""
    web_config_file: str = ""
    """A web-config.yml in the Prometheus exporter-toolkit format: TLS, client certificates, basic auth
    (bcrypt), response headers, a rate limit. Empty: plain HTTP, no auth."""
    web_max_connections: int = Field(default=256, ge=8, le=65_536)
    """Most open connections to the HTTP face; more are reset at once. Also kept below the descriptor limit
    minus one descriptor per probe slot and a reserve, so connections can never starve probes."""
    web_max_connections_per_client: int = Field(default=16, ge=1, le=65_536)
    """Most open connections from one client address."""
    web_header_timeout_seconds: float = Field(default=10.0, ge=1, le=300)
    """A connection must send a complete request head (and finish its TLS handshake) within this long of
    connecting or of its previous answer, else it is closed (slowloris)."""
    node_name: str | None = None
    """The node this agent watches (node role). Defaults to the NODE_NAME environment variable."""
    kubeconfig: str | None = None
    """Path to a kubeconfig; in a pod, the service account is used when this is unset."""
    context: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto: readable on a terminal, JSON otherwise (containers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    probe_concurrency: int = Field(default=200, ge=1, le=10_000)
    """Most probes in flight at once; bounds sockets and CPU on big nodes."""
    min_probe_interval_seconds: float = Field(default=5.0, ge=0.1, le=300)
    """Floor on a target's probe interval, whatever the annotations say (ALB/NLB minimum is 5 s)."""
    probe_body_limit_bytes: int = Field(default=16 * 1024, ge=0, le=16 * 1024 * 1024)
    """Response bytes read per HTTP probe; the verdict depends on the status code only."""
    user_agent: str = "ELB-HealthChecker/2.0"
    """The User-Agent ALB health checks send, so access logs and WAFs treat probes alike."""

    default_target_type: Literal["instance", "ip"] = "instance"
    """The AWS Load Balancer Controller's --default-target-type."""
    load_balancer_class: str = "service.k8s.aws/nlb"
    """The controller's --load-balancer-class."""
    ingress_controller: str = "ingress.k8s.aws/alb"
    """IngressClass spec.controller value that marks ALB Ingresses."""

    controller_namespace: str = "kube-system"
    """Where the AWS Load Balancer Controller runs (cluster role: its Deployment, pods and logs)."""
    controller_name: str = "aws-load-balancer-controller"
    """The controller's Deployment name (else found by label app.kubernetes.io/name)."""
    controller_log_interval_seconds: float = Field(default=60.0, ge=5, le=3600)
    """How often the cluster role reads the controller's recent logs for IAM denials."""
    shard: int = Field(default=0, ge=0)
    """This cluster-role replica set's shard (namespaces are split by hash), 0-based."""
    total_shards: int = Field(default=1, ge=1, le=1000)
    leader_election: bool = True
    """Cluster role: one active replica through a coordination.k8s.io Lease; the others stand by."""
    lease_name: str = "lbdoctor-cluster"
    lease_namespace: str | None = None
    """Namespace of the Lease; defaults to the pod's own namespace ($POD_NAMESPACE)."""
    lease_duration_seconds: float = Field(default=15.0, ge=2, le=600)
    """A standby takes over this long after the leader stopped renewing."""
    identity: str | None = None
    """This replica's name in the Lease; defaults to $POD_NAME, else the host name."""
    watch_inactivity_timeout_seconds: float = Field(default=120.0, ge=5, le=3600)
    """Reconnect a watch silent this long; the API server sends bookmarks about every minute."""
    watch_timeout_seconds: int = Field(default=300, ge=10, le=3600)
    """Server-side watch session length (randomised up to twice this, as client-go does)."""
    kube_stale_after_seconds: float = Field(default=180.0, ge=1, le=86400)
    """/readyz turns 503 (and the status page says why) once a watched resource has been out of sync with the
    API server (errors, no watch) or forbidden for longer than this; the default outlasts a silent watch's
    reconnection (watch_inactivity_timeout_seconds) plus the longest backoff."""
    publish_interval_seconds: float = Field(default=1.0, ge=0.05, le=60)
    """Most often a new result set is published after changes (debounces watch bursts)."""
    shutdown_timeout_seconds: float = Field(default=5.0, ge=0.5, le=60)

    probe_node_path: bool = True
    """Also probe instance targets the way the load balancer reaches them: NODE_IP:nodePort (or the
    healthCheckNodePort) through kube-proxy, besides each pod itself."""
    kube_proxy_mode: Literal["auto", "iptables", "nftables", "ipvs", "off"] = "auto"
    """Which dataplane to read. auto: ask kube-proxy (/proxyMode), else look (nftables table, iptables chains).
    off: no kube-proxy on these nodes (a CNI replaces it), so nothing to compare."""
    kube_proxy_interval_seconds: float = Field(default=30.0, ge=5, le=3600)
    """How often this node's rules are read and compared; a 10,000-Service node costs about a second of CPU."""
    kube_proxy_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    """How long a rule may differ from the API before it is reported: kube-proxy's syncPeriod (30 s) covers
    its normal lag, so a rollout does not page anyone."""
    kube_proxy_healthz_url: str = "http://127.0.0.1:10256/healthz"
    """kube-proxy's /healthz (healthzBindAddress); empty: not checked."""
    kube_proxy_metrics_url: str = "http://127.0.0.1:10249/metrics"
    """kube-proxy's /metrics (metricsBindAddress; EKS binds 0.0.0.0:10249, upstream 127.0.0.1); empty: not read."""
    kube_proxy_timeout_seconds: float = Field(default=30.0, ge=1, le=300)
    """Longest wait for iptables-save / nft (kube-proxy's HTTP endpoints get at most 5 s)."""
    kube_proxy_command_prefix: str = ""
    """Run the rule readers through this command, e.g. "nsenter --net=/proc/1/ns/net" when lbdoctor is not in
    the host network namespace."""
    kube_proxy_rules_dir: str = ""
    """Read this node's kube-proxy rules from the dump the privileged sidecar (lbdoctor dump-rules) writes in this
    directory, instead of running iptables-save / nft here; the agent then needs no capabilities. Empty: run them."""
    # ---- between the roles ----
    node_agent_daemonset: str = ""
    """Cluster role: the node agents' DaemonSet, whose probe states it reads from their /api/v1/results to tell
    an application failure from a network one. Only pods in node_agent_namespace that this DaemonSet controls
    (their ownerReference) are read, each for its own node only. Empty: none found this way (the chart sets it)."""
    node_agent_namespace: str | None = None
    """Namespace of the node agents' DaemonSet; defaults to the pod's own namespace ($POD_NAMESPACE)."""
    node_agent_selector: str = ""
    """Cluster role: a label selector (k=v,...) that narrows the list of the DaemonSet's pods; never widens it."""
    node_agent_urls: str = ""
    """Cluster role: node agents' base URLs, comma-separated, besides the DaemonSet's; trusted for any node."""
    node_agent_port: int = Field(default=9850, ge=1, le=65535)
    """Port the node agents serve on (host network: the node's IP)."""
    node_agent_scheme: Literal["http", "https"] = "http"
    """Cluster role: https when the node agents serve TLS (web_config_file)."""
    peer_max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    """Largest answer read from the other role's API (a node agent's /api/v1/results, the cluster role's
    /api/v1/targetgroups); a longer one is cut off, counted and ignored. A node with 5,000 targets answers
    about 5 MiB."""
    peer_tls_ca_file: str = ""
    """CA bundle that signs the other role's serving certificate (web_config_file); empty: the system's CAs."""
    peer_tls_cert_file: str = ""
    """Client certificate to present to the other role (when its web config asks for one)."""
    peer_tls_key_file: str = ""
    """The client certificate's key."""
    peer_tls_server_name: str = ""
    """Verify the other role's certificate for this name: node agents are reached by IP, so their
    certificate names one shared DNS name rather than every node's address."""
    peer_tls_insecure_skip_verify: bool = False
    """Encrypt without verifying the other role's certificate."""
    peer_basic_auth_username: str = ""
    """Basic auth user for the other role's API (its web config's basic_auth_users)."""
    peer_basic_auth_password_file: str = ""
    """File holding that user's password (a mounted Secret; read at each request, so rotation needs no restart)."""
    cluster_role_url: str = ""
    """Node role: the cluster role's base URL, to read the real target-group settings it publishes at
    /api/v1/targetgroups. Empty: probe with the settings the annotations imply."""
    targetgroups_interval_seconds: float = Field(default=60.0, ge=5, le=3600)
    """Node role: how often the published target-group settings are read."""
    aws_refresh_interval_seconds: float = Field(default=5.0, ge=1, le=3600)
    """Cluster role: how often due AWS reads run (each asks only what its cadence makes due)."""
    # ---- AWS (cluster role and lbdoctor diagnose; docs/aws.md) ----
    cluster_name: str | None = None
    """The EKS cluster's name: the controller tags target groups elbv2.k8s.aws/cluster=<name>, and nodes'
    security groups kubernetes.io/cluster/<name>. The AWS checks need it."""
    aws_region: str | None = None
    """AWS Region. Unset: the standard chain (AWS_REGION, set by IRSA and EKS Pod Identity; the profile)."""
    aws_retry_mode: Literal["standard", "adaptive"] = "standard"
    """botocore's retry mode; adaptive also slows down client-side after throttling."""
    aws_max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per AWS call, the first included (botocore retries throttling and transient errors)."""
    aws_elbv2_requests_per_second: float = Field(default=2.0, gt=0, le=100)
    """lbdoctor's share of the account's ELBv2 Describe* bucket (40 tokens; AWS's guide refills 10 a second):
    a fifth, leaving the rest to the AWS Load Balancer Controller and the console."""
    aws_elbv2_burst: int = Field(default=10, ge=1, le=40)
    """Most ELBv2 calls lbdoctor makes back to back before the rate applies."""
    aws_ec2_requests_per_second: float = Field(default=2.0, gt=0, le=100)
    """Client-side rate of EC2 Describe* calls (EC2's own buckets are per API and larger)."""
    aws_ec2_burst: int = Field(default=10, ge=1, le=100)
    aws_cloudwatch: Literal["auto", "on", "off"] = "auto"
    """Watch the load balancers' UnHealthyHostCount in CloudWatch (GetMetricData, 500 target groups a call) to
    notice a change between two reads of a target group. auto: only when the ELBv2 budget cannot read every
    target group within aws_target_health_interval_seconds (CloudWatch bills per metric asked: docs/aws.md)."""
    aws_cloudwatch_interval_seconds: float = Field(default=60.0, ge=10, le=3600)
    """How often CloudWatch is asked (its ELB metrics have one datapoint a minute)."""
    aws_target_health_interval_seconds: float = Field(default=60.0, ge=5, le=3600)
    """How often a target group whose targets are all healthy is asked for its target health."""
    aws_target_health_hot_interval_seconds: float = Field(default=15.0, ge=5, le=3600)
    """How often a target group with a target not healthy, or a failing probe, is asked."""
    aws_topology_interval_seconds: float = Field(default=300.0, ge=30, le=86400)
    """How often the slow-changing picture is re-read: target group settings, load balancers, security
    groups, NACLs, route tables, subnets."""

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen_list(value)
        return value

    @field_validator("web_config_file")
    @classmethod
    def _valid_web_config(cls, value: str) -> str:
        if value:
            from exporter.web.webconfig import WebConfigError, load

            try:
                load(value)
            except WebConfigError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("kube_proxy_command_prefix")
    @classmethod
    def _shell_words(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as error:
            raise ValueError(f"not a command line: {error}") from None
        return value

    @field_validator("kube_proxy_healthz_url", "kube_proxy_metrics_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// URL (or empty to turn it off), got {value!r}")
        return value

    @model_validator(mode="after")
    def _shard_within_total(self) -> Settings:
        if self.shard >= self.total_shards:
            raise ValueError(f"shard {self.shard} is not below total_shards {self.total_shards}")
        return self

    @model_validator(mode="after")
    def _node_needs_a_name(self) -> Settings:
        if self.role == "node" and not self.node_name:
            raise ValueError(
                "the node role needs node_name (--node-name or NODE_NAME, set from spec.nodeName in the DaemonSet)"
            )
        return self

    @model_validator(mode="after")
    def _agents_by_owner(self) -> Settings:
        if self.role != "cluster":
            return self
        if self.node_agent_selector and not self.node_agent_daemonset:
            raise ValueError(
                "node_agent_selector needs node_agent_daemonset: node agents are found by their DaemonSet "
                "(ownerReference), so no other pod carrying their labels can pose as one"
            )
        if self.node_agent_daemonset and not self.node_agent_namespace:
            raise ValueError("node_agent_daemonset needs node_agent_namespace (or POD_NAMESPACE)")
        return self

    @model_validator(mode="after")
    def _key_with_cert(self) -> Settings:
        if bool(self.peer_tls_cert_file) != bool(self.peer_tls_key_file):
            raise ValueError("peer_tls_cert_file and peer_tls_key_file go together")
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen_list(self.listen)[0]

    @property
    def listen_addresses(self) -> list[tuple[str, int]]:
        return parse_listen_list(self.listen)


_FIELDS = set(Settings.model_fields)


def _from_file(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise SettingsError(f"config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SettingsError(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping of setting: value")
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    for key in normalised:
        if key not in _FIELDS:
            raise SettingsError(f"config file {path}: unknown setting {key!r}{_suggest(key)}")
    return normalised


# The variables the kubelet writes for each Service of the pod's namespace (pkg/kubelet/envvars): S is the
# Service's name upper-cased with '-' as '_', N a port number, P its protocol; each name with the value it has.
_S = r"(?P<service>[A-Z][A-Z0-9_]*?)"
_LINK_SHAPES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], bool]], ...] = (
    (re.compile(_S + r"_SERVICE_HOST"), lambda _m, value: _is_ip(value)),  # 10.100.0.7
    (re.compile(_S + r"_SERVICE_PORT(?:_[A-Z0-9_]+)?"), lambda _m, value: _is_port(value)),  # 9850 (+ named ports)
    (re.compile(_S + r"_PORT"), lambda _m, value: _is_link(value)),  # tcp://10.100.0.7:9850 (the first port)
    (re.compile(_S + r"_PORT_(?P<n>[0-9]+)_(?P<p>TCP|UDP|SCTP)"), lambda m, value: _is_link(value, m["p"], m["n"])),
    (re.compile(_S + r"_PORT_(?P<n>[0-9]+)_(?P<p>TCP|UDP|SCTP)_PROTO"), lambda m, value: value == m["p"].lower()),
    (re.compile(_S + r"_PORT_(?P<n>[0-9]+)_(?P<p>TCP|UDP|SCTP)_PORT"), lambda m, value: value == m["n"]),
    (re.compile(_S + r"_PORT_(?P<n>[0-9]+)_(?P<p>TCP|UDP|SCTP)_ADDR"), lambda _m, value: _is_ip(value)),
)
_LINK_URL = re.compile(r"(?P<proto>tcp|udp|sctp)://(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>[0-9]+)")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def _is_link(value: str, proto: str | None = None, port: str | None = None) -> bool:
    found = _LINK_URL.fullmatch(value)
    if found is None or not _is_ip(found["v6"] or found["v4"]) or not _is_port(found["port"]):
        return False
    return (proto is None or found["proto"] == proto.lower()) and (port is None or found["port"] == port)


def service_link(name: str, value: str) -> str | None:
    """The Service whose Kubernetes service link a variable is (``lbdoctor-cluster``), or None unless both
    its name and its value have a shape the kubelet writes."""
    for pattern, value_fits in _LINK_SHAPES:
        found = pattern.fullmatch(name)
        if found is not None and value_fits(found, value):
            return found["service"].lower().replace("_", "-")
    return None


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS:
            if service_link(name, value):
                continue  # a Service's variable (enableServiceLinks), not meant for lbdoctor
            raise SettingsError(f"environment variable {name}: unknown setting {key!r}{_suggest(key)}")
        values[key] = value
    return values


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(_FIELDS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _link_hint(key: str, source: str, environ: Mapping[str, str]) -> str:
    """Why a setting's variable may hold a Service's address: a Service whose service link has its name."""
    name = ENV_PREFIX + key.upper()
    service = service_link(name, environ.get(name, "")) if source.endswith(name) else None
    if service is None:
        return ""
    return (
        f"; this is the service-link variable Kubernetes sets for a Service named {service!r} in the pod's"
        " namespace: rename that Service or set enableServiceLinks: false in the pod spec"
    )


def load(
    flags: Mapping[str, Any],
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the sources and validate. ``flags`` holds only the flags given on the command line."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    if config_file:
        for key, value in _from_file(config_file).items():
            merged[key], sources[key] = value, f"config file {config_file}"
    for key, value in _from_env(environ).items():
        merged[key], sources[key] = value, f"environment variable {ENV_PREFIX}{key.upper()}"
    # The downward API's usual variable names fill in identity settings not given explicitly.
    for key, variable in (
        ("node_name", "NODE_NAME"),
        ("lease_namespace", "POD_NAMESPACE"),
        ("node_agent_namespace", "POD_NAMESPACE"),
        ("identity", "POD_NAME"),
    ):
        if key not in merged and environ.get(variable):
            merged[key], sources[key] = environ[variable], f"environment variable {variable}"
    for key, value in flags.items():
        if value is not None:
            merged[key], sources[key] = value, f"flag --{key.replace('_', '-')}"
    try:
        return Settings(**merged)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "settings"
        message = first["msg"].removeprefix("Value error, ")
        if key in sources:
            raise SettingsError(
                f"invalid setting {key} from {sources[key]}: {message} (got {first.get('input')!r})"
                + _link_hint(key, sources[key], environ)
            ) from None
        raise SettingsError(f"invalid setting {key}: {message}") from None
