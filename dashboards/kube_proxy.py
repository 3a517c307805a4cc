"""lbdoctor / kube-proxy rules: per node, whether kube-proxy's rules match the Services and endpoints."""

from __future__ import annotations

from dashboards.common import HEALTHY, cluster_variable, matcher, runbook, runbooks_link, sel
from dashboards.grafana import (
    Dashboard,
    Link,
    Query,
    datasource_variable,
    query_variable,
    stat,
    state_timeline,
    table,
    timeseries,
)

UID = "lbdoctor-kube-proxy"
NODE = 'node=~"$node"'


def node(metric: str, *matchers: str) -> str:
    return sel(metric, NODE, *matchers, namespaced=False)


def build() -> Dashboard:
    stats = [
        stat(
            "Nodes with stale rules",
            "Nodes whose kube-proxy rules send traffic to endpoints that no longer exist.",
            f"count(sum by (cluster, node) ({node('lbdoctor_kube_proxy_rules_stale')}) > 0)",
        ),
        stat(
            "Nodes with missing rules",
            "Nodes where services or endpoints have no kube-proxy rule.",
            f"count(sum by (cluster, node) ({node('lbdoctor_kube_proxy_rules_missing')}) > 0)",
        ),
        stat(
            "kube-proxy unhealthy",
            "Nodes whose kube-proxy fails its /healthz.",
            f"count(max by (cluster, node) ({node('lbdoctor_kube_proxy_healthy')}) == 0)",
        ),
        stat(
            "Longest sync lag",
            "The longest time any node's kube-proxy is behind the changes it has queued.",
            f"max({node('lbdoctor_kube_proxy_sync_lag_seconds')})",
            unit="s",
            bad_from=None,
        ),
    ]
    for panel in stats:
        panel.width = 6
    health = state_timeline(
        "kube-proxy health per node",
        "kube-proxy's own /healthz on each node.",
        [Query(f"max by (node) ({node('lbdoctor_kube_proxy_healthy')})", "{{node}}")],
        HEALTHY,
    )
    rules = [
        timeseries(
            "Stale rules per node",
            "Rules that send traffic to endpoints no longer in the EndpointSlices.",
            [Query(f"sum by (node) ({node('lbdoctor_kube_proxy_rules_stale')})", "{{node}}")],
        ),
        timeseries(
            "Missing rules per node",
            "Services and endpoints the API has and this node's rules do not.",
            [Query(f"sum by (node) ({node('lbdoctor_kube_proxy_rules_missing')})", "{{node}}")],
        ),
    ]
    for panel in rules:
        panel.links = [Link("Runbook: kube-proxy rules stale", runbook("LbDoctorKubeProxyRulesStale.md"))]
    lag = timeseries(
        "Sync lag per node",
        "How far kube-proxy's last sync is behind its queued changes.",
        [Query(f"max by (node) ({node('lbdoctor_kube_proxy_sync_lag_seconds')})", "{{node}}")],
        unit="s",
        width=12,
    )
    findings = table(
        "kube_proxy findings",
        "The kube_proxy runbook step's findings, with the service and reason.",
        [
            Query(
                "max by (namespace, kind, name, reason) "
                f"({sel('lbdoctor_check_failure_reason', matcher('check', '=', 'kube_proxy'), namespaced=False)})"
            )
        ],
        columns={"namespace": "Namespace", "kind": "Kind", "name": "Name", "reason": "Reason"},
        width=12,
    )
    node_variable = query_variable(
        "node", "Node", 'label_values(lbdoctor_kube_proxy_healthy{cluster=~"$cluster"}, node)'
    )
    return Dashboard(
        UID,
        "lbdoctor / kube-proxy rules",
        "Per node: do kube-proxy's iptables or nftables rules match the Services and EndpointSlices?",
        [datasource_variable(), cluster_variable(), node_variable],
        [stats, [health], rules, [lag, findings]],
        links=[runbooks_link()],
    )
