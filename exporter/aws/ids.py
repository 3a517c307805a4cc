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


def eks_cluster_of(text: str | None) -> tuple[str, str] | None:
    """(region, cluster name) from an EKS cluster ARN, as ``aws eks update-kubeconfig`` names kubeconfig
    contexts and clusters (``arn:aws:eks:us-east-1:123456789012:cluster/prod``); None for anything else.
    Lets ``lbdoctor diagnose`` find the cluster name and Region without asking."""
    if not text or not text.startswith("arn:"):
        return None
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[2] != "eks" or not parts[5].startswith("cluster/"):
        return None
    name = parts[5].removeprefix("cluster/")
    return (parts[3], name) if parts[3] and name else None
