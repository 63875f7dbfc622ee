"""Plan: compare a network with live state and decide what to run, and how to undo it.

For every command of every step, its effect (``commands.py``) is checked
against :class:`bridgenet.state.LiveState`: already true (in place), to run,
or a conflict (something exists but differs), which raises
:class:`bridgenet.errors.ConflictError` before any change. For what will
run, the plan also works out the undo: deleting the object when the step
creates it, else the inverse of each command (``set down`` for ``set up``,
``addr del`` for ``addr add``, the previous value for a sysctl, ``-D`` for
``-A``).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network

import attrs

from .commands import (
    AddrAbsent,
    AddrPresent,
    ChainAbsent,
    ChainPresent,
    Command,
    Effect,
    LinkAbsent,
    LinkAlias,
    LinkDown,
    LinkInNetns,
    LinkMaster,
    LinkPresent,
    LinkUp,
    NetnsAbsent,
    NetnsPresent,
    RouteAbsent,
    RoutePresent,
    RuleAbsent,
    RulePresent,
    Step,
    SysctlValue,
    ip,
    iptables,
    sysctl_w,
)
from .errors import ConflictError
from .ledger import Entry, Ledger
from .firewall import FORWARD_CHAIN, ISOLATION_CHAIN, FilterChain, Isolation
from .model import Address, ForwardRule, NatRule, Route, VethPair
from .network import Network
from .runners import Runner
from .state import LiveState, read


@attrs.frozen
class PlannedStep:
    """One step of a plan.

    Attributes:
        step: the network's step.
        run: the commands of the step that are not in place yet, in order.
        owns: True when the step creates its object (so undoing it deletes
            the object, and with it whatever it covers).
        undo: the commands that undo ``run``, in the order to run them.
    """

    step: Step
    run: tuple[Command, ...]
    owns: bool
    undo: tuple[Command, ...]

    @property
    def in_place(self) -> int:
        return len(self.step.up) - len(self.run)


@attrs.frozen
class Plan:
    """What ``up`` would run against the state it was made from.

    Attributes:
        network: the network planned.
        steps: every step of the network, with what of it is to run.
        state: the live state the plan was made from.
        warnings: things that are no conflict but will keep the network
            from working (e.g. a FORWARD policy of DROP).
        orphans: state-file entries of this network that the network no
            longer has (a container removed from the file): ``up`` removes
            them first, as their ``undo`` says.
        removals: the commands that remove the orphans, in order.
    """

    network: Network
    steps: tuple[PlannedStep, ...]
    state: LiveState
    warnings: tuple[str, ...] = ()
    orphans: tuple[Entry, ...] = ()
    removals: tuple[Command, ...] = ()

    @property
    def commands(self) -> list[Command]:
        """Commands to run, in order: the removals, then what is missing."""
        return [*self.removals, *(c for s in self.steps for c in s.run)]

    @property
    def in_place(self) -> int:
        """How many of the network's commands are already in effect."""
        return sum(s.in_place for s in self.steps)

    @property
    def empty(self) -> bool:
        return not self.removals and not self.orphans and not any(s.run for s in self.steps)

    def summary(self) -> str:
        """E.g. ``"3 to run, 20 already in place"`` (``"2 to remove, "`` first when there are orphans)."""
        runs = sum(len(s.run) for s in self.steps)
        head = f"{len(self.removals)} to remove, " if self.removals else ""
        return f"{head}{runs} to run, {self.in_place} already in place"


def wanted_reads(network: Network) -> dict:
    """What :func:`bridgenet.state.read` must read to plan ``network``."""
    netns = [n.name for n in network.namespaces]
    sysctls = [(s.key, s.netns) for s in network.sysctls()]
    rules = [("nat", "POSTROUTING", r.netns) for r in network.of_type(NatRule)]
    rules += [("filter", FORWARD_CHAIN, r.netns) for r in network.of_type(ForwardRule)]
    rules += [("filter", chain, r.netns) for r in network.of_type(Isolation)
              for chain in (FORWARD_CHAIN, ISOLATION_CHAIN)]
    for c in network.of_type(FilterChain):
        rules.append(("filter", c.chain, c.netns))  # the table is read whole: chain existence too
        if c.jump_from:
            rules.append(("filter", c.jump_from, c.netns))
    return {"netns": netns, "sysctls": sysctls, "rules": rules}


