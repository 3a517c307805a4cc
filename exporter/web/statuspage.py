"""The status page: every load-balanced service, its targets, the runbook step that fails, why, and the fix.

Rendered on the server from the published results (no JavaScript); it refreshes itself.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape

from exporter import __version__
from exporter.checks.causes import order
from exporter.checks.context import pods_of
from exporter.checks.health_probe import describe
from exporter.checks.registry import title
from exporter.exchange import AgentState, AgentView
from exporter.lb.backends import OwnerPlan
from exporter.lb.healthcheck import AUTO_MODE
from exporter.lb.targets import TargetStatus
from exporter.lb.thresholds import LbState
from exporter.model.results import CheckResult, ObjectRef, ResultKey, Status, TargetRef
from exporter.report import iso, summary
from exporter.state import Published

_MAX_CARDS = 200
_MAX_CONSEQUENCES = 20  # per card; the JSON API lists every link

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232a;background:#f4f6f8}
header{background:#1d232a;color:#fff;padding:14px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}header .meta{color:#aab4be}
main{padding:16px 24px;max-width:1400px}
h2{font-size:17px;margin:22px 0 8px}
.chips span{display:inline-block;padding:2px 10px;border-radius:12px;margin-right:6px;font-weight:600}
.fail{background:#fde2e1;color:#a31b12}.warn{background:#fff1cc;color:#7a5300}
.ok{background:#dff5e3;color:#17622a}.unknown{background:#e6e9ed;color:#4a5560}
.card{background:#fff;border-radius:8px;padding:12px 16px;margin:10px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card.failing{border-left:5px solid #d93025}.card.warning{border-left:5px solid #e8a600}
tr.failing td{background:#fff5f4}
.step{font-weight:700}.reason{font-family:ui-monospace,monospace;font-weight:600}
.fix{margin-top:6px}.fix b{color:#17622a}
.consequence{margin:6px 0 0 18px;color:#4a5560}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.08);margin-bottom:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e6e9ed;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.badge span{padding:1px 8px;border-radius:10px;font-weight:600;white-space:nowrap}
code{font-family:ui-monospace,monospace;font-size:12.5px}
.empty{color:#4a5560;font-style:italic}
"""


def _badge(status: Status, text: str | None = None) -> str:
    return f'<span class="{status.value}">{escape(text or status.value)}</span>'


def _object(ref: ObjectRef) -> str:
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    return f"{escape(ref.kind)} <code>{escape(where)}</code>"


def _where(result: CheckResult) -> str:
    target = f" · pod <code>{escape(result.target.pod)}</code>" if result.target and result.target.pod else ""
    if result.node and result.object.kind != "Node":
        target += f" · node <code>{escape(result.node)}</code>"
    return target


def _card(result: CheckResult, followers: dict[ResultKey, list[CheckResult]], limit: int = _MAX_CONSEQUENCES) -> str:
    css = "failing" if result.status is Status.FAIL else "warning"
    reason = f' · <span class="reason">{escape(result.reason.value)}</span>' if result.reason else ""
    parts = [
        f'<div class="card {css}" data-check="{result.check.value}" '
        f'data-reason="{escape(result.reason.value if result.reason else "")}">',
        f'{_badge(result.status)} <span class="step">{escape(title(result.check))}</span>'
        f" ({escape(result.check.value)}) · {_object(result.object)}{_where(result)}{reason}",
        f"<div>{escape(result.message)}</div>",
    ]
    if result.remedy:
        parts.append(f'<div class="fix"><b>Fix:</b> {escape(result.remedy)}</div>')
    # Everything that follows from this root, down the chain (a crash loop → the probe → the LB's verdict).
    chain = _consequences(result, followers)
    for depth, follower in chain[:limit]:
        follow_reason = follower.reason.value if follower.reason else follower.status.value
        parts.append(
            f'<div class="consequence" style="margin-left:{18 * depth}px" data-check="{follower.check.value}" '
            f'data-reason="{escape(follow_reason)}">↳ consequence: {escape(title(follower.check))} · '
            f'<span class="reason">{escape(follow_reason)}</span> · {_object(follower.object)}{_where(follower)} · '
            f"{escape(follower.message)}</div>"
        )
    if len(chain) > limit:
        parts.append(f'<div class="consequence">… and {len(chain) - limit} more consequences (see the API)</div>')
    parts.append("</div>")
    return "\n".join(parts)


