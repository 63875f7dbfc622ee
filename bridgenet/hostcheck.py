"""What on a host would break a network silently: firewall rules, STP, two iptables back ends.

None of these is a conflict (nothing differs from what the network asks
for), so ``plan`` still plans and ``up`` still runs; :func:`warnings` says
what a person would otherwise only find out when pings fail. ``plan``
prints the warnings, ``up`` logs them, both before any change.

Checked (facts measured here, KERNEL-NOTES):

* the filter table's FORWARD policy is DROP (Docker sets it) and the
  network has no :class:`bridgenet.model.ForwardRule`: routed traffic is
  dropped, and with br_netfilter (``net.bridge.bridge-nf-call-iptables=1``)
  so is traffic between two containers on one bridge;
* a ``-j DROP`` or ``-j REJECT`` rule in FORWARD that the network's traffic
  reaches before its own rules: anywhere in FORWARD for a network without
  ForwardRule, before the jump to ``BRIDGENET-FORWARD`` for one with it. To
  stay simple and on the safe side, every such rule counts except one that
  names with ``-i``/``-o`` (not negated) an interface other than the
  network's bridges, and one that matches only ``--ctstate INVALID``;
* STP on a bridge that exists already (``ip -d -json link show``,
  ``linkinfo.info_data.stp_state``): each port plugged into it waits
  listening + learning, 2 × ``forward_delay`` (15 s each by default), before
  it forwards a frame;
* iptables-nft printing ``# Warning: iptables-legacy tables present`` (on
  stderr, measured with iptables 1.8.9): rules are split between two
  places, and a legacy DROP applies unseen by ``iptables``. iptables-nft
  finds legacy tables in ``/proc/net/ip_tables_names``, which a user
  namespace cannot read (owned by the real root, mode 0440; measured in a
  rootless sandbox): there neither it nor bridgenet can tell. Reading the
  legacy tables with ``iptables-legacy -S`` would create them, so it is
  not done.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .firewall import FORWARD_CHAIN
from .model import ForwardRule
from .network import Network
from .runners import Runner
from .state import Link, _json_docs, gather, parse_links

LEGACY_MARK = "iptables-legacy tables present"
"""What iptables-nft prints (as a ``# Warning:`` line) when legacy tables exist in the namespace."""

_BLOCKING = ("DROP", "REJECT")

READS = [
    (("sh", "-c", "iptables -w -t filter -S 2>&1"), None),
    (("ip", "-d", "-json", "link", "show"), None),
    (("sysctl", "-n", "net.bridge.bridge-nf-call-iptables"), None),
]
"""What the checks read (``state.Read`` values): planning reads them with the rest, in one shell."""

READS6 = [(("sh", "-c", "ip6tables -w -t filter -S 2>&1"), None)]
"""Read after :data:`READS` for a network with IPv6 only (``Network.has_ipv6``): ip6tables-nft prints its
own legacy warning ("ip6tables-legacy tables present"), the same split for the IPv6 tables."""

LEGACY_MARK6 = "ip6tables-legacy tables present"


def reads_for(network: Network) -> list:
    """:data:`READS`, and :data:`READS6` when ``network`` has IPv6."""
    return READS + READS6 if network.has_ipv6 else READS


def warnings(network: Network, runner: Runner, results: Sequence[tuple[int, str]] | None = None) -> list[str]:
    """The warnings for bringing ``network`` up on the host ``runner`` acts on, each one sentence or two.

    ``results``: what :data:`READS` gave, read already (``LiveState.extra``);
    default: read them now, in one process through ``runner`` (see
    :func:`bridgenet.state.gather`). Where nothing can be read (a dry-run),
    no warnings.
    """
    reads = reads_for(network)
    if results is None or len(results) != len(reads):
        results = gather(runner, reads)
    (code, filter_text), (lcode, links_text), (_, nf_call), *six = results
    out: list[str] = []
    for _, text6 in six:
        line6 = next((ln.strip() for ln in text6.splitlines() if LEGACY_MARK6 in ln), None)
        if line6 is not None:
            out.append(legacy_warning(line6, "ip6tables"))
    bridges = [b.name for b in network.bridges]
    lines = filter_text.splitlines() if code == 0 else []
    out += forward_warnings(network, [ln for ln in lines if not ln.startswith("#")], nf_call.strip() == "1")
    if any(LEGACY_MARK in ln for ln in filter_text.splitlines()):
        out.append(legacy_warning(next(ln for ln in filter_text.splitlines() if LEGACY_MARK in ln).strip()))
    links = {}
    if lcode == 0 and links_text.strip():
        try:
            docs = _json_docs(links_text)
            links = parse_links(docs[0]) if docs else {}
        except ValueError:
            links = {}
    for name in bridges:
        link = links.get(name)
        if link is not None and link.kind == "bridge" and link.stp_state:
            out.append(stp_warning(link))
    return out


def _names(rule: list[str], flag: str) -> list[tuple[bool, str]]:
    """``[(negated, interface), ...]`` for each ``-i``/``-o`` (``flag``) of a rule."""
    out = []
    for i, word in enumerate(rule):
        if word == flag and i + 1 < len(rule):
            out.append((i > 0 and rule[i - 1] == "!", rule[i + 1]))
    return out


def _matches(pattern: str, name: str) -> bool:
    """iptables' interface match: ``br+`` matches every name starting with ``br`` (iptables(8) ``-i``)."""
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def blocks(rule: list[str], bridges: list[str]) -> bool:
    """Whether a FORWARD rule (``iptables -S`` words after ``-A FORWARD``) may drop the bridges' traffic."""
    if "-j" not in rule or rule[rule.index("-j") + 1] not in _BLOCKING:
        return False
    if "--ctstate" in rule and rule[rule.index("--ctstate") + 1] == "INVALID":
        return False
    if "--state" in rule and rule[rule.index("--state") + 1] == "INVALID":
        return False
    for flag in ("-i", "-o"):
        for negated, name in _names(rule, flag):
            if not negated and not any(_matches(name, b) for b in bridges):
                return False  # only traffic of another interface
    return True


def forward_warnings(network: Network, lines: list[str], br_netfilter: bool) -> list[str]:
    """Warnings about the filter table (``lines``: ``iptables -t filter -S`` without ``#`` lines)."""
    bridges = [b.name for b in network.bridges]
    if not bridges:
        return []
    shown = ", ".join(bridges)
    has_rules = bool(network.of_type(ForwardRule))
    forward: list[tuple[str, list[str]]] = []
    policy = None
    for line in lines:
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        if parts[:2] == ["-P", "FORWARD"] and len(parts) == 3:
            policy = parts[2]
        elif parts[:2] == ["-A", "FORWARD"]:
            forward.append((line, parts[2:]))
    bridged = (
        f"here br_netfilter is on (net.bridge.bridge-nf-call-iptables=1), so traffic between the "
        f"containers on {shown} is dropped too" if br_netfilter else
        f"where br_netfilter is on (net.bridge.bridge-nf-call-iptables=1), traffic between the containers "
        f"on {shown} is dropped too"
    )
    fix = ("Run `bridgenet up --accept-forward` (accept_forward = true in a network file, accept_forward=True "
           "in bridge_network) to accept it in bridgenet's own chain " + FORWARD_CHAIN + ", jumped to from the "
           "top of FORWARD.")
    out = []
    if has_rules:
        jump = next((i for i, (_, r) in enumerate(forward) if r == ["-j", FORWARD_CHAIN]), None)
        before = forward[:jump] if jump is not None else []  # a missing jump is inserted at the top
        for line, rule in before:
            if blocks(rule, bridges):
                out.append(
                    f"the iptables FORWARD chain holds `{line}` before bridgenet's jump to {FORWARD_CHAIN}: "
                    f"traffic routed to and from {shown} that it matches is dropped before the network's "
                    f"ACCEPT rules ({bridged}). Put the jump back at the top: `iptables -D FORWARD -j "
                    f"{FORWARD_CHAIN}; iptables -I FORWARD -j {FORWARD_CHAIN}`, or remove that rule."
                )
        return out
    if policy == "DROP":
        out.append(
            f"the iptables FORWARD policy here is DROP (Docker sets it): traffic routed to and from {shown} "
            f"will be dropped, NAT to the upstream included, and {bridged}. {fix}"
        )
    for line, rule in forward:
        if blocks(rule, bridges):
            out.append(
                f"the iptables FORWARD chain holds `{line}`: traffic routed to and from {shown} that reaches it "
                f"is dropped, NAT to the upstream included, and {bridged}. {fix}"
            )
    return out


def legacy_warning(line: str, tool: str = "iptables") -> str:
    """The warning for ``tool``-legacy tables next to ``tool``-nft ones (``line``: what ``tool`` printed;
    ``tool``: ``iptables`` or ``ip6tables``)."""
    return (
        f"both {tool}-legacy and {tool}-nft tables are in use on this host (`{tool}` says "
        f"\"{line.lstrip('# ')}\"): rules are split between two places. bridgenet reads and writes "
        f"the nf_tables ones only; a DROP in the legacy tables (`{tool}-legacy -S`) still applies to "
        "the network's traffic, unseen here."
    )


def stp_warning(link: Link) -> str:
    """The warning for a reused bridge with STP on (``forward_delay`` in centiseconds)."""
    delay = (link.forward_delay if link.forward_delay is not None else 1500) / 100
    return (
        f"the bridge {link.name} exists already and has STP on (stp_state {link.stp_state}, forward_delay "
        f"{delay:g} s): each port bridgenet plugs into it waits listening + learning = 2 × forward_delay = "
        f"{2 * delay:g} s before it forwards, so the containers have no connectivity for that long after "
        f"`up`. If {link.name} does not need STP: `ip link set dev {link.name} type bridge stp_state 0`."
    )