def read_for(network: Network, runner: Runner) -> LiveState:
    """Read the live state ``network`` needs for planning."""
    return read(runner, **wanted_reads(network))


def make_plan(network: Network, runner: Runner, *, fast: bool = False, state: LiveState | None = None,
              ledger: Ledger | None = None) -> Plan:
    """Plan bringing ``network`` up on the host ``runner`` acts on.

    Args:
        fast: plan the batch form (veth peers created in their namespace).
        state: live state already read (default: read it now).
        ledger: the network's state file (default: read it from the host).

    Only what the plan creates (or what this network created before, per
    its state file) is tagged: an object that existed already keeps its
    alias, so ``clean`` can never take it for ours.

    Raises:
        ConflictError: something exists but differs from what the network
            asks for, another network of that name is up, or an object this
            network would reuse was made by another bridgenet network;
            nothing has been changed.
    """
    if ledger is None:
        ledger = Ledger.open(runner.fs_root, network.name)
    check_identity(network, ledger)
    others = {n: Ledger.open(runner.fs_root, n) for n in Ledger.names(runner.fs_root) if n != network.name}
    state = state if state is not None else read_for(network, runner)
    check_conflicts(network, state, moves_peers=network.move_peers and not fast)
    steps = network.steps(fast=fast)
    check_not_owned_by_others(steps, state, others)
    ours = {e.key for e in ledger.entries if e.owns}
    planned = []
    for step in steps:
        run = tuple(c for c in step.up if not satisfied(c.effect, state))
        run = _move_stranded_peer(step, run, state)
        owns = bool(run) and run[0] is step.up[0] and isinstance(step.up[0].effect, (LinkPresent, NetnsPresent))
        planned.append((step, run, owns))
    created = _created_links((step for step, _, owns in planned if owns or step.key in ours))
    out = []
    for step, run, owns in planned:
        run = tuple(c for c in run if not _leave_alone(c.effect, created))
        undo = step.down if owns else tuple(u for c in reversed(run) for u in inverse(c, state))
        out.append(PlannedStep(step, run, owns, undo))
    keys = {s.key for s in steps}
    orphans = tuple(e for e in ledger.entries if e.key not in keys)
    return Plan(network, tuple(out), state, tuple(_warnings(network, runner)), orphans, tuple(removals(orphans)))


def _created_links(steps) -> set[tuple[str | None, str]]:  # noqa: ANN001
    """``(netns, link)`` of every link the given (owned) steps create: both ends of a veth, a namespace's lo."""
    out: set[tuple[str | None, str]] = set()
    for step in steps:
        e = step.up[0].effect if step.up else None
        if isinstance(e, LinkPresent):
            out.add((e.netns, e.name))
            if e.peer:
                out.add((e.peer_netns, e.peer))
            out.update((c.effect.netns, c.effect.name) for c in step.up if isinstance(c.effect, LinkInNetns))
        elif isinstance(e, NetnsPresent):
            out.add((e.name, "lo"))
    return out


def _leave_alone(effect: Effect | None, created: set[tuple[str | None, str]]) -> bool:
    """A change bridgenet makes only to what it created: a tag (alias), and ``lo`` up in a namespace.

    A reused bridge keeps its alias; a user's namespace keeps its ``lo`` as it
    was (containers reach each other without it), so nothing of a reused
    object changes that ``down`` would have to put back.
    """
    if isinstance(effect, LinkAlias):
        return (effect.netns, effect.name) not in created
    if isinstance(effect, LinkUp) and effect.name == "lo" and effect.netns is not None:
        return (effect.netns, "lo") not in created
    return False


def removals(entries: Sequence[Entry]) -> list[Command]:
    """The undo commands of state-file ``entries``, in reverse, skipping what a covering entry removes."""
    owned = {e.key for e in entries if e.owns}
    return [c for e in reversed(entries) if not (e.covered_by is not None and e.covered_by in owned)
            for c in e.undo]


