"""Faults made of iptables rules: group partitions, one-way drops (Jepsen's grudge), packet loss.

Done the way Jepsen's nemeses do it: inside each namespace that should stop
hearing from others, its own filter table gets the chain
:data:`CHAIN`, jumped to first from ``INPUT``, holding one rule per address of
each peer it drops from::

    -A BRIDGENET-FAULTS -s 10.77.0.3 -m comment --comment bridgenet-fault:ID -j DROP

(IPv4 through ``iptables``, IPv6 through ``ip6tables``; the addresses read
from live state, ``ip -json addr``). Packets are dropped where they arrive
(``INPUT``), never where they leave: a DROP in ``OUTPUT`` makes ``sendto``
fail with EPERM, which a program sees as an error, not as loss. The packets
arriving in a namespace from its veth end pass its ``INPUT`` whether or not
br_netfilter is loaded in the host. Loss adds ``-m statistic --mode random
--probability P`` (iptables-extensions(8)), which every kernel with
iptables has, netem or not.

Every rule carries the comment ``bridgenet-fault:ID`` of its fault, so its
packet counter (``iptables-save -c``) says how much the fault dropped, and it
is removed by that tag, from live state, whatever else the chain holds. The
chain and its jump go when their last rule goes. Each namespace's rules are
put in place by one ``iptables-restore --noflush`` per family, all of a
fault's in one shell (:mod:`~bridgenet.testing.faults_shell`).

A source rewritten on the way: in the lesson's own network (``lesson_form``)
MASQUERADE also rewrites bridged traffic, so a container sees the others'
packets as coming from the bridge's address. For each peer, one more rule
matches that address together with the peer's MAC address (``-m mac
--mac-source``): the peer's frames, whatever NAT did to their source. The
host's own packets come in the bridge's frames and still pass. A peer
masqueraded by a router (another link) is not told apart from the router.
"""

from __future__ import annotations

import itertools
import os
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface

import attrs

from ..errors import ValidationError
from .faults_shell import FaultCommand

CHAIN = "BRIDGENET-FAULTS"
"""The chain of fault rules in each namespace's filter table, jumped to first from INPUT."""

TAG_PREFIX = "bridgenet-fault:"
"""Every fault rule's comment is this followed by the fault's id."""

FAMILIES = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}
"""Per IP version, the programs that read (``-c``: with counters) and change a filter table."""

_ids = itertools.count(1)


def new_id() -> str:
    """A fault id unique in this machine's run: ``PID-N`` (two test processes may share no sandbox,
    but the id also tells them apart in a kept sandbox)."""
    return f"{os.getpid()}-{next(_ids)}"


@attrs.frozen
class Fault:
    """One fault in effect, as a value: what made it, and what undoes it.

    Attributes:
        kind: ``"partition"``, ``"drop"``, ``"grudge"``, ``"loss"`` or ``"netem"``.
        id: unique per fault, e.g. ``"4711-3"``.
        tag: the comment its rules carry, ``"bridgenet-fault:" + id`` (for netem: the same text, no rule).
        commands: the :class:`FaultCommand` s that made it, in order.
        undo: the commands that undo its rules as made (:meth:`Faults.heal` re-reads live state and
            runs these, minus what vanished, plus removing the chain when nothing else is left in it).
        grudge: per namespace it changed, the namespaces it drops from: ``(("a", ("b", "c")), ...)``
            (for loss without peers, and netem, the peers are ``()``).
        description: one line, e.g. ``"partition [n1 n2] | [n3 n4 n5]"``.
        links: for netem, ``(netns, link, ifindex)`` of every link it put a qdisc on.
    """

    kind: str
    id: str
    tag: str
    commands: tuple[FaultCommand, ...] = attrs.field(converter=tuple)
    undo: tuple[FaultCommand, ...] = attrs.field(converter=tuple)
    grudge: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(converter=tuple)
    description: str
    links: tuple[tuple[str, str, int], ...] = attrs.field(default=(), converter=tuple)
    _count: Callable[[Fault], int] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def netns(self) -> tuple[str, ...]:
        """The namespaces whose rules or qdiscs it changed."""
        return tuple(ns for ns, _ in self.grudge)

    def dropped(self) -> int:
        """Packets its rules have dropped so far: the sum of their packet counters (``iptables-save -c``,
        ``ip6tables-save -c``; for netem the ``drops`` of its qdiscs, ``tc -s -json qdisc``).
        Never less than a count read before: once healed, or once its namespaces are gone (a network
        taken down), the most it was ever read to have dropped (netem: 0)."""
        if self._count is None:
            raise TypeError(f"fault {self.id} was not made by a Faults object: nothing to read counters with")
        return self._count(self)

    def __str__(self) -> str:
        return f"{self.description} ({self.tag})"