def _consequences(root: CheckResult, followers: dict[ResultKey, list[CheckResult]]) -> list[tuple[int, CheckResult]]:
    found: list[tuple[int, CheckResult]] = []
    seen = {root.key}
    stack = [(1, follower) for follower in reversed(followers.get(root.key, ()))]
    while stack:
        depth, result = stack.pop()
        if result.key in seen:
            continue
        seen.add(result.key)
        found.append((depth, result))
        stack.extend((depth + 1, follower) for follower in reversed(followers.get(result.key, ())))
    return found


def _problems(results: Sequence[CheckResult]) -> str:
    followers: dict[ResultKey, list[CheckResult]] = defaultdict(list)
    present = {result.key for result in results}
    for result in results:
        if result.caused_by is not None and result.caused_by in present:
            followers[result.caused_by].append(result)
    roots = [
        r
        for r in results
        if r.status in (Status.FAIL, Status.WARN) and (r.caused_by is None or r.caused_by not in present)
    ]
    if not roots:
        return '<p class="empty">No runbook step fails.</p>'
    cards = [_card(root, followers) for root in roots[:_MAX_CARDS]]
    if len(roots) > _MAX_CARDS:
        cards.append(f'<p class="meta">{len(roots) - _MAX_CARDS} more; the JSON API lists all.</p>')
    return "\n".join(cards)


Verdicts = dict[tuple[ObjectRef, TargetRef, str], CheckResult]


def _imported_verdict(status: TargetStatus, agent: AgentView | None, now: float) -> tuple[Status, str]:
    """A node agent's target without a failing finding, as the cluster role shows it: what the agent
    predicts, unless the agent is not answering (then it is shown as stale, never as healthy)."""
    if agent is not None and agent.state is not AgentState.OK:
        age = agent.age(now)
        return Status.UNKNOWN, f"agent {agent.state.value}" + (f", {age:.0f} s old" if age is not None else "")
    if status.outcome is None or status.health.state is LbState.INITIAL:
        return Status.UNKNOWN, "not probed yet" if status.outcome is None else "registering"
    if status.health.state is LbState.HEALTHY and status.outcome.success:
        return Status.OK, Status.OK.value
    return Status.WARN, "failing"  # the agent's finding comes with its next answer


def _target_rows(
    statuses: Sequence[TargetStatus],
    verdicts: Verdicts,
    agents: dict[str, AgentView] | None = None,
    limit: int | None = None,
) -> str:
    """``agents`` (the cluster role): the node column, and each target's node agent for its age and state."""
    now = time.time()
    rows = []
    ordered = sorted(statuses, key=lambda s: (s.target.pod, s.target.node, s.target.request.port))
    if limit is not None and len(ordered) > limit:  # failing targets first, then the rest up to the limit
        ordered.sort(
            key=lambda s: (
                s.health.state is LbState.HEALTHY,
                (s.target.owner, s.target.ref, s.target.node) not in verdicts,
            )
        )
    for status in ordered[:limit]:
        target, outcome = status.target, status.outcome
        verdict = verdicts.get((target.owner, target.ref, target.node))
        if outcome is None:
            last = '<span class="empty">not probed yet</span>'
        elif outcome.success and status.probed_at is not None:
            last = escape(f"{outcome.detail} in {outcome.duration * 1000:.0f} ms")
        else:
            last = escape(outcome.detail)
        state = status.health.state.value
        if verdict is not None:
            verdict_status, label = verdict.status, verdict.reason.value if verdict.reason else verdict.status.value
        elif agents is not None:
            verdict_status, label = _imported_verdict(status, agents.get(target.node), now)
        else:
            verdict_status, label = Status.UNKNOWN, Status.UNKNOWN.value
        reason = verdict.reason.value if verdict and verdict.reason else ""
        fix = escape(verdict.remedy) if verdict and verdict.remedy else ""  # an effect's: its cause's
        node = f"<td><code>{escape(target.node)}</code></td>" if agents is not None else ""
        rows.append(
            f'<tr data-pod="{escape(target.pod)}" data-node="{escape(target.node)}" data-reason="{escape(reason)}">'
            f"<td><code>{escape(target.pod)}</code></td>{node}<td><code>{escape(describe(target))}</code></td>"
            f"<td>{last}</td><td>{escape(state)} ({status.health.transitions} flips)</td>"
            f'<td class="badge">{_badge(verdict_status, label)}</td><td>{fix}</td></tr>'
        )
    if limit is not None and len(ordered) > limit:
        more = len(ordered) - limit
        rows.append(f'<tr><td colspan="7" class="meta">… and {more} more targets (see the API)</td></tr>')
    return "\n".join(rows)