def check_identity(network: Network, ledger: Ledger) -> None:
    """Refuse a network whose name is up on this host as another network (another file, other bridges).

    Raises:
        ConflictError: naming both sides and how to free the name.
    """
    old = ledger.identity
    if not ledger.entries or not old:
        return
    new = network.identity()
    diffs = []
    if old.get("source") != new.get("source"):
        diffs.append((f"comes from {_source(new.get('source'))}", f"came from {_source(old.get('source'))}"))
    if old.get("bridges") != new.get("bridges"):
        diffs.append((f"has bridge(s) {', '.join(new.get('bridges') or []) or 'none'}",
                      f"had {', '.join(old.get('bridges') or []) or 'none'}"))
    if diffs:
        raise ConflictError(
            f"network {network.name}", "this network, which " + " and ".join(w for w, _ in diffs),
            f"another network named {network.name} up, which " + " and ".join(f for _, f in diffs),
            hint=f"a name identifies one network on a host: take the other down first (`bridgenet down` with "
                 f"its file; the state file /run/bridgenet/{network.name}.json says what it made), or rename "
                 "this one",
        )


def _source(source: str | None) -> str:
    return "a Python program" if source is None else source


def check_not_owned_by_others(steps: Sequence[Step], state: LiveState, others: dict[str, Ledger]) -> None:
    """Refuse to reuse a bridge, link or namespace that another bridgenet network created.

    When network A created ``br1`` and network B found it in place, A's
    ``down`` would delete it under B. bridgenet refuses B instead (no
    reference counting: one owner per object).

    Raises:
        ConflictError: naming the object and the network that made it.
    """
    owners = {e.key: name for name, ledger in others.items() for e in ledger.entries if e.owns}
    if not owners:
        return
    for step in steps:
        first = step.up[0].effect if step.up else None
        if step.key not in owners or not isinstance(first, (LinkPresent, NetnsPresent)):
            continue
        exists = state.netns_exists(first.name) if isinstance(first, NetnsPresent) else satisfied(first, state)
        if exists:
            other = owners[step.key]
            what = "netns" if isinstance(first, NetnsPresent) else "link"
            raise ConflictError(
                f"{what} {first.name}", f"{first.name} for this network",
                f"{first.name} created by the bridgenet network {other}",
                hint=f"two networks never share an object one of them created (its down would remove it under "
                     f"the other): use another name here, or take {other} down first",
            )


def _warnings(network: Network, runner: Runner, state: LiveState | None = None) -> list[str]:
    """Things that are not conflicts but will keep the network from working (see ``hostcheck.py``).

    FORWARD policy DROP or a DROP/REJECT rule in FORWARD that comes before
    the network's rules, STP on a bridge it reuses, iptables-legacy and
    iptables-nft tables both in use. One process through ``runner``;
    ``state`` is not needed (the checks read what they need themselves).
    """
    from .hostcheck import warnings

    return warnings(network, runner)


def _move_stranded_peer(step: Step, run: tuple[Command, ...], state: LiveState) -> tuple[Command, ...]:
    """A veth made the lesson's way and not moved yet, planned in the form that creates peers in place:
    the veth is in place, but its peer still sits in the host; move it."""
    first = step.up[0].effect if step.up else None
    if not (isinstance(first, LinkPresent) and first.kind == "veth" and first.peer_netns and first.peer):
        return run
    if step.up[0] in run or any(isinstance(c.effect, LinkInNetns) for c in step.up):
        return run
    if first.peer in state.host.links and not (
        state.netns_exists(first.peer_netns) and first.peer in state.ns(first.peer_netns).links
    ):
        move = ip("link", "set", first.peer, "netns", first.peer_netns, step=step.key,
                  effect=LinkInNetns(first.peer, first.peer_netns))
        return (move, *run)
    return run


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
    if isinstance(e, AddrPresent):
        return link is not None and e.address in link.addresses
    if isinstance(e, AddrAbsent):
        return link is None or e.address not in link.addresses
    if isinstance(e, (RoutePresent, RouteAbsent)):
        present = _ns_ok(state, e.netns) and any(
            r.dst == e.dst and r.gateway == str(e.via) for r in state.ns(e.netns).routes
        )
        return present if isinstance(e, RoutePresent) else not present
    if isinstance(e, SysctlValue):
        return state.sysctls.get((e.key, e.netns)) == e.value
    if isinstance(e, (RulePresent, RuleAbsent)):
        present = e.rule in state.rules.get((e.table, e.chain, e.netns), [])
        return present if isinstance(e, RulePresent) else not present
    if isinstance(e, (ChainPresent, ChainAbsent)):
        if not _ns_ok(state, e.netns):
            return isinstance(e, ChainAbsent)
        exists = state.chain_exists(e.table, e.chain, e.netns)
        if exists is None:
            return False  # not read: run the command (it fails clearly if it has nothing to do)
        return exists if isinstance(e, ChainPresent) else not exists
    return False  # pragma: no cover


