"""The dispatch lookups both rule views (iptables, nftables) answer from the indexes they build. Pure."""

from __future__ import annotations


class DispatchLookups:
    """Mixed into a view that fills these four indexes while it reads its rules."""

    _dispatch: dict[tuple[str, str, int], str]
    _node_ports: dict[tuple[str, int], str]
    _rejected: dict[tuple[str, str, int], str]
    _node_ports_rejected: dict[tuple[str, int], str]

    def cluster_target(self, ip: str, protocol: str, port: int) -> str | None:
        return self._dispatch.get((ip, protocol, port))

    def cluster_rejected(self, ip: str, protocol: str, port: int) -> str | None:
        return self._rejected.get((ip, protocol, port))

    def node_port_target(self, protocol: str, port: int) -> str | None:
        return self._node_ports.get((protocol, port))

    def node_port_rejected(self, protocol: str, port: int) -> str | None:
        return self._node_ports_rejected.get((protocol, port))
