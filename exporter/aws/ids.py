"""Identifiers as AWS and Kubernetes spell them: instance ids in provider IDs, IP address spellings."""

from __future__ import annotations

import ipaddress


def instance_id_of(provider_id: str | None) -> str | None:
    """``aws:///us-east-1a/i-0abc`` -> ``i-0abc``; None for non-EC2 nodes (Fargate has no instance)."""
    if not provider_id or not provider_id.startswith("aws://"):
        return None
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("i-") else None


def normalise_ip(text: str) -> str:
    """One spelling per address (IPv6 targets come back in several)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text
