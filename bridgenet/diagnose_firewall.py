"""Where iptables drops a packet: a small evaluator of ``iptables -S`` and the counters of ``-nvxL``.

:func:`verdict` follows one packet through a chain of the filter table as
iptables(8) describes it (rules in order, user chains jumped to and
returned from, the policy at the end of a built-in chain), for the matches
bridgenet's networks and Docker use: ``-s``, ``-d``, ``-i``, ``-o`` (with
``+``), ``-p``, ``--dport``/``--dports``, ``--ctstate``/``--state``,
``--comment``, each with ``!``. A rule with any other match cannot be
decided here: the verdict is then "unknown" and the counters decide
(:func:`blocking_hits`: the DROP/REJECT rules and DROP policies whose
packet count rose while the probe ran).
"""

from __future__ import annotations

import re
import shlex
from ipaddress import IPv4Address, ip_network

import attrs

BUILTIN = ("INPUT", "FORWARD", "OUTPUT")
_BLOCK = ("DROP", "REJECT")
_TERMINAL = ("ACCEPT", "DROP", "REJECT", "RETURN")


@attrs.frozen
class Packet:
    """The packet to follow: addresses, interfaces (None: not matched on), protocol, port and conntrack state."""

    src: IPv4Address
    dst: IPv4Address
    iif: str | None
    oif: str | None
    proto: str = "icmp"
    dport: int | None = None
    state: str = "NEW"


@attrs.frozen
class Verdict:
    """``action``: ACCEPT, DROP, REJECT or unknown; ``rule``: the ``-A ...`` line (None: the chain's policy)."""

    action: str
    chain: str
    rule: str | None = None


@attrs.frozen
class Table:
    """A filter table from ``iptables -S``: ``rules[chain]`` = [(line, words after -A CHAIN)], ``policies``."""

    rules: dict[str, list[tuple[str, list[str]]]]
    policies: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Table:
        rules: dict[str, list[tuple[str, list[str]]]] = {}
        policies: dict[str, str] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            try:
                parts = shlex.split(line)
            except ValueError:
                continue
            if parts[:1] == ["-P"] and len(parts) == 3:
                policies[parts[1]] = parts[2]
                rules.setdefault(parts[1], [])
            elif parts[:1] == ["-N"] and len(parts) == 2:
                rules.setdefault(parts[1], [])
            elif parts[:1] == ["-A"] and len(parts) >= 2:
                rules.setdefault(parts[1], []).append((line, parts[2:]))
        return cls(rules, policies)


def _iface(pattern: str, name: str | None) -> bool | None:
    if name is None:
        return None
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _ports(spec: str, port: int | None) -> bool | None:
    if port is None:
        return False
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if lo.isdigit() and int(lo) <= port <= int(hi or lo):
            return True
    return False


def matches(words: list[str], pkt: Packet) -> bool | None:
    """Whether rule ``words`` (after ``-A CHAIN``, up to ``-j``) match ``pkt``; None when it cannot be told."""
    i, negate = 0, False
    while i < len(words):
        w = words[i]
        if w == "!":
            negate = True
            i += 1
            continue
        if w in ("-j", "-g"):
            return True
        if w == "-m":
            i += 2
            continue
        if i + 1 >= len(words):
            return None
        arg = words[i + 1]
        if w == "-s":
            got: bool | None = pkt.src in ip_network(arg, strict=False)
        elif w == "-d":
            got = pkt.dst in ip_network(arg, strict=False)
        elif w == "-i":
            got = _iface(arg, pkt.iif)
        elif w == "-o":
            got = _iface(arg, pkt.oif)
        elif w == "-p":
            got = arg == "all" or arg == pkt.proto
        elif w in ("--dport", "--dports"):
            got = _ports(arg, pkt.dport)
        elif w in ("--ctstate", "--state"):
            got = pkt.state in arg.split(",")
        elif w == "--comment":
            got = not negate  # no match of its own
        else:
            return None
        if got is None:
            return None
        if got == negate:
            return False
        negate = False
        i += 2
    return True


def _target(words: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in words and words.index(flag) + 1 < len(words):
            return words[words.index(flag) + 1]
    return None


def verdict(table: Table, chain: str, pkt: Packet, _depth: int = 0) -> Verdict:
    """Follow ``pkt`` through ``chain``: the rule (or policy) that decides it, or an unknown verdict."""
    for line, words in table.rules.get(chain, []):
        target = _target(words)
        if target is None:
            continue
        m = matches(words, pkt)
        if m is False:
            continue
        user = target in table.rules and target not in BUILTIN
        if m is None:
            if target in _TERMINAL or user:
                return Verdict("unknown", chain, line)
            continue
        if target in ("ACCEPT", "DROP", "REJECT"):
            return Verdict(target, chain, line)
        if target == "RETURN":
            return Verdict("RETURN", chain, line)
        if user and _depth < 16:
            sub = verdict(table, target, pkt, _depth + 1)
            if sub.action != "RETURN":
                return sub
    if chain in table.policies:
        return Verdict(table.policies[chain], chain)
    return Verdict("RETURN", chain)


_CHAIN = re.compile(r"^Chain (\S+) \((?:policy (\S+) (\d+) packets|.*)")
_ROW = re.compile(r"^\s*(\d+)\s+\d+\s+(\S+)")


def counters(text: str) -> dict[tuple[str, int], tuple[int, str]]:
    """``{(chain, n): (packets, target)}`` from ``iptables -nvxL``; ``n`` = -1 for the policy, else the rule's index."""
    out: dict[tuple[str, int], tuple[int, str]] = {}
    chain, n = "", 0
    for line in text.splitlines():
        m = _CHAIN.match(line)
        if m:
            chain, n = m.group(1), 0
            if m.group(2):
                out[(chain, -1)] = (int(m.group(3)), m.group(2))
            continue
        m = _ROW.match(line)
        if m and chain:
            out[(chain, n)] = (int(m.group(1)), m.group(2))
            n += 1
    return out


def blocking_hits(before: str, after: str, rules_text: str) -> list[Verdict]:
    """The DROP/REJECT rules and DROP policies whose packet counters rose between two ``-nvxL`` reads.

    ``rules_text``: ``iptables -S`` of the same table, to name each rule as it prints it.
    """
    table = Table.parse(rules_text)
    old, new = counters(before), counters(after)
    hits = []
    for (chain, n), (packets, target) in new.items():
        if target not in _BLOCK or packets <= old.get((chain, n), (0, ""))[0]:
            continue
        rules = table.rules.get(chain, [])
        line = None if n < 0 else (rules[n][0] if n < len(rules) else f"-A {chain} ... -j {target}")
        hits.append(Verdict(target, chain, line))
    return hits


def delete_command(line: str, *, program: str = "iptables", netns: str | None = None) -> str:
    """The command that removes rule ``line`` (``-A CHAIN ...`` as ``-S`` prints it): ``iptables -D CHAIN ...``."""
    prefix = f"ip netns exec {netns} " if netns else ""
    return f"{prefix}{program} -D {line[3:] if line.startswith('-A ') else line}"
