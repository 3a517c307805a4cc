"""The causal rules table: well-formed, acyclic, and the links it draws over any round obey its contract.

The behaviour of each rule on real results (moto, real iptables dumps, real loopback apps) is in
tests/test_causal_rules.py and tests/aws/test_causal_rules.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.checks.causes import RULES, link, link_round, order
from exporter.checks.registry import SPECS
from exporter.model import subjects
from exporter.model.results import Check, CheckResult, ObjectRef, Reason, ResultKey, Status, TargetRef

BAD = (Status.FAIL, Status.WARN)


def test_every_rule_speaks_of_its_checks_reasons_and_known_subjects() -> None:
    for rule in RULES:
        assert rule.cause_reasons <= set(SPECS[rule.cause].all_reasons), rule.why
        assert rule.effect_reasons <= set(SPECS[rule.effect].all_reasons), rule.why
        assert rule.via and set(rule.via) <= set(subjects.KINDS), rule.why
        assert rule.why and rule.cause_statuses <= set(BAD)


def test_the_rules_cannot_make_a_cycle() -> None:
    """Seen as a graph of (check, reason, object kind) the table is acyclic, so no round can hold a cycle
    whatever its results (``link`` refuses one anyway). A rule restricted to object kinds only joins those."""
    any_kind = "*"

    def nodes(check: Check, reasons: frozenset[Reason], kinds: frozenset[str]) -> set[tuple[Check, Reason, str]]:
        chosen = reasons or frozenset(SPECS[check].all_reasons)
        return {(check, reason, kind) for reason in chosen for kind in (kinds or {any_kind})}

    edges: dict[tuple[Check, Reason, str], set[tuple[Check, Reason, str]]] = {}
    for rule in RULES:
        for cause in nodes(rule.cause, rule.cause_reasons, rule.cause_kinds):
            edges.setdefault(cause, set()).update(nodes(rule.effect, rule.effect_reasons, rule.effect_kinds))

    def joins(a: tuple[Check, Reason, str], b: tuple[Check, Reason, str]) -> bool:
        return (a[:2] == b[:2] and any_kind in (a[2], b[2])) or a == b

    def successors(node: tuple[Check, Reason, str]) -> set[tuple[Check, Reason, str]]:
        return {after for before, found in edges.items() if joins(before, node) for after in found}

    for start in edges:
        seen: set[tuple[Check, Reason, str]] = set()
        frontier = successors(start)
        while frontier:
            node = frontier.pop()
            assert not joins(node, start), f"a rule chain leads from {start} back to it"
            if node not in seen:
                seen.add(node)
                frontier |= successors(node)


# -- any round --------------------------------------------------------------------------------------------

_OBJECTS = [
    ObjectRef("Pod", "shop", "web-1"),
    ObjectRef("Service", "shop", "web"),
    ObjectRef("Ingress", "shop", "web"),
    ObjectRef("Node", "", "node-a"),
    ObjectRef("Deployment", "kube-system", "aws-load-balancer-controller"),
]
_SUBJECTS = [
    subjects.pod("shop", "web-1"),
    subjects.service("shop", "web"),
    subjects.node("node-a"),
    subjects.service_node("shop", "web", "node-a"),
    subjects.service_pod("shop", "web", "web-1"),
    subjects.tg_pod(_OBJECTS[2], "web-1"),
    subjects.tg_node(_OBJECTS[2], "node-a"),
    subjects.elb_target(_OBJECTS[2], "10.0.0.1", 8080),
    subjects.model(_OBJECTS[2]),
    subjects.controller(),
]


@st.composite
def a_result(draw: st.DrawFn) -> CheckResult:
    check = draw(st.sampled_from(list(Check)))
    status = draw(st.sampled_from(list(Status)))
    reason = None if status is Status.OK else draw(st.sampled_from(SPECS[check].all_reasons))
    target = draw(
        st.one_of(st.none(), st.builds(TargetRef, st.sampled_from([None, "web-1"]), st.just(None), st.just(8080)))
    )
    return CheckResult(
        check,
        status,
        reason,
        draw(st.sampled_from(_OBJECTS)),
        "found",
        "fix it",
        target=target,
        node=draw(st.sampled_from([None, "node-a"])),
        about=tuple(draw(st.lists(st.sampled_from(_SUBJECTS), max_size=4, unique=True))),
    )


_KINDS_OF = {
    Check.POD_STATUS: "Pod",
    Check.KUBE_PROXY: "Node",
    Check.CONTROLLER: "Deployment",
}


@st.composite
def a_side(draw: st.DrawFn, rule_index: int, cause: bool) -> CheckResult:
    """A result on one side of a rule of the table, about one of a few subjects of the rule's kinds: rounds
    built of these are dense with links, chains, and candidate cycles."""
    rule = RULES[rule_index]
    check = rule.cause if cause else rule.effect
    reasons = sorted(rule.cause_reasons if cause else rule.effect_reasons) or list(SPECS[check].all_reasons)
    statuses = sorted(rule.cause_statuses) if cause else list(BAD)
    kinds = sorted(rule.cause_kinds if cause else rule.effect_kinds) or [
        draw(st.sampled_from(["Ingress", "Service", _KINDS_OF.get(check, "Service")]))
    ]
    kind = draw(st.sampled_from(kinds))
    ident = draw(st.sampled_from(["a", "b"]))
    about = [(draw(st.sampled_from(rule.via)), ident)]
    about += draw(st.lists(st.sampled_from(_SUBJECTS), max_size=2))
    return CheckResult(
        check,
        draw(st.sampled_from(statuses)),
        draw(st.sampled_from(reasons)),
        ObjectRef(kind, "" if kind == "Node" else "shop", draw(st.sampled_from(["x", "y"]))),
        "found",
        "fix it",
        target=draw(st.sampled_from([None, TargetRef("web-1", None, 8080)])),
        node=draw(st.sampled_from([None, "node-a"])),
        about=tuple(dict.fromkeys(about)),
    )


def a_round() -> st.SearchStrategy[list[CheckResult]]:
    """Pairs of results on both sides of random rules, and unrelated results; one result per key, as a
    round has."""
    sides = st.integers(0, len(RULES) - 1).flatmap(lambda i: st.tuples(a_side(i, True), a_side(i, False)))

    def unique(parts: tuple[list[tuple[CheckResult, CheckResult]], list[CheckResult]]) -> list[CheckResult]:
        found = {r.key: r for pair in parts[0] for r in pair}
        for result in parts[1]:
            found.setdefault(result.key, result)
        return list(found.values())

    return st.tuples(st.lists(sides, max_size=8), st.lists(a_result(), max_size=8)).map(unique)


def _chain_reaches(start: ResultKey, goal: ResultKey, causes: dict[ResultKey, ResultKey]) -> bool:
    seen: set[ResultKey] = set()
    current: ResultKey | None = start
    while current is not None and current not in seen:
        if current == goal:
            return True
        seen.add(current)
        current = causes.get(current)
    return False


def _share(kinds: Sequence[str], cause: CheckResult, effect: CheckResult) -> bool:
    return any(kind in kinds and (kind, ident) in cause.about for kind, ident in effect.about)


def _check_contract(linked: Sequence[CheckResult]) -> None:
    by_key = {result.key: result for result in linked}
    causes = {r.key: r.caused_by for r in linked if r.caused_by is not None}
    for result in linked:
        if result.caused_by is None:
            continue
        # The cause is in the same report, is a failing or warning finding, and a rule of the table joins them.
        cause = by_key.get(result.caused_by)
        assert cause is not None, "the cause is missing from the report"
        assert cause.status in BAD and result.status in BAD
        assert any(
            rule.is_cause(cause) and rule.is_effect(result) and _share(rule.via, cause, result) for rule in RULES
        ), (cause.check, cause.reason, result.check, result.reason)
        # The cause is not itself explained by the effect, however far up.
        assert not _chain_reaches(result.caused_by, result.key, causes)
        assert result.remedy.startswith("caused by ")


@settings(max_examples=150, deadline=None)
@given(a_round())
def test_every_effect_names_a_cause_in_the_same_report_which_it_does_not_explain(results: list[CheckResult]) -> None:
    linked = link(results)
    assert [(r.check, r.status, r.reason, r.object) for r in linked] == [
        (r.check, r.status, r.reason, r.object) for r in results
    ]
    _check_contract(linked)
    ordered = order(linked)
    _check_contract(ordered)
    position = {result.key: index for index, result in enumerate(ordered)}
    for result in ordered:
        if result.caused_by is not None:
            assert position[result.caused_by] < position[result.key]  # roots first
    assert link(linked) == linked  # linking a linked round changes nothing


@settings(max_examples=100, deadline=None)
@given(a_round(), a_round())
def test_a_round_joined_with_another_roles_results_keeps_its_links_inside(
    own: list[CheckResult], imported: list[CheckResult]
) -> None:
    joined = link_round(own, imported)
    assert [r.key for r in joined[: len(own)]] == [r.key for r in own]
    _check_contract(joined)
    own_keys = {r.key for r in own}
    causes = {r.key: r.caused_by for r in joined if r.caused_by is not None}
    for extra in joined[len(own) :]:  # each imported result is there because a link ties it to an own one
        assert extra.key not in own_keys
        assert extra.caused_by in own_keys or any(_chain_reaches(r.key, extra.key, causes) for r in joined[: len(own)])
