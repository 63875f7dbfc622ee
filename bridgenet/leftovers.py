"""What ``clean`` removes without a state file: objects and rules tagged ``bridgenet:``, and our empty chains.

bridgenet tags only what it creates (``plan.make_plan``), so what is
tagged is its own: links whose alias is ``bridgenet:NAME`` (a veth inside a
namespace is deleted from there, which removes its host end at once),
namespaces whose ``lo`` carries that alias (``model.Namespace``; a namespace
that only holds a tagged veth is someone else's and stays), the tagged
rules of ``nat POSTROUTING``, ``filter FORWARD`` and bridgenet's own chains (``BRIDGENET-FORWARD``, ``BRIDGENET-ISOLATION``,
``firewall.py``) and then the chains themselves when nothing is left in
them (and no network is still recorded in ``/run/bridgenet``):
``iptables -D FORWARD -j BRIDGENET-FORWARD`` (each time it is there), then
``iptables -X`` (a chain still jumped to cannot be deleted: "Device or
resource busy", measured here). Name files (``/etc/netns/NS/hosts`` and ``resolv.conf``)
that start with ``# bridgenet:`` go, and their directory when nothing else is in it
(``names.tagged_file_commands``; ``/etc/netns`` itself stays). An untagged rule (the lesson's, made with
``--accept-forward``, whose state file was lost) keeps its chain. All of it in ip6tables too:
the tagged rules of the same chains, and the empty ``BRIDGENET-FORWARD``,
``BRIDGENET-ISOLATION`` and nat ``BRIDGENET-DNAT`` (with its jumps from
PREROUTING and OUTPUT) of the IPv6 tables; ``BRIDGENET-INPUT`` is iptables' only.
"""

from __future__ import annotations

from .commands import ChainAbsent, Command, LinkAbsent, NetnsAbsent, RuleAbsent, ip, iptables
from .firewall import FORWARD_CHAIN, ISOLATION_CHAIN
from .names import tagged_file_commands
from .ports import DNAT_CHAIN, INPUT_CHAIN
from .runners import Runner
from .state import LiveState, read, read_netns

TAG_PREFIX = "bridgenet:"

TAGGED_CHAINS = (("nat", "POSTROUTING"), ("filter", "FORWARD"), ("filter", FORWARD_CHAIN),
                 ("filter", ISOLATION_CHAIN), ("nat", DNAT_CHAIN), ("filter", INPUT_CHAIN))
"""Where tagged rules are looked for, in the order they are removed."""

_JUMPED_FROM = (("nat", DNAT_CHAIN, ("PREROUTING", "OUTPUT"), ("-m", "addrtype", "--dst-type", "LOCAL"), (4, 6)),
                ("filter", INPUT_CHAIN, ("INPUT",), (), (4,)))
"""The published ports' chains (``ports.py``): table, chain, the built-in chains jumping to it, the jump's match,
the families that have it (``BRIDGENET-DNAT`` is in ip6tables too; ``BRIDGENET-INPUT`` is iptables' only)."""


def _tagged(rule: tuple[str, ...]) -> bool:
    return "--comment" in rule and rule.index("--comment") + 1 < len(rule) and \
        rule[rule.index("--comment") + 1].startswith(TAG_PREFIX)


def read_leftovers(runner: Runner) -> LiveState:
    """Live state with every namespace and the chains of :data:`TAGGED_CHAINS`, iptables' and ip6tables'
    (one process)."""
    names, stale = read_netns(runner)
    where = [(t, c, None) for t, c in TAGGED_CHAINS]
    jumps = [(t, b, None) for t, _, builtins, _, _ in _JUMPED_FROM for b in builtins]
    jumps6 = [(t, b, None) for t, _, builtins, _, families in _JUMPED_FROM if 6 in families for b in builtins]
    return read(runner, netns=sorted(names - stale), rules=[*where, *jumps], rules6=[*where, *jumps6], etc=True)


