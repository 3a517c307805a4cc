"""Parse ``iptables-save`` output as it is really printed (docs/kube-proxy.md §4). Pure, tolerant.

The dump is split into tables, declared chains and raw rule texts in one cheap pass; a rule is
tokenised only when the comparison asks for it (``parse_rule``), so a 430,000-line dump never
becomes 430,000 objects. Nothing here raises on odd input: lines that fit nowhere are counted
(``unknown_lines``) with the first few kept as examples, and a table that never reaches ``COMMIT``
marks the dump truncated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_EXAMPLES = 5


@dataclass(slots=True)
class Table:
    """One table of the dump. Rules stay as the dump's own lines, found through index ranges.

    iptables-save prints each chain's rules together, so a chain is a (start, end) range into the
    dump's lines: no per-chain list or object, which keeps a 100,000-chain dump cheap to index and
    spares the garbage collector. A chain whose rules come in several runs (a hand-edited file)
    keeps a list of line numbers instead.
    """

    name: str
    lines: list[str]
    policies: dict[str, str | None] = field(default_factory=dict)  # declared chains → ACCEPT/DROP/None
    starts: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)
    scattered: dict[str, list[int]] = field(default_factory=dict)
    committed: bool = False

    def has_chain(self, name: str) -> bool:
        return name in self.policies or name in self.starts or name in self.scattered

    def chain_names(self) -> set[str]:
        return {*self.policies, *self.starts, *self.scattered}

    def rules(self, name: str) -> list[str]:
        """The chain's ``-A NAME …`` lines, in dump order."""
        scattered = self.scattered.get(name)
        if scattered is not None:
            return [self.lines[index] for index in scattered]
        start = self.starts.get(name)
        if start is None:
            return []
        return self.lines[start : self.ends[name]]

    def rule_count(self) -> int:
        spans = sum(self.ends[name] - start for name, start in self.starts.items() if name not in self.scattered)
        return spans + sum(len(indexes) for indexes in self.scattered.values())

    def _add_run(self, name: str, start: int, end: int) -> None:
        if name in self.scattered:
            self.scattered[name].extend(range(start, end))
        elif name in self.starts:
            self.scattered[name] = [*range(self.starts[name], self.ends[name]), *range(start, end)]
        else:
            self.starts[name] = start
            self.ends[name] = end


@dataclass(slots=True)
class IptablesSave:
    tables: dict[str, Table] = field(default_factory=dict)
    lines: int = 0
    rules: int = 0
    unknown_lines: int = 0
    undeclared_chains: int = 0  # chains with rules that the dump never declared
    examples: list[str] = field(default_factory=list)  # "line N: why", the first few oddities

    @property
    def truncated(self) -> bool:
        """A table that never reached COMMIT: the dump was cut off (a killed process, a short file)."""
        return any(not table.committed for table in self.tables.values())

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def note(self, number: int, why: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"line {number}: {why}")


def parse_iptables_save(text: str) -> IptablesSave:
    """Tables, chains and rule lines of one ``iptables-save`` (or ``ip6tables-save``) dump."""
    dump = IptablesSave()
    lines = split_lines(text)
    table: Table | None = None
    prefix = "\0"  # "-A NAME " of the run of rules in progress
    run_chain = ""
    run_start = 0
    for index, line in enumerate(lines):
        if line.startswith(prefix):
            continue  # nine lines in ten: the same chain as the line before
        if table is not None and run_chain:
            table._add_run(run_chain, run_start, index)
            run_chain, prefix = "", "\0"
        offset = 0
        if line.startswith("[") and "] -A " in line:  # iptables-save -c: "[packets:bytes] -A …"
            offset = line.index("] -A ") + 2
        if line.startswith("-A ", offset):
            space = line.find(" ", offset + 3)
            name = line[offset + 3 : space] if space > 0 else line[offset + 3 :]
            if table is None or not name:
                dump.unknown_lines += 1
                dump.note(index + 1, "rule outside a table" if name else "rule without a chain")
                continue
            if name not in table.policies and not table.has_chain(name):
                dump.undeclared_chains += 1
                dump.note(index + 1, f"rule for undeclared chain {name}")
            run_chain, run_start, prefix = name, index, f"-A {name} "
            if space < 0 or offset:
                prefix = "\0"  # "-A NAME" alone, or counters that differ per line: a run of one
            continue
        first = line[:1]
        if first == ":" and table is not None:
            space = line.find(" ")
            name = line[1:space] if space > 0 else line[1:].strip()
            if name:
                policy = line[space + 1 :].split(" ", 1)[0] if space > 0 else "-"
                table.policies.setdefault(name, None if policy in ("-", "") else policy)
                continue
        elif first == "*":
            if table is not None and not table.committed:
                dump.note(index + 1, f"table {table.name} not committed before the next one")
            name = line[1:].strip()
            table = dump.tables.get(name) or Table(name, lines)
            table.committed = False
            dump.tables[name] = table
            continue
        elif line.rstrip() == "COMMIT":
            if table is not None:
                table.committed = True
                table = None
                continue
        elif first == "#" or not line.strip():
            continue  # "# Generated by", "# Completed on", "# Warning: …" and blank lines
        dump.unknown_lines += 1
        dump.note(index + 1, f"not understood: {line[:60]!r}")
    if table is not None and run_chain:
        table._add_run(run_chain, run_start, len(lines))
    dump.lines = len(lines)
    dump.rules = sum(table.rule_count() for table in dump.tables.values())
    return dump


