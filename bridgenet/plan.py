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

import time
from ipaddress import IPv4Network

import attrs

from .commands import (
    AddrAbsent,
    AddrPresent,
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
from .errors import ConflictError, VethFreeingConflict
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
    """What ``up`` would run against the state it was made from."""

    network: Network
    steps: tuple[PlannedStep, ...]
    state: LiveState
    warnings: tuple[str, ...] = ()

    @property
    def commands(self) -> list[Command]:
        """Commands to run, in order."""
        return [c for s in self.steps for c in s.run]

    @property
    def in_place(self) -> int:
        """How many of the network's commands are already in effect."""
        return sum(s.in_place for s in self.steps)

    @property
    def empty(self) -> bool:
        return not any(s.run for s in self.steps)

    def summary(self) -> str:
        """E.g. ``"3 to run, 20 already in place"``."""
        return f"{len(self.commands)} to run, {self.in_place} already in place"


def wanted_reads(network: Network) -> dict:
    """What :func:`bridgenet.state.read` must read to plan ``network``."""
    netns = [n.name for n in network.namespaces]
    sysctls = [(s.key, s.netns) for s in network.sysctls()]
    rules = [("nat", "POSTROUTING", r.netns) for r in network.of_type(NatRule)]
    rules += [("filter", "FORWARD", r.netns) for r in network.of_type(ForwardRule)]
    return {"netns": netns, "sysctls": sysctls, "rules": rules}


def read_for(network: Network, runner: Runner) -> LiveState:
    """Read the live state ``network`` needs for planning."""
    return read(runner, **wanted_reads(network))


SETTLE_SECONDS = 3.0
"""How long planning waits for the host end of a deleted namespace's veth to go (see settled_state)."""


def settled_state(network: Network, runner: Runner, *, moves_peers: bool | None = None,
                  deadline: float | None = None, interval: float = 0.005) -> LiveState:
    """Read the live state ``network`` needs, once the veths being freed are gone.

    Deleting a namespace destroys the veth end inside it and then,
    asynchronously, its peer in the host (KERNEL-NOTES; measured here: up to
    ≈0.4 s after ``ip netns del``), so right after a teardown by hand a host
    end such as ``brid4`` can still be there with its peer nowhere. While the
    only conflict :func:`check_conflicts` finds is such a veth, the state is
    read again every ``interval`` seconds, for at most ``deadline`` seconds.
    Any other conflict is raised at once.

    Returns:
        the last state read (conflict-free, or with conflicts of other kinds
        left for the caller's check).

    Raises:
        VethFreeingConflict: the veth is still there at the deadline (a
            process holding the deleted namespace keeps it alive; the message
            says to ``ip link del`` it).
        ConflictError: any other conflict.
    """
    deadline = SETTLE_SECONDS if deadline is None else deadline
    end = time.monotonic() + deadline
    while True:
        state = read_for(network, runner)
        try:
            check_conflicts(network, state, moves_peers=moves_peers)
            return state
        except VethFreeingConflict as e:
            if time.monotonic() >= end:
                raise VethFreeingConflict(e.what, e.wanted, f"{e.found}, still there after {deadline:g} s",
                                          e.hint, e.link) from None
        time.sleep(interval)


def make_plan(network: Network, runner: Runner, *, fast: bool = False, state: LiveState | None = None) -> Plan:
    """Plan bringing ``network`` up on the host ``runner`` acts on.

    Args:
        fast: plan the batch form (veth peers created in their namespace).
        state: live state already read (default: read it now).

    Raises:
        ConflictError: something exists but differs from what the network
            asks for; nothing has been changed.
    """
    state = state if state is not None else settled_state(network, runner, moves_peers=network.move_peers and not fast)
    check_conflicts(network, state, moves_peers=network.move_peers and not fast)
    out = []
    for step in network.steps(fast=fast):
        run = tuple(c for c in step.up if not satisfied(c.effect, state))
        run = _move_stranded_peer(step, run, state)
        owns = bool(run) and run[0] is step.up[0] and isinstance(step.up[0].effect, (LinkPresent, NetnsPresent))
        if owns:
            undo = step.down
        else:
            undo = tuple(u for c in reversed(run) for u in inverse(c, state))
        out.append(PlannedStep(step, run, owns, undo))
    return Plan(network, tuple(out), state, tuple(_warnings(network, runner)))


def _warnings(network: Network, runner: Runner) -> list[str]:
    """Things that are not conflicts but will keep the network from working."""
    from .state import read_policy

    if not network.of_type(NatRule) or network.of_type(ForwardRule):
        return []
    if read_policy(runner, "filter", "FORWARD") == "DROP":
        bridges = ", ".join(b.name for b in network.bridges)
        return [f"the iptables FORWARD policy here is DROP (Docker sets it): traffic routed to and from "
                f"{bridges} will be dropped. Add a ForwardRule (accept_forward=True in a network "
                f"file or bridge_network) to let it through."]
    return []


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
    return False  # pragma: no cover


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
    elif link.peer_netnsid is not None and peer is None:
        # Its peer is in another namespace, and nothing we read is it: most
        # likely the host end of a veth whose namespace was just deleted,
        # which the kernel frees asynchronously (settled_state waits for it).
        gone = v.netns is not None and not state.netns_exists(v.netns)
        raise VethFreeingConflict(
            f"link {v.name}", f"a veth whose peer is {v.peer} in {where_peer}",
            f"a veth {v.name} whose peer is in another namespace"
            + (f" ({v.netns} does not exist)" if gone else f" (not {v.peer} in {v.netns})" if v.netns else ""),
            hint=(f"after `ip netns del`, the kernel frees the host end of the namespace's veth asynchronously, "
                  f"and not at all while a process still holds the namespace (ip netns del only removes its "
                  f"name); if {v.name} does not go by itself, remove it with `ip link del {v.name}` and retry"),
            link=v.name,
        )
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

