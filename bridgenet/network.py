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
)


def _objects(value: Iterable[NetworkObject]) -> object:
    """attrs converter: an iterable of objects to a tuple; anything else is left for the checker to name."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return value
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
    tag: bool = attrs.field(default=False, validator=rules.boolean)
    move_peers: bool = attrs.field(default=False, validator=rules.boolean)
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

    def down_commands(self, steps: Sequence[Step] | None = None, *, group: bool = True) -> list[Command]:
        """The commands that take down ``steps`` (default: all), in reverse order.

        With ``group`` (default), the host's links are deleted in one
        request as a link group (``teardown.py``): ``ip link set dev X group
        G`` for each, then ``ip link del group G``, then the namespaces; G is
        ``teardown.default_group(name)`` (``down`` picks one no link of the
        host is in). ``group=False``: one ``ip link del`` per link, as below.

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
        if group:
            from .teardown import default_group, grouped

            return grouped(out, default_group(self.name))
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
        if not isinstance(self.objs, tuple):
            self.fail(None, "objects", "objects is a list (or other iterable) of model objects", self.objs)
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
        self.bridge_rules()
        self.addresses()
        self.routes()

    def bridge_rules(self) -> None:
        """Bridge rules, in one pass over the objects: at most MAX_BRIDGE_PORTS veths on a bridge (the
        kernel's BR_MAX_PORTS); a bridge's subnet has room for a port; host addresses on different links
        are on disjoint subnets.

        Two subnets overlap when one contains the other, so one sweep in
        address order with a stack of the enclosing subnets finds every
        overlap (the stack holds at most 32).
        """
        count: dict[str, int] = {}
        bridges: dict[str, Bridge] = {}
        host: list[Address] = []
        for o in self.objs:
            t = type(o)
            if t is VethPair:
                if o.master is not None:
                    count[o.master] = count.get(o.master, 0) + 1
            elif t is Address:
                if o.netns is None:
                    host.append(o)
            elif t is Bridge:
                bridges[o.name] = o
        for master, n in count.items():
            if n > rules.MAX_BRIDGE_PORTS:
                self.fail(bridges[master], "ports", _too_many_ports(master, n), n)
        for o in host:
            if o.dev in bridges and o.address.network.prefixlen > 30:
                self.fail(o, "address", _ROOMLESS_GATEWAY, str(o.address))
        if len(host) < 2:
            return
        host.sort(key=lambda o: (o.address.network.network_address, o.address.network.prefixlen))
        stack: list[Address] = []
        for o in host:
            net = o.address.network
            while stack and not net.subnet_of(stack[-1].address.network):
                stack.pop()
            for outer in stack:
                if outer.dev != o.dev:
                    first, second = sorted((outer, o), key=self.objs.index)
                    self.fail(second, "address", f"the subnets of two links do not overlap: "
                              f"{second.address.network} on {second.dev} overlaps {first.address.network} on "
                              f"{first.dev} ({rules.describe(first)}), and the host would route both to one "
                              f"of them", str(second.address))
            stack.append(o)

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
                    port, gw = (o, other) if isinstance(o, VethPair) else (other, o)
                    if isinstance(port, VethPair) and isinstance(gw, Address) and gw.netns is None \
                            and gw.dev == port.master:
                        self.fail(port, "address", f"an address is not the gateway {gw.address.ip} of bridge "
                                  f"{port.master}", str(port.address))
                    self.fail(o, field, f"address {iface.ip} is already used by {_where_named(other)}", str(iface))
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


_ROOMLESS_GATEWAY = (
    "a bridge's address has a prefix length of 1-30, so that its subnet has room for the gateway and at least "
    "one container besides the network and broadcast addresses (/32 leaves none; /31 leaves one, which the "
    "broadcast address bridgenet sets on the bridge would take)")


def _too_many_ports(bridge: str, n: int) -> str:
    return (f"a bridge has at most {rules.MAX_BRIDGE_PORTS} ports ({bridge} would have {n}): the kernel numbers "
            f"ports 1-{rules.MAX_BRIDGE_PORTS} (BR_MAX_PORTS = {rules.BR_MAX_PORTS} in net/bridge/br_private.h, "
            "port 0 unused) and the next `ip link set ... master` fails with \"Exchange full\"; "
            "spread the containers over several bridges")


def _where_named(o: object) -> str:
    ns = getattr(o, "netns", None)
    return f"{rules.describe(o)} in netns {ns}" if isinstance(o, VethPair) and ns else rules.describe(o)


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


# The lesson's shape (Container, bridge_network) lives in shape.py; importable from here as before.
from .shape import Container, bridge_network, build_bridge_network  # noqa: E402,F401
