"""The cluster role's view of its node agents as Prometheus families: up, last read, targets by state.

A few series per node (not per target): the node agents publish their own per-target probe series, and the
cluster role's report carries their failing findings (``lbdoctor_check_failure_reason`` and the causal
families), so a healthy target costs the cluster role nothing here but a count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from exporter.exchange import AgentState, AgentView
from exporter.lb.thresholds import LbState
from exporter.metrics import names
from exporter.metrics.exposition import FamilyWriter, join_labels

AGENTS_PER_STEP = 256


def agent_steps(agents: Sequence[AgentView], out: list[str]) -> Iterator[None]:
    """The node-agent families in slices; appends text to ``out``. Nothing when there are no agents."""
    if not agents:
        return
    up = FamilyWriter(names.NODE_AGENT_UP)
    read = FamilyWriter(names.NODE_AGENT_LAST_READ)
    targets = FamilyWriter(names.NODE_AGENT_TARGETS)
    seen: set[str] = set()
    for start in range(0, len(agents), AGENTS_PER_STEP):
        for agent in agents[start : start + AGENTS_PER_STEP]:
            if not agent.node or agent.node in seen:
                continue  # an agent configured by URL that never answered names no node yet
            seen.add(agent.node)
            node = join_labels(("node",), (agent.node,))
            up.add(node, 1 if agent.state is AgentState.OK else 0)
            if agent.shows and agent.read_at is not None:
                read.add(node, agent.read_at)
                counts = Counter(status.health.state for status in agent.targets)
                for state in LbState:
                    targets.add(join_labels(("node", "state"), (agent.node, state.value)), counts[state])
        yield
    for family in (up, read, targets):
        out.extend(family.render())
