"""Effects against live state: is a command's effect already true, is its target gone, what undoes it.

Every command carries an effect (``commands.py``); planning compares it with
:class:`bridgenet.state.LiveState`: :func:`satisfied` (in place),
:func:`gone` (an undo step with nothing left to act on) and :func:`inverse`
(the undo of a command on an object bridgenet did not create).
"""

from ipaddress import IPv6Address, IPv6Interface

from .commands import (
    AddrAbsent,
    AddrPresent,
    ChainAbsent,
    ChainPresent,
    Command,
    DirAbsent,
    DirPresent,
    FileAbsent,
    FilePresent,
    Effect,
    FdbAbsent,
    FdbPresent,
    LinkAbsent,
    LinkAlias,
    LinkDown,
    LinkHairpin,
    LinkInNetns,
    LinkMaster,
    LinkMtu,
    LinkPresent,
    LinkUp,
    NetnsAbsent,
    NetnsPresent,
    RouteAbsent,
    RoutePresent,
    RuleAbsent,
    RulePresent,
    SysctlValue,
    ip,
    iptables,
    sysctl_w,
)
from .state import Link, LiveState, NsState


# --- effects against state ---------------------------------------------------------


def satisfied(effect: Effect | None, state: LiveState) -> bool:
    """Whether ``effect`` is already true in ``state`` (None: never, the command always runs)."""
    if effect is None:
        return False
    e = effect
    if isinstance(e, NetnsPresent):
        return state.netns_exists(e.name)
    if isinstance(e, NetnsAbsent):
        return e.name not in state.netns_names
    if isinstance(e, LinkPresent):
        return e.name in state.ns(e.netns).links if _ns_ok(state, e.netns) else False
    if isinstance(e, LinkAbsent):
        return not _ns_ok(state, e.netns) or e.name not in state.ns(e.netns).links
    if isinstance(e, LinkInNetns):
        return state.netns_exists(e.netns) and e.name in state.ns(e.netns).links
    link = None
    netns = getattr(e, "netns", None)
    name = getattr(e, "name", None) or getattr(e, "dev", None)
    if name is not None and _ns_ok(state, netns):
        link = state.ns(netns).links.get(name)
    if isinstance(e, LinkUp):
        return link is not None and link.up
    if isinstance(e, LinkDown):
        return link is None or not link.up
    if isinstance(e, LinkMaster):
        if e.master is None:
            return link is None or link.master is None
        return link is not None and link.master == e.master
    if isinstance(e, LinkAlias):
        return link is not None and (link.alias or None) == (e.alias or None)
    if isinstance(e, LinkMtu):
        return link is not None and link.mtu == e.mtu
    if isinstance(e, LinkHairpin):
        return link is not None and bool(link.hairpin) == e.on
    if isinstance(e, AddrPresent):
        return link is not None and e.address in _addresses(link, e.address)
    if isinstance(e, AddrAbsent):
        return link is None or e.address not in _addresses(link, e.address)
    if isinstance(e, (RoutePresent, RouteAbsent)):
        present = _ns_ok(state, e.netns) and any(
            r.dst == e.dst and r.gateway == str(e.via) for r in _routes(state.ns(e.netns), e.via)
        )
        return present if isinstance(e, RoutePresent) else not present
    if isinstance(e, SysctlValue):
        return state.sysctls.get((e.key, e.netns)) == e.value
    if isinstance(e, (RulePresent, RuleAbsent)):
        present = e.rule in state.rules_of(e.family).get((e.table, e.chain, e.netns), [])
        return present if isinstance(e, RulePresent) else not present
    if isinstance(e, (ChainPresent, ChainAbsent)):
        if not _ns_ok(state, e.netns):
            return isinstance(e, ChainAbsent)
        exists = state.chain_exists(e.table, e.chain, e.netns, e.family)
        if exists is None:
            return False  # not read: run the command (it fails clearly if it has nothing to do)
        return exists if isinstance(e, ChainPresent) else not exists
    if isinstance(e, FilePresent):
        return state.files.get(e.path) == e.content
    if isinstance(e, FileAbsent):
        return e.path not in state.files
    if isinstance(e, (DirPresent, DirAbsent)):
        return (e.path in state.dirs) == isinstance(e, DirPresent)
    if isinstance(e, (FdbPresent, FdbAbsent)):
        entries = state.fdb.get((e.dev, e.netns))
        if entries is None:
            return False  # not read: run the command
        return ((e.lladdr, e.dst) in entries) == isinstance(e, FdbPresent)
    return False  # pragma: no cover