def gone(effect: Effect | None, state: LiveState) -> str | None:
    """For an undo command: what no longer exists so that it has nothing left to undo, else None.

    A reused bridge a user deleted, a namespace another tool removed: the
    undo step counts as done (and is reported), and ``down``/``clean`` go on.
    """
    netns = getattr(effect, "netns", None)
    if netns is not None and not state.netns_exists(netns):
        return f"netns {netns} is gone"
    if isinstance(effect, (LinkAlias, LinkDown, LinkMaster, LinkUp)):
        name = effect.name
    elif isinstance(effect, (AddrAbsent, AddrPresent)):
        name = effect.dev
    else:
        return None
    if name not in state.ns(netns).links:
        return f"link {name} is gone" + (f" from netns {netns}" if netns else "")
    return None


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
    if isinstance(e, AddrPresent):
        return [ip("addr", "del", str(e.address), "dev", e.dev, netns=e.netns, step=k,
                   effect=AddrAbsent(e.dev, e.address, e.netns))]
    if isinstance(e, RoutePresent):
        return [ip("route", "del", e.dst, "via", str(e.via), netns=e.netns, step=k,
                   effect=RouteAbsent(e.dst, e.via, e.netns))]
    if isinstance(e, SysctlValue):
        old = state.sysctls.get((e.key, e.netns))
        if old is None:
            return []
        return [sysctl_w(e.key, old, netns=e.netns, step=k)]
    if isinstance(e, RulePresent):
        return [iptables("-t", e.table, "-D", e.chain, *e.rule, netns=e.netns, step=k,
                         effect=RuleAbsent(e.table, e.chain, e.rule, e.netns))]
    if isinstance(e, ChainPresent):
        table = () if e.table == "filter" else ("-t", e.table)
        return [iptables(*table, "-X", e.chain, netns=e.netns, step=k, effect=ChainAbsent(e.table, e.chain, e.netns))]
    return []  # LinkInNetns: undone by deleting the veth


# --- conflicts -----------------------------------------------------------------------


def _where(netns: str | None) -> str:
    return f"netns {netns}" if netns else "the host"


def check_conflicts(network: Network, state: LiveState, *, moves_peers: bool | None = None) -> None:
    """Raise ConflictError for the first thing on the host that differs from ``network``.

    Checked: stale ``/run/netns`` entries; links of the wrong kind or with
    the wrong veth peer or master; addresses already used by another link;
    another address already on one of the network's links; a subnet that
    overlaps an address or route already on the host; a route to the same
    destination through another gateway.

    ``moves_peers``: whether veth peers are created in the host and moved
    (then a host link with the peer's name is in the way); default: as the
    network renders them.
    """
    if moves_peers is None:
        moves_peers = network.move_peers
    for ns in network.namespaces:
        if ns.name in state.stale_netns:
            raise ConflictError(
                f"netns {ns.name}", "a network namespace", f"a stale empty file /run/netns/{ns.name} (no namespace "
                "is mounted on it, so `ip netns exec` fails with \"Invalid argument\")",
                hint=f"remove it with `ip netns del {ns.name}` (it only unlinks the stale file), then retry",
            )
    ours_host = {b.name for b in network.bridges} | {v.name for v in network.veths}
    ours_host |= {v.peer for v in network.veths if v.netns is None}
    ours_in: dict[str | None, set[str]] = {None: ours_host}
    for v in network.veths:
        if v.netns is not None:
            ours_in.setdefault(v.netns, set()).add(v.peer)
    host = state.host.links
    for b in network.bridges:
        link = host.get(b.name)
        if link is not None and link.kind != "bridge":
            raise ConflictError(f"link {b.name}", "a bridge", f"a link of kind {link.kind or 'unknown'} named {b.name}")
    for v in network.veths:
        _check_veth(v, state, moves_peers)
    _check_addresses(network, state, ours_in)
    for r in network.of_type(Route):
        if not _ns_ok(state, r.netns):
            continue
        for entry in state.ns(r.netns).routes:
            if entry.dst == r.dst and entry.gateway != str(r.via):
                found = f"via {entry.gateway}" if entry.gateway else f"dev {entry.dev}"
                raise ConflictError(f"route {r.dst} in {_where(r.netns)}", f"{r.dst} via {r.via}", f"{r.dst} {found}")


