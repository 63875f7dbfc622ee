"""A network's objects sorted by class in one pass, and the order their commands run in.

:class:`Inventory` looks at each object once and keeps what the checks and
the ordering ask about (the objects of each class in order, which object
creates each link, where each namespace and bridge is). :func:`dependency_order`
orders the objects so that each comes after what it needs;
:func:`coverage` says which step removes each address and route along with
itself. Internal to :class:`bridgenet.network.Network`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from . import rules
from .errors import ValidationError
from .firewall import FilterChain, Isolation, chains_needed
from .model import Address, Bridge, ForwardRule, Namespace, NatRule, NetworkObject, Route, Sysctl, VethPair, Vxlan


class Inventory:
    """``objs`` looked at once: by class (``isinstance``, in order) and by what they make.

    Attributes:
        bridges, namespaces, veths, addresses, routes, rules, chains: the
            objects of each class (``rules``: ForwardRule, Isolation and the
            other objects with ``needed_chains``: those that need a shared chain), in
            the order of ``objs``.
        links_and_addresses: the VethPair and Address objects, in order.
        bridges_and_veths: the Bridge, VethPair and Vxlan objects, in order.
        vxlans: the Vxlan objects, in order.
        creators: ``{(netns, link name): index}`` of the object that makes
            each link (a bridge, both ends of a veth pair); the last one
            when two make the same.
        ns_index, br_index: ``{name: index}`` of each Namespace and Bridge
            (the last one of a name).
        chain_index: ``{netns: [index, ...]}`` of each FilterChain.
        route_indices: the index of each Route, in order.
        keys: the objects' step keys, in order, once someone has set them
            (the checks do), else None.
        holders: ``{netns: [(first address, netmask, index, network, address), ...]}``
            of each VethPair with an address (or IPv6 address) and each Address, in order
            (addresses and mask as integers).
    """

    def __init__(self, objs: Sequence[NetworkObject]) -> None:
        self.objs = objs
        self.bridges: list[Bridge] = []
        self.namespaces: list[Namespace] = []
        self.veths: list[VethPair] = []
        self.addresses: list[Address] = []
        self.routes: list[Route] = []
        self.rules: list = []  # ForwardRule, Isolation, ... (needed_chains)
        self.chains: list[FilterChain] = []
        self.vxlans: list[Vxlan] = []
        self.links_and_addresses: list[VethPair | Address] = []
        self.bridges_and_veths: list[Bridge | VethPair] = []
        self.creators: dict[tuple[str | None, str], int] = {}
        self.ns_index: dict[str, int] = {}
        self.br_index: dict[str, int] = {}
        self.chain_index: dict[str | None, list[int]] = {}
        self.holders: dict[str | None, list[tuple[int, int, int, IPv4Network, int]]] = {}
        self.keys: list[str] | None = None
        veths, namespaces, routes = self.veths, self.namespaces, self.routes
        links_and_addresses, bridges_and_veths = self.links_and_addresses, self.bridges_and_veths
        creators, ns_index, hold = self.creators, self.ns_index, self._hold
        self.route_indices: list[int] = []
        route_indices = self.route_indices
        for i, o in enumerate(objs):
            t = type(o)
            if t is VethPair or (t is not Namespace and t is not Route and isinstance(o, VethPair)):
                veths.append(o)
                links_and_addresses.append(o)
                bridges_and_veths.append(o)
                creators[(o.name_netns, o.name)] = i
                creators[(o.netns, o.peer)] = i
                if o.address is not None:
                    hold(o.netns, o.address, i)
                if o.address6 is not None:
                    hold(o.netns, o.address6, i)
            elif t is Namespace or (t is not Route and isinstance(o, Namespace)):
                namespaces.append(o)
                ns_index[o.name] = i
            elif t is Route or isinstance(o, Route):
                routes.append(o)
                route_indices.append(i)
            elif isinstance(o, Bridge):
                self.bridges.append(o)
                bridges_and_veths.append(o)
                creators[(None, o.name)] = i
                self.br_index[o.name] = i
            elif isinstance(o, Address):
                self.addresses.append(o)
                links_and_addresses.append(o)
                hold(o.netns, o.address, i)
            elif isinstance(o, (ForwardRule, Isolation)):
                self.rules.append(o)
            elif isinstance(o, Vxlan):  # a host link (its name is claimed), a port of its bridge
                self.vxlans.append(o)
                bridges_and_veths.append(o)
                creators[(None, o.name)] = i
            elif isinstance(o, FilterChain):
                self.chains.append(o)
                self.chain_index.setdefault(o.netns, []).append(i)
            elif hasattr(o, "needed_chains"):  # a published port's objects (ports.py)
                self.rules.append(o)

    def _hold(self, netns: str | None, address: IPv4Interface, i: int) -> None:
        net = address.network
        self.holders.setdefault(netns, []).append((int(net.network_address), int(net.netmask), i, net, int(address)))


def with_chains(objs: Sequence[NetworkObject], inventory: Inventory | None = None) -> Sequence[NetworkObject]:
    """``objs`` with the shared chains their rules need, each before the first object needing it.

    ``inventory``: ``Inventory(objs)`` if known; without an object that
    needs a chain (``needed_chains``) ``objs`` comes back as it is.
    """
    if inventory is not None and not inventory.rules:
        return objs
    extra = chains_needed(objs)
    if not extra:
        return objs
    out: list[NetworkObject] = []
    for i, o in enumerate(objs):
        out.extend(extra.get(i, ()))
        out.append(o)
    return out


def _needs(o: NetworkObject, inv: Inventory) -> list[int]:
    """The indices of the objects ``o`` needs before it (it may be among them)."""
    d: list[int] = []
    ns = getattr(o, "netns", None)
    if ns is not None and ns in inv.ns_index:
        d.append(inv.ns_index[ns])
    if isinstance(o, VethPair):
        if o.master in inv.br_index:
            d.append(inv.br_index[o.master])
        if o.name_netns in inv.ns_index:
            d.append(inv.ns_index[o.name_netns])
    if isinstance(o, Vxlan) and o.master in inv.br_index:
        d.append(inv.br_index[o.master])
    if isinstance(o, Address) and (o.netns, o.dev) in inv.creators:
        d.append(inv.creators[(o.netns, o.dev)])
    if isinstance(o, Route):
        via = o.via
        if type(via) is IPv4Address:  # ``via in network``, in integers
            v = int(via)
            d.extend(j for first, mask, j, _, _ in inv.holders.get(o.netns, ()) if v & mask == first)
        else:
            d.extend(j for _, _, j, net, _ in inv.holders.get(o.netns, ()) if via in net)
    if isinstance(o, NatRule) and o.out_interface and (None, o.out_interface) in inv.creators:
        d.append(inv.creators[(None, o.out_interface)])
    if isinstance(o, (ForwardRule, Isolation)):
        if o.bridge in inv.br_index:
            d.append(inv.br_index[o.bridge])
        d.extend(inv.chain_index.get(o.netns, ()))
    return d


def _in_order(objs: Sequence[NetworkObject], inv: Inventory) -> bool:
    """True when every object comes after all it needs (what :func:`_needs` gives, but faster for the
    classes a network has one of per container)."""
    ns_index, br_index, holders = inv.ns_index, inv.br_index, inv.holders
    for i, o in enumerate(objs):
        t = type(o)
        if t is Namespace:
            continue  # needs nothing
        if t is VethPair:
            ns = o.netns
            if (ns is not None and ns_index.get(ns, -1) > i) or br_index.get(o.master, -1) > i:
                return False
            if o.name_netns is not None and ns_index.get(o.name_netns, -1) > i:
                return False
        elif t is Route and type(o.via) is IPv4Address:
            ns = o.netns
            if ns is not None and ns_index.get(ns, -1) > i:
                return False
            v = int(o.via)
            for first, mask, j, _, _ in holders.get(ns, ()):
                if j > i and v & mask == first:
                    return False
        elif any(j > i for j in _needs(o, inv)):
            return False
    return True


def dependency_order(objs: Sequence[NetworkObject], inventory: Inventory | None = None) -> tuple[NetworkObject, ...]:
    """Stable topological order: each object after what it needs, else as given.

    The order is the smallest-index-first topological sort. When every
    object already comes after all it needs (the usual case), that is
    ``objs`` as given, and no graph is built. ``inventory``:
    ``Inventory(objs)`` if known.
    """
    inv = inventory if inventory is not None else Inventory(objs)
    if _in_order(objs, inv):
        return tuple(objs)
    import heapq

    deps = [set(_needs(o, inv)) for o in objs]
    for i, d in enumerate(deps):
        d.discard(i)
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


def coverage(objs: Sequence[NetworkObject], inventory: Inventory | None = None) -> dict[str, str]:
    """Which step removes each address and route along with itself: ``{its key: the other step's key}``.

    An address goes with the link that carries it, a route in a namespace
    with the namespace. ``inventory``: ``Inventory(objs)`` if known.
    """
    inv = inventory if inventory is not None else Inventory(objs)
    namespaces = {o.name for o in inv.namespaces}
    out: dict[str, str] = {}
    for a in inv.addresses:
        i = inv.creators.get((a.netns, a.dev))
        if i is not None:
            out[a.step_key] = objs[i].step_key
    keys = inv.keys
    for i, r in zip(inv.route_indices, inv.routes):
        if r.netns in namespaces:
            out[keys[i] if keys is not None else r.step_key] = f"netns {r.netns}"
    for o in objs:
        if isinstance(o, Sysctl) and o.netns in namespaces:  # a router's ip_forward goes with its namespace
            out[o.step_key] = f"netns {o.netns}"
        elif isinstance(o, Sysctl) and o.key.startswith("net.ipv4.conf."):  # a link's own setting goes with it
            dev = o.key.split(".")[3]
            i = inv.creators.get((o.netns, dev))
            if i is not None:
                out[o.step_key] = objs[i].step_key
    return out