def tagged_commands(state: LiveState) -> list[Command]:
    """The commands that remove tagged links, their namespaces and tagged rules found in ``state``."""
    cmds: list[Command] = []
    for ns in sorted(state.namespaces):
        links = state.ns(ns).links
        for link in links.values():
            if (link.alias or "").startswith(TAG_PREFIX) and link.kind == "veth":
                cmds.append(ip("link", "del", link.name, netns=ns, step="clean", effect=LinkAbsent(link.name, ns)))
        lo = links.get("lo")
        if lo is not None and (lo.alias or "").startswith(TAG_PREFIX):  # made by bridgenet (model.Namespace)
            cmds.append(ip("netns", "del", ns, step="clean", effect=NetnsAbsent(ns)))
    cmds += tagged_file_commands(state.files, state.dirs, TAG_PREFIX)
    tagged = [link for link in state.host.links.values() if (link.alias or "").startswith(TAG_PREFIX)]
    for link in sorted(tagged, key=lambda lk: lk.kind == "bridge"):
        cmds.append(ip("link", "del", link.name, step="clean", effect=LinkAbsent(link.name)))
    for family in (4, 6):
        for table, chain in TAGGED_CHAINS:
            for rule in state.rules_of(family).get((table, chain, None), []):
                if _tagged(rule):
                    cmds.append(iptables("-t", table, "-D", chain, *rule, step="clean", family=family,
                                         effect=RuleAbsent(table, chain, rule, None, family)))
    return cmds


def chain_commands(state: LiveState) -> list[Command]:
    """The commands that remove bridgenet's chains left empty once the tagged rules are gone.

    ``BRIDGENET-ISOLATION`` goes when no untagged rule is left in it and none
    in ``BRIDGENET-FORWARD`` jumps to it; ``BRIDGENET-FORWARD`` when no
    untagged rule is left in it: first its jumps from FORWARD, then ``-X``.
    """
    return [*_chain_commands(state, 4), *_chain_commands(state, 6)]


def _chain_commands(state: LiveState, f: int) -> list[Command]:
    """:func:`chain_commands` for one family (4: iptables, 6: ip6tables)."""
    rules = state.rules_of(f)

    def left(chain: str) -> list[tuple[str, ...]]:
        return [r for r in rules.get(("filter", chain, None), []) if not _tagged(r)]

    cmds: list[Command] = []
    iso_left = left(ISOLATION_CHAIN)
    fwd_left = left(FORWARD_CHAIN)
    if state.chain_exists("filter", ISOLATION_CHAIN, None, f) and not iso_left and not any(
            r[-2:] == ("-j", ISOLATION_CHAIN) for r in fwd_left):
        cmds.append(iptables("-X", ISOLATION_CHAIN, step="clean", family=f,
                             effect=ChainAbsent("filter", ISOLATION_CHAIN, None, f)))
    if state.chain_exists("filter", FORWARD_CHAIN, None, f) and not fwd_left:
        jump = ("-j", FORWARD_CHAIN)
        for _ in range(rules.get(("filter", "FORWARD", None), []).count(jump)):
            cmds.append(iptables("-D", "FORWARD", *jump, step="clean", family=f,
                                 effect=RuleAbsent("filter", "FORWARD", jump, None, f)))
        cmds.append(iptables("-X", FORWARD_CHAIN, step="clean", family=f,
                             effect=ChainAbsent("filter", FORWARD_CHAIN, None, f)))
    for table, chain, builtins, match, families in _JUMPED_FROM:  # the published ports' chains (ports.py)
        if f not in families or not state.chain_exists(table, chain, None, f) or [
                r for r in rules.get((table, chain, None), []) if not _tagged(r)]:
            continue
        jump = (*match, "-j", chain)
        for builtin in builtins:
            for _ in range(rules.get((table, builtin, None), []).count(jump)):
                cmds.append(iptables("-t", table, "-D", builtin, *jump, step="clean", family=f,
                                     effect=RuleAbsent(table, builtin, jump, None, f)))
        cmds.append(iptables("-t", table, "-X", chain, step="clean", family=f,
                             effect=ChainAbsent(table, chain, None, f)))
    return cmds


def leftover_commands(runner: Runner) -> list[Command]:
    """Everything :func:`clean_tagged` would run now, in order (reads only)."""
    from .ledger import Ledger
    from .state_store import store_for

    state = read_leftovers(runner)
    cmds = tagged_commands(state)
    if not Ledger.names(store_for(runner)):  # a recorded network may still use the chains
        cmds += chain_commands(state)
    return cmds


def clean_tagged(runner: Runner, *, force: bool) -> list[Command]:
    """Remove the leftovers (see the module docstring); returns the commands run.

    Raises:
        NamespaceBusyError: a namespace to delete still has processes (without ``force``).
        CommandError: a command failed.
    """
    from .apply import _undo
    from .ledger import Entry

    cmds = leftover_commands(runner)
    if not cmds:
        return []
    ran, _, _ = _undo(runner, [Entry("clean", None, False, "intent", cmds)], force=force, network="clean",
                      strict=True)
    return ran
