"""The names kube-proxy gives its chains, recomputed from API data (docs/kube-proxy.md §2).

Names are deterministic, so the comparison never depends on rule comments (which kube-proxy drops
in large clusters) nor on the order ``iptables-save`` prints rules in.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

# nftables object names are limited in length; kube-proxy shortens longer ones and marks the cut.
NFT_NAME_LIMIT = 240


def _digest(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()


def join_host_port(ip: str, port: int) -> str:
    """``10.0.0.1:80`` or ``[fd00::1]:80``, as Go's net.JoinHostPort writes it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class ServicePortName:
    """One port of one Service, the unit kube-proxy programs rules for."""

    namespace: str
    name: str
    port_name: str  # "" for an unnamed port
    protocol: str  # lower case: tcp | udp | sctp

    def __str__(self) -> str:
        """kube-proxy's ``ServicePortName.String()``: ``ns/svc:port`` (``ns/svc`` when the port is unnamed)."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.name}"


# iptables -------------------------------------------------------------------------------------


# Each Service port's hash is asked for three or four times per comparison (SVC, SVL, EXT chains):
# remember the recent ones. Bounded, so Services that come and go do not grow it forever.
@functools.lru_cache(maxsize=1 << 16)
def service_port_hash(spn: ServicePortName) -> str:
    """Shared by KUBE-SVC-, KUBE-SVL-, KUBE-EXT- and KUBE-FW-."""
    return _digest(f"{spn}{spn.protocol}")[:16]


def svc_chain(spn: ServicePortName) -> str:
    return "KUBE-SVC-" + service_port_hash(spn)


def svl_chain(spn: ServicePortName) -> str:
    return "KUBE-SVL-" + service_port_hash(spn)


def ext_chain(spn: ServicePortName) -> str:
    return "KUBE-EXT-" + service_port_hash(spn)


def fw_chain(spn: ServicePortName) -> str:
    return "KUBE-FW-" + service_port_hash(spn)


def sep_chain(spn: ServicePortName, ip: str, port: int) -> str:
    return "KUBE-SEP-" + _digest(f"{spn}{spn.protocol}{join_host_port(ip, port)}")[:16]


# nftables -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def hash_and_truncate(name: str) -> str:
    """An 8-character hash, a dash, and the readable name (cut and marked if too long)."""
    full = f"{_digest(name)[:8]}-{name}"
    if len(full) > NFT_NAME_LIMIT:
        full = full[: NFT_NAME_LIMIT - 3] + "..."
    return full


def nft_service_base(spn: ServicePortName) -> str:
    return f"{spn.namespace}/{spn.name}/{spn.protocol}/{spn.port_name}"


def nft_service_chain(spn: ServicePortName) -> str:
    return "service-" + hash_and_truncate(nft_service_base(spn))


def nft_local_chain(spn: ServicePortName) -> str:
    return "local-" + hash_and_truncate(nft_service_base(spn))


def nft_external_chain(spn: ServicePortName) -> str:
    return "external-" + hash_and_truncate(nft_service_base(spn))


def nft_endpoint_chain(spn: ServicePortName, ip: str, port: int) -> str:
    # IPv6 colons would clash with nft syntax in names, so kube-proxy writes them as dots.
    return "endpoint-" + hash_and_truncate(f"{nft_service_base(spn)}__{ip.replace(':', '.')}/{port}")