# --- arguments, checked before anything runs ------------------------------------------------


def check_name(obj: str, field: str, name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValidationError(obj, field, "a network namespace is named by a non-empty string (no '/')", name)
    return name


def _names(obj: str, field: str, names: object) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValidationError(obj, field, "a list of namespace names", names)
    out = tuple(check_name(obj, field, n) for n in names)
    if not out:
        raise ValidationError(obj, field, "at least one namespace", list(out))
    return out


def partition_grudge(groups: Sequence[object]) -> dict[str, tuple[str, ...]]:
    """``partition(G1, G2, ...)`` as a grudge: each node drops what comes from every node of the other groups.

    Raises:
        ValidationError: fewer than two groups, a group that is not a non-empty
            list of names, or a namespace in two groups (field ``groups``).
    """
    obj = "faults.partition"
    if len(groups) < 2:
        raise ValidationError(obj, "groups", "a partition between groups takes at least two groups "
                              "(partition('n1') alone isolates n1)", list(groups))
    seen: dict[str, int] = {}
    named: list[tuple[str, ...]] = []
    for i, g in enumerate(groups, 1):
        members = _names(obj, f"groups: group {i}", g)
        for n in members:
            if n in seen:
                raise ValidationError(obj, "groups", f"groups may not overlap: {n!r} is in group {seen[n]} "
                                      f"and in group {i}", [list(x) for x in groups])  # type: ignore[arg-type]
            seen[n] = i
        named.append(members)
    return {n: tuple(m for j, other in enumerate(named) if j != i for m in other)
            for i, g in enumerate(named) for n in g}


def check_grudge(grudge: object, obj: str = "faults.grudge") -> dict[str, tuple[str, ...]]:
    """``{node: [nodes it drops from]}``, checked.

    Raises:
        ValidationError: not a mapping of names to lists of names, a node
            holding a grudge against itself, or nothing to drop (field ``grudge``).
    """
    if not isinstance(grudge, Mapping):
        raise ValidationError(obj, "grudge", "a mapping {node: [nodes it drops packets from]}", grudge)
    out: dict[str, tuple[str, ...]] = {}
    for node, peers in grudge.items():
        check_name(obj, "grudge", node)
        if isinstance(peers, str) or not isinstance(peers, Iterable):
            raise ValidationError(obj, f"grudge[{node!r}]", "a list of namespace names", peers)
        names = tuple(dict.fromkeys(check_name(obj, f"grudge[{node!r}]", p) for p in peers))
        if node in names:
            raise ValidationError(obj, f"grudge[{node!r}]", "a node cannot drop packets from itself", list(names))
        if names:
            out[node] = names
    if not out:
        raise ValidationError(obj, "grudge", "at least one node with a peer to drop from", dict(grudge))
    return out


def probability(percent: object, obj: str = "faults.loss", field: str = "percent") -> str:
    """A percentage 0..100 as the ``--probability`` of the statistic match (0.0..1.0).

    Raises:
        ValidationError: not a number, or outside 0..100 (field ``percent``).
    """
    number = percent
    if isinstance(percent, str) and percent.endswith("%"):  # '30%', as netem(loss='30%') takes it
        try:
            number = float(percent[:-1])
        except ValueError:
            pass
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 100:
        raise ValidationError(obj, field, "a percentage of packets, a number from 0 to 100 (or a string "
                              "such as '30%')", percent)
    return f"{number / 100:.6g}"


# --- the rules -------------------------------------------------------------------------------------


@attrs.frozen
class Drop:
    """What one namespace drops: from ``peers`` (None: every packet not on ``lo``), each packet with
    ``probability`` (None: all of them)."""

    peers: tuple[str, ...] | None
    probability: str | None = None


def rule_specs(drop: Drop, addresses: Mapping[str, Sequence[IPv4Address | IPv6Address]], tag: str,
               version: int, *, macs: Mapping[str, Sequence[str]] | None = None,
               masquerade: Sequence[IPv4Address | IPv6Address] = ()) -> list[str]:
    """The ``-A BRIDGENET-FAULTS ...`` lines of one namespace's ``drop``, for IP ``version`` 4 or 6.

    One rule per address of each peer; and, for a peer on the same link as
    this namespace, one per sandbox-host address in ``masquerade`` (those in
    this namespace's own subnets) matching also the peer's MAC address
    (``-m mac --mac-source``, iptables-extensions(8)): a MASQUERADE that
    rewrites bridged traffic (the lesson's) makes the peer's packets arrive
    from the bridge's address, still in the peer's frames. The host's own
    packets come in the bridge's frames: the host still gets through.
    """
    stat = ["-m", "statistic", "--mode", "random", "--probability", drop.probability] if drop.probability else []
    tail = [*stat, "-m", "comment", "--comment", tag, "-j", "DROP"]
    if drop.peers is None:
        return [" ".join(["-A", CHAIN, "!", "-i", "lo", *tail])]
    out = [" ".join(["-A", CHAIN, "-s", str(a), *tail])
           for p in drop.peers for a in addresses.get(p, ()) if a.version == version]
    out += [" ".join(["-A", CHAIN, "-s", str(h), "-m", "mac", "--mac-source", mac, *tail])
            for p in drop.peers for mac in (macs or {}).get(p, ()) for h in masquerade if h.version == version]
    return out


def apply_script(specs: Sequence[str], saved: str) -> str:
    """The ``iptables-restore --noflush`` script adding ``specs``: the chain and its jump first when
    ``saved`` (this namespace's ``iptables-save -t filter``) does not have them yet.

    (With ``--noflush``, declaring an existing chain as ``:CHAIN - [0:0]`` would flush it, so the
    chain is made with ``-N`` and only when missing.)
    """
    rules = parse_saved(saved)
    lines = ["*filter"]
    if not rules.has_chain:
        lines.append(f"-N {CHAIN}")
    if not rules.jumps:
        lines.append(f"-I INPUT 1 -j {CHAIN}")
    return "\n".join([*lines, *specs, "COMMIT"]) + "\n"


@attrs.frozen
class SavedRule:
    """One rule of ``iptables-save -c``: its packet and byte counters, the ``-A ...`` line, its comment."""

    packets: int
    bytes: int
    spec: str
    chain: str
    comment: str | None


@attrs.frozen
class SavedFilter:
    """The parts of one namespace's filter table (``iptables-save [-c] -t filter``) that faults touch."""

    has_chain: bool
    jumps: tuple[str, ...]  # the "-A INPUT ... -j BRIDGENET-FAULTS" lines
    rules: tuple[SavedRule, ...]  # the rules of BRIDGENET-FAULTS

    def tagged(self, tags: Iterable[str]) -> list[SavedRule]:
        wanted = set(tags)
        return [r for r in self.rules if r.comment in wanted]


def parse_saved(text: str) -> SavedFilter:
    """Parse ``iptables-save [-c] -t filter`` output (``#`` lines skipped, KERNEL-NOTES; quoting as
    iptables-save prints it, e.g. ``--comment "bridgenet-fault:1-2"``)."""
    has_chain = False
    jumps: list[str] = []
    rules: list[SavedRule] = []
    table = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if table != "filter":
            continue
        if line.startswith(f":{CHAIN} "):
            has_chain = True
            continue
        packets = nbytes = 0
        if line.startswith("["):
            counts, _, line = line.partition("] ")
            p, _, b = counts[1:].partition(":")
            packets, nbytes = int(p), int(b)
        if not line.startswith("-A "):
            continue
        words = shlex.split(line)
        chain = words[1]
        if chain == "INPUT" and words[-2:] == ["-j", CHAIN]:
            jumps.append(line)
        elif chain == CHAIN:
            comment = words[words.index("--comment") + 1] if "--comment" in words[:-1] else None
            rules.append(SavedRule(packets, nbytes, line, chain, comment))
    return SavedFilter(has_chain, tuple(jumps), tuple(rules))


def delete_line(spec: str) -> str:
    """``-A CHAIN REST`` (as saved) as ``-D CHAIN REST``."""
    return "-D " + spec[3:]


def heal_script(saved: SavedFilter, tags: Iterable[str]) -> str | None:
    """The ``iptables-restore --noflush`` script removing the rules tagged with one of ``tags``, and the
    chain with its jump when nothing else is left in it; None when there is nothing to remove."""
    gone = saved.tagged(tags)
    lines = [delete_line(r.spec) for r in gone]
    if saved.has_chain and len(gone) == len(saved.rules):
        lines += [delete_line(j) for j in saved.jumps] + [f"-X {CHAIN}"]
    if not lines:
        return None
    return "\n".join(["*filter", *lines, "COMMIT"]) + "\n"


def addresses_of(addr_json: Sequence[Mapping]) -> list[IPv4Address | IPv6Address]:
    """Every address of ``ip -json addr`` output but host-scope ones (``127.0.0.1``, ``::1``)."""
    out: list[IPv4Address | IPv6Address] = []
    for link in addr_json:
        for a in link.get("addr_info", []):
            if a.get("scope") != "host" and a.get("local"):
                out.append(ip_address(a["local"]))
    return list(dict.fromkeys(out))


def macs_of(addr_json: Sequence[Mapping]) -> list[str]:
    """The MAC addresses of the Ethernet links in ``ip -json addr`` output (not ``lo``'s)."""
    return list(dict.fromkeys(link["address"] for link in addr_json
                              if link.get("link_type") == "ether" and link.get("address")))


def masquerade_sources(host_json: Sequence[Mapping], addr_json: Sequence[Mapping]) -> list[IPv4Address | IPv6Address]:
    """The sandbox host's global addresses inside a subnet of a namespace's own global addresses (both from
    ``ip -json addr``): what a MASQUERADE on the shared bridge rewrites a peer's source to."""
    nets = [ip_interface(f"{a['local']}/{a['prefixlen']}").network for link in addr_json
            for a in link.get("addr_info", []) if a.get("scope") == "global" and "prefixlen" in a]
    return [h for h in addresses_of(host_json) if not h.is_link_local and any(h in n for n in nets)]


def counted(saved_texts: Iterable[str], tag: str) -> int:
    """The packets dropped by the rules tagged ``tag`` in these ``iptables-save -c`` outputs."""
    return sum(r.packets for text in saved_texts for r in parse_saved(text).tagged([tag]))


def save_command(netns: str, version: int, *, counters: bool = False) -> FaultCommand:
    """``ip netns exec NETNS iptables-save [-c] -t filter`` (ip6tables-save for version 6)."""
    return FaultCommand(netns, (FAMILIES[version][0], *(("-c",) if counters else ()), "-t", "filter"))


def restore_command(netns: str, version: int, text: str) -> FaultCommand:
    """``ip netns exec NETNS iptables-restore --noflush`` with ``text`` on its stdin."""
    return FaultCommand(netns, (FAMILIES[version][1], "--noflush"), text)


def version_of(command: FaultCommand) -> int:
    """4 or 6: the IP version whose table an ``iptables-restore``/``ip6tables-restore`` command changes."""
    return 6 if command.argv[0].startswith("ip6") else 4
