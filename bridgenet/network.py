"""A network: an ordered set of model objects, checked as a whole.

:class:`Network` checks the rules that involve several objects (names and
addresses unique, addresses inside their bridge's subnet, gateways on-link),
orders the objects so that everything comes after what it depends on, and
renders the two command lists: ``up_commands()`` and ``down_commands()``.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import attrs

from . import rules
from .commands import Command, Step
from .errors import ValidationError
from .firewall import FilterChain, Isolation, chains_needed
from .model import (
    Address,
    Bridge,
    ForwardRule,
    Namespace,
    NatRule,
    NetworkObject,
    RenderContext,
    Route,
    Sysctl,
    VethPair,
    ip_forward,
)


def _objects(value: Iterable[NetworkObject]) -> tuple[NetworkObject, ...]:
    return tuple(value)


@attrs.frozen
class Network:
    """A container network: bridges, namespaces, veth pairs, addresses, routes, sysctls, NAT.

    Attributes:
        name: names the network (state file, iptables comment tag); 1-64 of
            ``A-Za-z0-9_.-``.
        objects: the model objects, in the order their commands should run
            where the order is free; dependencies are moved first.
        tag: tag what the kernel lets us tag with ``bridgenet:NAME`` (link
            alias, iptables comment) so leftovers can be found without the
            state file. The lesson's network is untagged so that its
            transcript stays the lesson's.
        move_peers: create each veth's peer in the host and then move it
            into its namespace, as the lesson does (``ip link set veth4 netns
            container4``, ≈16 ms each). By default the peer is created in
            its namespace at once (``... peer name veth4 netns container4``,
            ≈0.5 ms), which also leaves the host's own names (``eth0``)
            free for peers.
        source: where the network was defined: the network file's absolute
            path, ``"the lesson"`` for :func:`bridgenet.tutorial`, None for
            a Python program. With the bridges it is the network's identity
            on a host (:meth:`identity`): ``up`` refuses a network whose name
            is up there with another identity.

    Raises:
        ValidationError: when a rule involving several objects is broken;
            the message names the object, the field and the rule.
    """

    name: str = attrs.field(validator=rules.network_name)
    objects: tuple[NetworkObject, ...] = attrs.field(converter=_objects)
    tag: bool = False
    move_peers: bool = False
    source: str | None = attrs.field(default=None, eq=False, kw_only=True)
    _order: tuple[NetworkObject, ...] = attrs.field(init=False, repr=False, eq=False, default=())
    _covers: dict[str, str] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        with _gc_paused():
            _Checker(self).check()
            object.__setattr__(self, "_order", _dependency_order(_with_chains(self.objects)))
            object.__setattr__(self, "_covers", _coverage(self.objects))

    # --- views -------------------------------------------------------------

    def identity(self) -> dict:
        """``{"source": ..., "bridges": [...]}``: what makes this network itself, recorded in its state file."""
        return {"source": self.source, "bridges": sorted(b.name for b in self.bridges)}

    @property
    def tag_text(self) -> str | None:
        """``"bridgenet:NAME"`` when the network is tagged, else None."""
        return f"bridgenet:{self.name}" if self.tag else None

    @property
    def ordered(self) -> tuple[NetworkObject, ...]:
        """The objects in the order their commands run."""
        return self._order

    def of_type(self, cls: type) -> list:
        """The objects of one class, in order."""
        return [o for o in self._order if isinstance(o, cls)]

    @property
    def namespaces(self) -> list[Namespace]:
        return self.of_type(Namespace)

    @property
    def bridges(self) -> list[Bridge]:
        return self.of_type(Bridge)

    @property
    def veths(self) -> list[VethPair]:
        return self.of_type(VethPair)

    def context(self, *, fast: bool = False) -> RenderContext:
        """The :class:`RenderContext` this network renders with."""
        lo: dict[str, str] = {}
        for o in self._order:
            if isinstance(o, VethPair) and o.netns is not None:
                lo.setdefault(o.netns, o.name)
        return RenderContext(tag=self.tag_text, fast=fast or not self.move_peers, brings_lo_up=lo)

    def steps(self, *, fast: bool = False) -> list[Step]:
        """Every step, in the order ``up`` runs them.

        Args:
            fast: render veth pairs with the peer created inside its
                namespace (what the batch runner uses) even when the network
                moves peers (``move_peers``, the lesson's create-then-move).
        """
        with _gc_paused():
            return list(self._steps(fast))

    def _steps(self, fast: bool) -> Iterator[Step]:
        ctx = self.context(fast=fast)
        for o in self._order:
            if isinstance(o, (Address, Route)):
                yield from o.steps(ctx, covered_by=self._covers.get(o.step_key))
            else:
                yield from o.steps(ctx)

    def up_commands(self, *, fast: bool = False) -> list[Command]:
        """The commands that bring the network up on an empty host, in order."""
        # Steps are made one object at a time and dropped once their commands
        # are taken, so the texts and undo commands are never all held at once.
        with _gc_paused():
            return [c for s in self._steps(fast) for c in s.up]

    def down_commands(self, steps: Sequence[Step] | None = None) -> list[Command]:
        """The commands that take down ``steps`` (default: all), in reverse order.

        A step whose ``covered_by`` step is also taken down is skipped: its
        objects vanish with the other (an address with its link, a route with
        its namespace, a veth's peer with the veth). Each veth is deleted
        from its host end before its namespace is deleted, so both ends go
        at once (deleting only the namespace frees the host end
        asynchronously, and an immediate re-create then fails with
        "File exists").
        """
        steps = list(self.steps() if steps is None else steps)
        keys = {s.key for s in steps}
        out: list[Command] = []
        for s in reversed(steps):
            if s.covered_by is not None and s.covered_by in keys:
                continue
            out.extend(s.down)
        return out

    def sysctls(self) -> list[Sysctl]:
        return self.of_type(Sysctl)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many small objects are made (performance only).

    Rendering or checking N containers makes ~40 N tracked objects, none in a
    cycle; each automatic collection rescans all live ones, which cost ~25%
    of building 10,000 containers' command list (scripts/bench). Reference
    counting still frees everything at once; the collector's previous state
    is restored on exit, so nesting is harmless.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --- cross-object rules ------------------------------------------------------


class _Checker:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.objs = net.objects

    def fail(self, obj: object, field: str, rule: str, value: object = None) -> None:
        raise ValidationError(rules.describe(obj) if obj is not None else f"Network {self.net.name}", field, rule, value)

    def check(self) -> None:
        if not self.objs:
            self.fail(None, "objects", "a network has at least one object")
        allowed = (Bridge, Namespace, VethPair, Address, Route, Sysctl, NatRule, ForwardRule, FilterChain, Isolation)
        for o in self.objs:
            if not isinstance(o, allowed):
                self.fail(None, "objects",
                          "objects are Bridge, Namespace, VethPair, Address, Route, Sysctl, NatRule, ForwardRule, "
                          "FilterChain or Isolation", o)
        self.unique_keys()
        self.refs()
        self.names()
        self.addresses()
        self.routes()

    def unique_keys(self) -> None:
        seen: dict[str, object] = {}
        for o in self.objs:
            k = o.step_key
            if k in seen:
                self.fail(o, "objects", f"appears twice in the network ({k!r})")
            seen[k] = o

    def refs(self) -> None:
        namespaces = {o.name for o in self.objs if isinstance(o, Namespace)}
        bridges = {o.name for o in self.objs if isinstance(o, Bridge)}
        links = _creators(self.objs)
        for o in self.objs:
            ns = getattr(o, "netns", None)
            if ns is not None and ns not in namespaces:
                self.fail(o, "netns", f"netns {ns!r} is not a Namespace of this network", ns)
            if isinstance(o, VethPair) and o.master is not None and o.master not in bridges:
                self.fail(o, "master", f"master {o.master!r} is not a Bridge of this network", o.master)
            if isinstance(o, (ForwardRule, Isolation)) and o.bridge not in bridges:
                self.fail(o, "bridge", f"bridge {o.bridge!r} is not a Bridge of this network", o.bridge)
            if isinstance(o, Address) and (o.netns, o.dev) not in links:
                where = f"netns {o.netns}" if o.netns else "the host"
                self.fail(o, "dev", f"dev {o.dev!r} is not a link this network makes in {where}", o.dev)

    def names(self) -> None:
        host: dict[str, object] = {}
        inside: dict[tuple[str | None, str], object] = {}

        def claim(table: dict, key: object, name: str, o: object, field: str) -> None:
            other = table.get(key)
            if other is not None and other is not o:
                self.fail(o, field, f"interface name {name!r} is already used by {rules.describe(other)}", name)
            table[key] = o

        for o in self.objs:
            if isinstance(o, Bridge):
                claim(host, o.name, o.name, o, "name")
            elif isinstance(o, VethPair):
                claim(host, o.name, o.name, o, "name")
        for o in self.objs:
            if isinstance(o, VethPair):
                # With move_peers the peer is born in the host (the lesson
                # creates it there and moves it), so it must not clash with a
                # host link either.
                if (self.net.move_peers or o.netns is None) and o.peer in host:
                    self.fail(o, "peer", f"interface name {o.peer!r} is already used by "
                              f"{rules.describe(host[o.peer])} (the peer is created in the host first)", o.peer)
                claim(inside, (o.netns, o.peer), o.peer, o, "peer")

    def addresses(self) -> None:
        owners: dict[IPv4Address, object] = {}
        bridge_addrs: dict[str, list[IPv4Interface]] = {}
        for o in self.objs:
            for field, iface in self.addr_fields(o):
                other = owners.get(iface.ip)
                if other is not None:
                    self.fail(o, field, f"address {iface.ip} is already used by {rules.describe(other)}", str(iface))
                owners[iface.ip] = o
            if isinstance(o, Address) and o.netns is None:
                bridge_addrs.setdefault(o.dev, []).append(o.address)
        bridges = {o.name for o in self.objs if isinstance(o, Bridge)}
        port_net: dict[str, IPv4Network] = {}
        for o in self.objs:
            if not (isinstance(o, VethPair) and o.master in bridges and o.address is not None):
                continue
            a = o.address
            gws = bridge_addrs.get(o.master, [])
            nets = [g.network for g in gws]
            if nets:
                if a.network not in nets or a.ip not in a.network:
                    same_ip = [n for n in nets if a.ip in n]
                    if same_ip:
                        self.fail(o, "address", f"an address has the prefix length of its bridge's subnet: "
                                  f"{o.master} has {same_ip[0]}, so /{same_ip[0].prefixlen}", str(a))
                    self.fail(o, "address", f"an address must lie in its bridge's subnet: {o.master} has "
                              + ", ".join(map(str, nets)), str(a))
            else:
                first = port_net.setdefault(o.master, a.network)
                if a.network != first:
                    self.fail(o, "address", f"addresses on one bridge share a subnet: other ports of {o.master} "
                              f"are on {first}", str(a))
            net = a.network
            if net.prefixlen < 31 and a.ip in (net.network_address, net.broadcast_address):
                which = "network" if a.ip == net.network_address else "broadcast"
                self.fail(o, "address", f"an address is not the {which} address of its subnet {net}", str(a))
            for g in gws:
                if g.ip == a.ip:
                    self.fail(o, "address", f"an address is not the gateway {g.ip} of bridge {o.master}", str(a))

    @staticmethod
    def addr_fields(o: object) -> list[tuple[str, IPv4Interface]]:
        if isinstance(o, VethPair) and o.address is not None:
            return [("address", o.address)]
        if isinstance(o, Address):
            return [("address", o.address)]
        return []

    def routes(self) -> None:
        onlink: dict[str | None, list[IPv4Interface]] = {}
        for o in self.objs:
            if isinstance(o, VethPair) and o.address is not None:
                onlink.setdefault(o.netns, []).append(o.address)
            elif isinstance(o, Address):
                onlink.setdefault(o.netns, []).append(o.address)
        seen: dict[tuple[str | None, str], Route] = {}
        for o in self.objs:
            if not isinstance(o, Route):
                continue
            other = seen.get((o.netns, o.dst))
            if other is not None:
                self.fail(o, "dst", f"a namespace has one route to {o.dst}: {rules.describe(other)} is "
                          f"already {other.dst} via {other.via}", o.dst)
            seen[(o.netns, o.dst)] = o
            nets = onlink.get(o.netns, [])
            if o.netns is None and not nets:
                continue  # a host route may use a link bridgenet does not manage
            if not any(o.via in a.network for a in nets):
                where = f"netns {o.netns}" if o.netns else "the host"
                shown = ", ".join(str(a.network) for a in nets) or "no subnet at all"
                self.fail(o, "via", f"a gateway lies inside the on-link subnet of {where} ({shown})", str(o.via))
            if any(o.via == a.ip for a in nets):
                self.fail(o, "via", "a gateway is not the namespace's own address", str(o.via))


# --- ordering ---------------------------------------------------------------


def _creators(objs: Sequence[NetworkObject]) -> dict[tuple[str | None, str], int]:
    """``{(netns, link name): index of the object that makes the link}`` (bridges, both veth ends)."""
    out: dict[tuple[str | None, str], int] = {}
    for i, o in enumerate(objs):
        if isinstance(o, Bridge):
            out[(None, o.name)] = i
        elif isinstance(o, VethPair):
            out[(None, o.name)] = i
            out[(o.netns, o.peer)] = i
    return out


def _with_chains(objs: Sequence[NetworkObject]) -> list[NetworkObject]:
    """``objs`` with the shared chains their rules need, each before the first object needing it."""
    extra = chains_needed(objs)
    if not extra:
        return list(objs)
    out: list[NetworkObject] = []
    for i, o in enumerate(objs):
        out.extend(extra.get(i, ()))
        out.append(o)
    return out


def _dependency_order(objs: Sequence[NetworkObject]) -> tuple[NetworkObject, ...]:
    """Stable topological order: each object after what it needs, else as given."""
    ns_idx = {o.name: i for i, o in enumerate(objs) if isinstance(o, Namespace)}
    br_idx = {o.name: i for i, o in enumerate(objs) if isinstance(o, Bridge)}
    link_idx = _creators(objs)
    addr_holders: dict[str | None, list[tuple[IPv4Network, int]]] = {}
    for i, o in enumerate(objs):
        if isinstance(o, VethPair) and o.address is not None:
            addr_holders.setdefault(o.netns, []).append((o.address.network, i))
        elif isinstance(o, Address):
            addr_holders.setdefault(o.netns, []).append((o.address.network, i))
    deps: list[set[int]] = [set() for _ in objs]
    for i, o in enumerate(objs):
        ns = getattr(o, "netns", None)
        if ns is not None and ns in ns_idx:
            deps[i].add(ns_idx[ns])
        if isinstance(o, VethPair) and o.master in br_idx:
            deps[i].add(br_idx[o.master])
        if isinstance(o, Address) and (o.netns, o.dev) in link_idx:
            deps[i].add(link_idx[(o.netns, o.dev)])
        if isinstance(o, Route):
            for net, j in addr_holders.get(o.netns, []):
                if o.via in net:
                    deps[i].add(j)
        if isinstance(o, NatRule) and o.out_interface and (None, o.out_interface) in link_idx:
            deps[i].add(link_idx[(None, o.out_interface)])
        if isinstance(o, (ForwardRule, Isolation)) and o.bridge in br_idx:
            deps[i].add(br_idx[o.bridge])
        if isinstance(o, (ForwardRule, Isolation)):
            deps[i].update(j for j, c in enumerate(objs) if isinstance(c, FilterChain) and c.netns == o.netns)
        deps[i].discard(i)
    users: list[list[int]] = [[] for _ in objs]
    waiting = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(objs):  # pragma: no cover - references cannot form a cycle
        stuck = [rules.describe(objs[i]) for i, n in enumerate(waiting) if n]
        raise ValidationError("Network", "objects", "objects depend on each other in a cycle", stuck)
    return tuple(objs[i] for i in order)


def _coverage(objs: Sequence[NetworkObject]) -> dict[str, str]:
    """Which step removes each address and route along with itself."""
    link_key = {where: objs[i].step_key for where, i in _creators(objs).items()}
    namespaces = {o.name for o in objs if isinstance(o, Namespace)}
    out: dict[str, str] = {}
    for o in objs:
        if isinstance(o, Address):
            k = link_key.get((o.netns, o.dev))
            if k:
                out[o.step_key] = k
        elif isinstance(o, Route) and o.netns in namespaces:
            out[o.step_key] = f"netns {o.netns}"
    return out


# --- builders ---------------------------------------------------------------


@attrs.frozen
class Container:
    """One container on a bridge: its namespace, its address, its veth pair's names.

    Attributes:
        netns: the namespace, e.g. ``"container4"``.
        address: ``"10.201.0.4/24"``, or ``"10.201.0.4"`` to take the
            gateway's prefix length.
        veth: the host end; default ``"v-"`` + the netns name (cut to 15 bytes).
        peer: the container end; default ``"eth0"``, as Docker names it.
    """

    netns: str = attrs.field(validator=rules.netns_name)
    address: str | IPv4Interface
    veth: str | None = None
    peer: str = "eth0"


def bridge_network(
    name: str,
    containers: Iterable[Container],
    *,
    bridge: str = "br0",
    gateway: str | IPv4Interface = "10.201.0.1/24",
    default_routes: bool = True,
    forward: bool = True,
    masquerade: bool = True,
    tag: bool = True,
    lesson_form: bool = False,
    accept_forward: bool | None = None,
    source: str | None = None,
    isolate: bool | None = None,
) -> Network:
    """The lesson's shape: one bridge, containers plugged into it, gateway, routes, forwarding, NAT.

    The objects come in the lesson's order: the bridge; for each container its
    namespace and veth pair; the gateway address on the bridge; the default
    routes; ``net.ipv4.ip_forward=1``; MASQUERADE for the subnet.

    Args:
        lesson_form: render as the lesson does: each veth peer created in the
            host and moved into its namespace (``Network.move_peers``), and
            MASQUERADE for everything from the subnet. By default peers are
            created in their namespace, and traffic that stays on the bridge
            is not masqueraded (``! -o BRIDGE``, as Docker does), so
            containers see each other's own addresses.
        accept_forward: add :class:`ForwardRule` for the bridge (needed where
            the FORWARD policy is DROP); default: when ``tag`` is set (every
            network but the lesson's). The rules go into bridgenet's chain
            ``BRIDGENET-FORWARD``, jumped to from the top of FORWARD, so
            they take effect whatever FORWARD holds.
        isolate: drop traffic between this network and every other isolated
            network (:class:`bridgenet.firewall.Isolation`, Docker's scheme);
            default: when ``tag`` is set (every network but the lesson's).
            It does not depend on ``accept_forward``: without ACCEPT rules,
            what isolation does not drop goes on to FORWARD's own rules and
            policy.
        source: where the network was defined (``Network.source``).

    Raises:
        ValidationError: for any bad name or address, naming the field.
    """
    for field, value in (("accept_forward", accept_forward), ("isolate", isolate)):
        if value is not None and not isinstance(value, bool):
            raise ValidationError(f"Network {name}", field, "True, False or None (the default)", value)
    with _gc_paused():
        return _bridge_network(name, containers, bridge=bridge, gateway=gateway, default_routes=default_routes,
                               forward=forward, masquerade=masquerade, tag=tag, lesson_form=lesson_form,
                               accept_forward=accept_forward, isolate=isolate, source=source)


def _bridge_network(name: str, containers: Iterable[Container], *, bridge: str, gateway: str | IPv4Interface,
                    default_routes: bool, forward: bool, masquerade: bool, tag: bool, lesson_form: bool,
                    accept_forward: bool | None, isolate: bool | None, source: str | None) -> Network:
    gw = rules.to_interface(gateway) if isinstance(gateway, str) else gateway
    br = Bridge(bridge)
    gw_addr = Address(bridge, gw)
    objs: list[NetworkObject] = [br]
    namespaces: list[str] = []
    derived: dict[str, str] = {}
    for c in containers:
        addr = c.address
        if isinstance(addr, str) and "/" not in addr:
            addr = f"{addr}/{gw_addr.address.network.prefixlen}"
        veth = c.veth if c.veth is not None else _cut(f"v-{c.netns}", 15)
        if c.veth is None and veth in derived:
            raise ValidationError(
                f"Container {c.netns}", "veth",
                f"the host end's default name ('v-' + netns, cut to 15 bytes) is {veth!r}, the same as for "
                f"container {derived[veth]!r}; give one of them its own veth name", veth)
        derived.setdefault(veth, c.netns)
        objs.append(Namespace(c.netns))
        objs.append(VethPair(veth, c.peer, netns=c.netns, master=bridge, address=addr))
        namespaces.append(c.netns)
    objs.append(gw_addr)
    if default_routes:
        objs.extend(Route(ns, gw_addr.address.ip) for ns in namespaces)
    if forward:
        objs.append(ip_forward())
    if isolate if isolate is not None else tag:
        objs.append(Isolation(bridge))
    if accept_forward if accept_forward is not None else tag:
        objs.append(ForwardRule(bridge))
    if masquerade:
        objs.append(NatRule(gw_addr.address.network, not_out_interface=None if lesson_form else bridge))
    return Network(name, objs, tag=tag, move_peers=lesson_form, source=source)


def with_accept_forward(network: Network) -> Network:
    """``network`` with a :class:`ForwardRule` for each of its bridges that has none (``up --accept-forward``).

    The rules (and the shared chain they go into) come after the network's
    own objects, so the rest of its transcript is unchanged; the lesson's
    network, for one, keeps its 23 commands and gets four more at the end.
    """
    have = {(o.bridge, o.netns) for o in network.of_type(ForwardRule)}
    extra = [ForwardRule(b.name) for b in network.bridges if (b.name, None) not in have]
    if not extra:
        return network
    return Network(network.name, [*network.objects, *extra], tag=network.tag, move_peers=network.move_peers,
                   source=network.source)


def _cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore")
