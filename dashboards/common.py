"""What every dashboard shares: selectors, variables, runbook links, value mappings."""

from __future__ import annotations

from dashboards.grafana import Json, query_variable, value_mapping

# The runbook pages (docs/runbooks/) as a person opens them; alerts/lbdoctor.rules.yaml uses the same
# base for runbook_url (tests/ship/test_dashboards.py keeps the two in step).
RUNBOOK_BASE = "https://github.com/lbdoctor/lbdoctor/blob/main/docs/runbooks/"

CLUSTER = 'cluster=~"$cluster"'
NAMESPACE = 'namespace=~"$namespace"'


def matcher(label: str, op: str, value: str) -> str:
    """One label matcher, e.g. matcher("check", "=", "kube_proxy") -> check="kube_proxy"."""
    return f'{label}{op}"{value}"'


def runbook(page: str, anchor: str = "") -> str:
    return f"{RUNBOOK_BASE}{page}" + (f"#{anchor}" if anchor else "")


def sel(metric: str, *matchers: str, namespaced: bool = True) -> str:
    """metric{cluster=~"$cluster", namespace=~"$namespace", …}. Every lbdoctor series is selected by
    the cluster variable; per-object series also by namespace."""
    parts = [CLUSTER, *([NAMESPACE] if namespaced else []), *matchers]
    return f"{metric}{{{', '.join(parts)}}}"


def cluster_variable() -> Json:
    return query_variable("cluster", "Cluster", "label_values(lbdoctor_build_info, cluster)")


def namespace_variable(*, multi: bool = True) -> Json:
    return query_variable(
        "namespace",
        "Namespace",
        'label_values(lbdoctor_check_status{cluster=~"$cluster"}, namespace)',
        include_all=multi,
        multi=multi,
    )


HEALTHY = value_mapping({0: ("unhealthy", "red"), 1: ("healthy", "green")})
PROBE = value_mapping({0: ("failed", "red"), 1: ("passed", "green")})
# Worst status of a runbook step, as the overview encodes it.
STATUS = value_mapping({0: ("ok", "green"), 1: ("unknown", "text"), 2: ("warn", "yellow"), 3: ("fail", "red")})
# The load balancer's target states (ELBv2 TargetHealth), as the service dashboard encodes them.
ELB_STATE = value_mapping(
    {0: ("unhealthy", "red"), 1: ("healthy", "green"), 2: ("initial, draining or unused", "blue")}
)


def worst_status(by: str, *matchers: str) -> str:
    """The worst status of a runbook step as a number (fail 3, warn 2, unknown 1, ok 0), per `by`.
    `or` keeps the left side's series when both sides have the same labels, so the first status
    present wins, in order of severity."""
    terms = []
    for status, weight in (("fail", 3), ("warn", 2), ("unknown", 1), ("ok", 0)):
        selector = sel("lbdoctor_check_status", *matchers, f'status="{status}"')
        terms.append(f"max by ({by}) ({selector} == 1) * {weight}")
    return "\n  or\n".join(terms)


def runbooks_link() -> Json:
    """The dashboard-level link to the runbook index."""
    return {
        "type": "link",
        "title": "Runbooks",
        "url": runbook("README.md"),
        "targetBlank": True,
        "icon": "doc",
        "tooltip": "What each alert and runbook step means, and the fix",
        "asDropdown": False,
        "includeVars": False,
        "keepTime": False,
        "tags": [],
    }