_MAX_AGENT_ROWS = 300
_MAX_TARGET_ROWS = 100  # per load balancer, on the cluster role's page


def _agents(agents: Sequence[AgentView]) -> str:
    """The cluster role's node agents: which answer, how old their answer is, what they see."""
    if not agents:
        return ""
    now = time.time()
    rank = {AgentState.UNREACHABLE: 0, AgentState.STALE: 1, AgentState.GONE: 2, AgentState.OK: 3}
    ordered = sorted(agents, key=lambda a: (rank[a.state], a.node, a.url))
    counts = Counter(agent.state for agent in agents)
    summary_text = ", ".join(f"{counts[state]} {state.value}" for state in AgentState if counts[state])
    rows = []
    for agent in ordered[:_MAX_AGENT_ROWS]:
        age = agent.age(now)
        status = {AgentState.OK: Status.OK, AgentState.GONE: Status.WARN}.get(agent.state, Status.FAIL)
        if agent.state is AgentState.STALE:
            status = Status.WARN
        states = Counter(s.health.state.value for s in agent.targets)
        seen = ", ".join(f"{states[state.value]} {state.value}" for state in LbState if states[state.value])
        failing = sum(1 for r in agent.results if r.status in (Status.FAIL, Status.WARN))
        why = agent.error or ("" if agent.ready else "not ready: its caches are not synced")
        rows.append(
            f'<tr data-node="{escape(agent.node)}" data-state="{agent.state.value}">'
            f"<td><code>{escape(agent.node or agent.url)}</code></td>"
            f'<td class="badge">{_badge(status, agent.state.value)}</td>'
            f"<td>{'never' if age is None else f'{age:.0f} s ago'}</td>"
            f"<td>{len(agent.targets)}{f' ({escape(seen)})' if seen else ''}</td><td>{failing}</td>"
            f"<td>{escape(why)}</td></tr>"
        )
    more = len(ordered) - _MAX_AGENT_ROWS
    return (
        f'<h2>Node agents <span class="meta">{escape(summary_text)}</span></h2>'
        "<table><tr><th>Node</th><th>State</th><th>Last answer</th><th>Targets (predicted state)</th>"
        f"<th>Failing findings</th><th>Why</th></tr>{''.join(rows)}</table>"
        + (f'<p class="meta">{more} more node agents answer; see the API.</p>' if more > 0 else "")
    )


_MAX_SECTIONS = 300  # a page for people: a cluster of thousands of LBs shows its failing ones first


def _step_rows(results: Sequence[CheckResult]) -> str:
    rows = []
    for result in results:
        reason = result.reason.value if result.reason else ""
        target = f" · pod <code>{escape(result.target.pod)}</code>" if result.target and result.target.pod else ""
        css = ' class="failing"' if result.status is Status.FAIL else ""
        rows.append(
            f'<tr{css} data-check="{result.check.value}" data-reason="{escape(reason)}">'
            f"<td>{escape(title(result.check))}</td><td>{_object(result.object)}{target}</td>"
            f'<td class="badge">{_badge(result.status, reason or result.status.value)}</td>'
            f"<td>{escape(result.message)}</td><td>{escape(result.remedy)}</td></tr>"
        )
    return "\n".join(rows)


def _via(plan: OwnerPlan) -> str:
    """How the load balancer is made, when it is not the controller's Ingress or Service."""
    gateways = sorted({str(b.gateway.namespace + "/" + b.gateway.name) for b in plan.backends if b.gateway})
    if gateways:
        return f" <small>via Gateway {escape(', '.join(gateways))}</small>"
    if plan.manager == AUTO_MODE:
        return " <small>by EKS Auto Mode</small>"
    return ""