def gone(effect: Effect | None, state: LiveState) -> str | None:
    """For an undo command: what no longer exists so that it has nothing left to undo, else None.

    A reused bridge a user deleted, a namespace another tool removed: the
    undo step counts as done (and is reported), and ``down``/``clean`` go on.
    """
    netns = getattr(effect, "netns", None)
    if netns is not None and not state.netns_exists(netns):
        return f"netns {netns} is gone"
    if isinstance(effect, SysctlValue) and effect.key.startswith("net.ipv4.conf."):
        name = effect.key.split(".")[3]  # a link's own setting (route_localnet of a bridge): gone with it
        if name in ("all", "default"):
            return None
    elif isinstance(effect, (LinkAlias, LinkDown, LinkHairpin, LinkMaster, LinkMtu, LinkUp)):
        name = effect.name
    elif isinstance(effect, (AddrAbsent, AddrPresent, FdbAbsent, FdbPresent)):
        name = effect.dev
    else:
        return None
    if name not in state.ns(netns).links:
        return f"link {name} is gone" + (f" from netns {netns}" if netns else "")
    return None


def _addresses(link: Link, address: object) -> tuple:
    """The link's addresses of the family of ``address`` (IPv6: the global ones, :attr:`Link.addresses6`)."""
    return link.addresses6 if type(address) is IPv6Interface else link.addresses


def _routes(ns: NsState, via: object) -> tuple:
    """The namespace's routes of the family of ``via`` (IPv6: ``routes6``, read for networks with IPv6)."""
    return ns.routes6 if type(via) is IPv6Address else ns.routes


def _ns_ok(state: LiveState, netns: str | None) -> bool:
    return netns is None or state.netns_exists(netns)


def inverse(command: Command, state: LiveState) -> list[Command]:
    """The commands that undo ``command`` on an object bridgenet did not create.

    ``state`` is the state before ``command`` runs (for values to restore).
    """
    e, k = command.effect, command.step
    if isinstance(e, LinkPresent):
        return [ip("link", "del", e.name, netns=e.netns, step=k, effect=LinkAbsent(e.name, e.netns))]
    if isinstance(e, NetnsPresent):
        return [ip("netns", "del", e.name, step=k, effect=NetnsAbsent(e.name))]
    if isinstance(e, LinkUp):
        return [ip("link", "set", "dev", e.name, "down", netns=e.netns, step=k, effect=LinkDown(e.name, e.netns))]
    if isinstance(e, LinkMaster):
        return [ip("link", "set", "dev", e.name, "nomaster", netns=e.netns, step=k,
                   effect=LinkMaster(e.name, None, e.netns))]
    if isinstance(e, LinkAlias):
        link = state.ns(e.netns).links.get(e.name)
        old = (link.alias if link else None) or ""
        return [ip("link", "set", "dev", e.name, "alias", old, netns=e.netns, step=k,
                   effect=LinkAlias(e.name, old or None, e.netns))]
    if isinstance(e, LinkMtu):
        link = state.ns(e.netns).links.get(e.name)
        if link is None or not link.mtu:
            return []
        return [ip("link", "set", "dev", e.name, "mtu", str(link.mtu), netns=e.netns, step=k,
                   effect=LinkMtu(e.name, link.mtu, e.netns))]
    if isinstance(e, LinkHairpin):
        link = state.ns(e.netns).links.get(e.name)
        from .ports import hairpin_command

        return [hairpin_command(e.name, bool(link is not None and link.hairpin), step=k)]
    if isinstance(e, AddrPresent):
        return [ip("addr", "del", str(e.address), "dev", e.dev, netns=e.netns, step=k,
                   effect=AddrAbsent(e.dev, e.address, e.netns))]
    if isinstance(e, RoutePresent):
        return [ip("route", "del", e.dst, "via", str(e.via), netns=e.netns, step=k,
                   effect=RouteAbsent(e.dst, e.via, e.netns))]
    if isinstance(e, SysctlValue):
        old = state.sysctls.get((e.key, e.netns))
        if old is None and e.key.endswith(".route_localnet"):
            old = "0"  # the link does not exist yet: it starts with the kernel default (ip-sysctl.rst)
        if old is None:
            return []
        return [sysctl_w(e.key, old, netns=e.netns, step=k)]
    if isinstance(e, RulePresent):
        return [iptables("-t", e.table, "-D", e.chain, *e.rule, netns=e.netns, step=k, family=e.family,
                         effect=RuleAbsent(e.table, e.chain, e.rule, e.netns, e.family))]
    if isinstance(e, ChainPresent):
        table = () if e.table == "filter" else ("-t", e.table)
        return [iptables(*table, "-X", e.chain, netns=e.netns, step=k, family=e.family,
                         effect=ChainAbsent(e.table, e.chain, e.netns, e.family))]
    if isinstance(e, DirPresent):
        from .names import rmdir

        return [rmdir(e.path, k, e.owner)]
    if isinstance(e, FilePresent):
        from .names import remove, write

        old = state.files.get(e.path)
        return [remove(e.path, k, e.owner) if old is None else write(e.path, old, k, e.owner)]
    return []  # LinkInNetns: undone by deleting the veth