def _check_veth(v: VethPair, state: LiveState, moves_peers: bool) -> None:
    host = state.host.links
    link = host.get(v.name)
    where_peer = _where(v.netns)
    peer_links = state.ns(v.netns).links if _ns_ok(state, v.netns) else {}
    peer = peer_links.get(v.peer)
    if link is None:
        if peer is not None:
            raise ConflictError(f"link {v.peer}", f"to create {v.peer} as the peer of a new veth {v.name}",
                                f"a link {v.peer} already in {where_peer}")
        if v.netns is not None and moves_peers and v.peer in host:
            raise ConflictError(f"link {v.peer}", f"to create the veth peer {v.peer} in the host, then move it",
                                f"a link {v.peer} already in the host")
        return
    if link.kind != "veth":
        raise ConflictError(f"link {v.name}", f"a veth whose peer is {v.peer}",
                            f"a link of kind {link.kind or 'unknown'} named {v.name}")
    # brid4 exists as a veth: its peer must be ours, in the host or in the namespace.
    in_host = host.get(v.peer)
    if in_host is not None and in_host.peer == link.name and link.peer == in_host.name:
        pass  # not moved yet (both ends in the host): the plan moves it
    elif peer is not None and peer.peer_index == link.ifindex and link.peer_index == peer.ifindex:
        pass
    else:
        raise ConflictError(f"link {v.name}", f"a veth whose peer is {v.peer} in {where_peer}",
                            f"a veth {v.name} whose peer is another link")
    if v.master is not None and link.master not in (None, v.master):
        raise ConflictError(f"link {v.name}", f"a bridge port of {v.master}", f"a bridge port of {link.master}")


def _addr_objects(network: Network) -> list[tuple[str, str | None, object]]:
    out = []
    for o in network.ordered:
        if isinstance(o, Address):
            out.append((o.dev, o.netns, o.address))
        elif isinstance(o, VethPair) and o.address is not None:
            out.append((o.peer, o.netns, o.address))
    return out


def _check_addresses(network: Network, state: LiveState, ours_in: dict[str | None, set[str]]) -> None:
    wanted = _addr_objects(network)
    wanted_on: dict[tuple[str | None, str], set] = {}
    for dev, ns, addr in wanted:
        wanted_on.setdefault((ns, dev), set()).add(addr)
    owners: dict[str | None, dict] = {}  # each namespace's address -> link map, built once
    for dev, ns, addr in wanted:
        spaces = [ns] + ([None] if ns is not None else [])
        for space in spaces:
            if not _ns_ok(state, space):
                continue
            if space not in owners:
                owners[space] = state.ns(space).owners()
            owner = owners[space].get(addr.ip)
            if owner is not None and not (space == ns and owner == dev):
                raise ConflictError(f"address {addr.ip}", f"{addr} on {dev} in {_where(ns)}",
                                    f"{addr.ip} already on {owner} in {_where(space)}")
        if not _ns_ok(state, ns):
            continue
        links = state.ns(ns).links
        mine = ours_in.get(ns, set())
        link = links.get(dev)
        if link is not None:
            others = [a for a in link.addresses if a not in wanted_on.get((ns, dev), set())]
            if others:
                raise ConflictError(f"link {dev} in {_where(ns)}", f"only {addr}",
                                    f"{dev} carrying {', '.join(map(str, others))}")
        net: IPv4Network = addr.network
        for other in links.values():
            if other.name in mine:
                continue
            for a in other.addresses:
                if a.network.overlaps(net):
                    raise ConflictError(f"subnet {net}", f"{net} on {dev} in {_where(ns)}",
                                        f"{a} on {other.name}, an overlapping subnet")
        for r in state.ns(ns).routes:
            if r.dst in ("default", "") or r.dev in mine:
                continue
            try:
                rnet = IPv4Network(r.dst if "/" in r.dst else f"{r.dst}/32", strict=False)
            except ValueError:
                continue
            if rnet.overlaps(net):
                via = f" via {r.gateway}" if r.gateway else ""
                raise ConflictError(f"subnet {net}", f"{net} on {dev} in {_where(ns)}",
                                    f"a route {r.dst}{via} dev {r.dev}, which overlaps it")