def _load_balancers(published: Published, agents: Sequence[AgentView] = ()) -> str:
    """One section per load balancer: its object, its Services, their pods, and its targets (the node role's
    own; on the cluster role, every node agent's, with the node and how old the agent's answer is)."""
    results = published.results.results
    by_object: dict[ObjectRef, list[CheckResult]] = defaultdict(list)
    for result in results:
        by_object[result.object].append(result)
    targets: dict[ObjectRef, list[TargetStatus]] = defaultdict(list)
    listed = [s for agent in agents if agent.shows for s in agent.targets] if agents else published.probes
    for status in listed:
        targets[status.target.owner].append(status)
    by_node = {agent.node: agent for agent in agents if agent.node} if agents else None
    limit = _MAX_TARGET_ROWS if agents else None
    verdicts: Verdicts = {
        (r.object, r.target, r.node or ""): r
        for r in results
        if r.check.value == "health_probe" and r.target is not None
    }
    snapshot = published.snapshot
    sections: list[tuple[int, str, str]] = []
    healthy: list[str] = []
    for plan in published.plans:
        members: list[ObjectRef] = [plan.owner]
        for backend in plan.backends:
            service = backend.service
            if service is None:
                continue
            ref = ObjectRef("Service", service.meta.namespace, service.meta.name)
            if ref not in members:
                members.append(ref)
            pods = pods_of(snapshot, service) if snapshot is not None else ()
            members.extend(ObjectRef("Pod", p.meta.namespace, p.meta.name) for p in pods)
        mine = [r for ref in dict.fromkeys(members) for r in by_object.get(ref, ())]
        probes = targets.get(plan.owner, [])
        mine += [verdicts[key] for s in probes if (key := (s.target.owner, s.target.ref, s.target.node)) in verdicts]
        worst = max((r.status for r in mine), key=lambda status: status.severity, default=Status.OK)
        lb = plan.backends[0].lb.upper() if plan.backends else ""
        title = f"{escape(lb)} · {_object(plan.owner)}{_via(plan)}"
        if worst is Status.OK and not probes:
            healthy.append(f"<li>{title}: {len(mine)} checks pass</li>")
            continue
        failing = sorted({f"{r.check.value}: {r.reason.value}" for r in mine if r.status is not Status.OK and r.reason})
        header = f"<h2>{title} {_badge(worst)}</h2>"
        if failing:
            header += f"<p>Failing steps: <code>{escape(', '.join(failing))}</code></p>"
        steps = [r for r in mine if r.status is not Status.OK and r.check.value != "health_probe"]
        passing = sum(1 for r in mine if r.status is Status.OK)
        body = ""
        if steps:
            body += (
                "<table><tr><th>Runbook step</th><th>Object</th><th>Result</th><th>What was found</th>"
                f"<th>What to do</th></tr>{_step_rows(steps)}</table>"
            )
        if probes:
            node = "<th>Node</th>" if by_node is not None else ""
            body += (
                f"<table><tr><th>Pod</th>{node}<th>Health check as the LB sends it</th><th>Last probe</th>"
                "<th>LB verdict (predicted)</th><th>Result</th><th>Fix</th></tr>"
                f"{_target_rows(probes, verdicts, by_node, limit)}</table>"
            )
        body += f'<p class="meta">{passing} other checks pass.</p>' if passing else ""
        section = f'<section data-owner="{escape(str(plan.owner))}">{header}{body}</section>'
        sections.append((-worst.severity, str(plan.owner), section))
    if not sections and not healthy:
        return '<p class="empty">No load balancers found yet.</p>'
    sections.sort()
    shown = [section for _, _, section in sections[:_MAX_SECTIONS]]
    if len(sections) > _MAX_SECTIONS:
        shown.append(
            f'<p class="meta">{len(sections) - _MAX_SECTIONS} more load balancers need attention; see the API.</p>'
        )
    if healthy:
        shown.append(
            f"<details><summary>{len(healthy)} load balancers pass every check</summary><ul>"
            + "".join(healthy[:2000])
            + "</ul></details>"
        )
    return "\n".join(shown)


def render(
    published: Published,
    *,
    role: str,
    ready: bool,
    not_ready_because: str,
    standby: bool = False,
    agents: Sequence[AgentView] = (),
) -> str:
    """``agents``: the cluster role's node agents, whose targets it shows under each load balancer."""
    results = order(published.results.results)
    counts = summary(results)
    chips = "".join(
        f'<span class="{status}">{counts[status]} {status}</span>' for status in ("fail", "warn", "unknown", "ok")
    )
    produced = iso(published.results.produced_at) if published.results.produced_at else "not yet"
    where = f"node {escape(published.node)}" if published.node else f"{escape(role)} role"
    readiness = "" if ready else f'<p class="card warning">Not ready: {escape(not_ready_because)}</p>'
    if standby:
        readiness += '<p class="card warning">Standby: another replica holds the lease and publishes results.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>lbdoctor · {where}</title><style>{_CSS}</style></head>
<body><header><h1>lbdoctor</h1><span class="meta">{where} · results of {produced} · page at
{iso(time.time())} · v{__version__}</span><span class="chips">{chips}</span></header>
<main>{readiness}
<h2>What fails, root causes first</h2>
{_problems(results)}
{_agents(agents)}
{_load_balancers(published, agents)}
<p class="meta"><a href="/metrics">/metrics</a> · <a href="/api/v1/results">/api/v1/results</a></p>
</main></body></html>
"""