def split_lines(text: str, chunk: int = 1 << 20) -> list[str]:
    """``text.splitlines()``, a megabyte at a time: one call over a 40 MB dump would hold the GIL (and so
    the event loop, when this runs in a worker thread) for tens of milliseconds."""
    lines: list[str] = []
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", min(start + chunk, size))
        end = size if end < 0 else end + 1  # keep the newline: "a\n\n" must still end in an empty line
        lines.extend(text[start:end].splitlines())
        start = end
    return lines


# Rules -----------------------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\S+')
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"?')
_ESCAPE = re.compile(r"\\(.)")
_TARGET_FLAGS = ("-j", "-g")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule's options. Matches and target options are kept apart: ``--set`` means different things
    to ``-m recent`` and ``-j MARK``. Options without a value map to ``""``."""

    matches: Mapping[str, str]
    negated: frozenset[str]
    modules: tuple[str, ...]
    target: str | None
    target_options: Mapping[str, str]
    goto: bool = False  # -g instead of -j

    @property
    def comment(self) -> str | None:
        return self.matches.get("--comment")

    def address(self, option: str) -> str | None:
        """``-d``/``-s`` without the ``/32`` or ``/128`` iptables-save adds to host addresses."""
        value = self.matches.get(option)
        if value is None:
            return None
        return strip_host_prefix(value)


def strip_host_prefix(value: str) -> str:
    if value.endswith("/32") and ":" not in value:
        return value[:-3]
    if value.endswith("/128"):
        return value[:-4]
    return value


def tokenize(text: str) -> list[str]:
    """Split on spaces, keeping double-quoted strings (with ``\\"`` escapes) as one quoted token."""
    if '"' not in text:
        return text.split()
    return _TOKEN.findall(text)


def unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return _ESCAPE.sub(r"\1", token[1:-1])
    if token[:1] == '"':  # an unterminated quote in a garbled line: keep what is there
        return _ESCAPE.sub(r"\1", token[1:])
    return token


def _is_option(token: str) -> bool:
    return len(token) > 1 and token[0] == "-" and not token[1].isdigit()


def parse_rule(text: str) -> Rule:
    """Tokenise a rule (``-A CHAIN …`` or what follows it). Never raises: a garbled rule yields what
    could be read."""
    tokens = tokenize(text)
    if tokens and tokens[0].startswith("[") and tokens[0].endswith("]"):
        del tokens[:1]  # counters
    if len(tokens) >= 2 and tokens[0] == "-A":
        del tokens[:2]
    matches: dict[str, str] = {}
    target_options: dict[str, str] = {}
    negated: set[str] = set()
    modules: list[str] = []
    target: str | None = None
    goto = False
    options = matches
    negate = False
    count = len(tokens)
    index = 0
    while index < count:
        token = tokens[index]
        index += 1
        if token == "!":
            negate = True
            continue
        if token in _TARGET_FLAGS:
            if index < count:
                target = tokens[index]
                index += 1
            goto = token == "-g"
            options = target_options
            negate = False
            continue
        if token == "-m" and options is matches:
            if index < count:
                modules.append(tokens[index])
                index += 1
            continue
        if _is_option(token):
            value = ""
            if index < count:
                following = tokens[index]
                if following[:1] == '"' or (not _is_option(following) and following != "!"):
                    value = unquote(following)
                    index += 1
            options[token] = value
            if negate:
                negated.add(token)
            negate = False
            continue
        negate = False  # a stray word: ignore it
    return Rule(matches, frozenset(negated), tuple(modules), target, target_options, goto)


def rule_target(text: str) -> str | None:
    """Only the jump target of a rule; cheaper than ``parse_rule`` for the many SVC→SEP jumps."""
    if '"' in text:
        text = _QUOTED.sub('""', text)  # a comment may contain "-j "; the target never is quoted
    at = text.rfind("-j ")
    if at < 0 or (at > 0 and text[at - 1] != " "):
        at = text.rfind("-g ")
        if at < 0 or (at > 0 and text[at - 1] != " "):
            return None
    rest = text[at + 3 :]
    space = rest.find(" ")
    return rest if space < 0 else rest[:space]


def split_host_port(value: str) -> tuple[str, int] | None:
    """``10.0.0.1:80`` or ``[fd00::1]:80`` (a DNAT destination); None for anything else."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    return (host, int(port)) if host else None


def dnat_destination(text: str) -> tuple[str, int] | None:
    """The ``--to-destination`` of a DNAT rule, or None."""
    if "-j DNAT " not in text:
        return None  # most lines of an endpoint chain are its masquerade rule
    if '"' in text:
        text = _QUOTED.sub('""', text)
    at = text.find(" -j DNAT ")
    if at < 0:
        return None
    start = text.find(" --to-destination ", at)
    if start < 0:
        return None
    start += 18
    end = text.find(" ", start)
    return split_host_port(text[start:] if end < 0 else text[start:end])
