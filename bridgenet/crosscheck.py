"""The rules that involve several objects of a network, checked when a :class:`bridgenet.network.Network` is made.

Names and step keys unique, references to namespaces, bridges and links
that the network makes, interface names free where each end is born,
bridge ports within the kernel's limit, addresses unique and inside their
bridge's subnet, host subnets disjoint, gateways on-link. Each check
raises the :class:`bridgenet.errors.ValidationError` of the first object
(in the network's order) that breaks it.

Addresses are compared as integers (``int(IPv4Address)`` is the address; a
network is its first address and prefix length): the same outcome as
comparing the ipaddress objects, without making one for each ``.ip``. The
messages name the objects.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface
from typing import TYPE_CHECKING

from . import rules
from .errors import ValidationError
from .firewall import FilterChain, Isolation
from .model import (Address, Bridge, EtcNetns, ForwardRule, Names, Namespace, NatRule, Route, Sysctl, VethPair,
                    Vxlan)
from .ordering import Inventory
from .crosscheck6 import addresses6, where_named as _where_named
from .ports import PORT_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network

ROOMLESS_GATEWAY = (
    "a bridge's address has a prefix length of 1-30, so that its subnet has room for the gateway and at least "
    "one container besides the network and broadcast addresses (/32 leaves none; /31 leaves one, which the "
    "broadcast address bridgenet sets on the bridge would take)")


def too_many_ports(bridge: str, n: int) -> str:
    return (f"a bridge has at most {rules.MAX_BRIDGE_PORTS} ports ({bridge} would have {n}): the kernel numbers "
            f"ports 1-{rules.MAX_BRIDGE_PORTS} (BR_MAX_PORTS = {rules.BR_MAX_PORTS} in net/bridge/br_private.h, "
            "port 0 unused) and the next `ip link set ... master` fails with \"Exchange full\"; "
            "spread the containers over several bridges")


def _net_key(net: IPv4Network) -> tuple[int, int]:
    """What makes two networks equal (``IPv4Network.__eq__``): first address and prefix length."""
    return int(net.network_address), net.prefixlen


class Checker:
    """Checks ``net``'s objects; :meth:`check` raises on the first broken rule.

    Attributes:
        inventory: the objects looked at once (:class:`bridgenet.ordering.Inventory`),
            set by :meth:`check` once the objects are known to be model objects.
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        self.objs = net.objects
        self.inventory: Inventory | None = None

    def fail(self, obj: object, field: str, rule: str, value: object = None) -> None:
        raise ValidationError(rules.describe(obj) if obj is not None else f"Network {self.net.name}", field, rule, value)

    def check(self) -> None:
        if not isinstance(self.objs, tuple):
            self.fail(None, "objects", "objects is a list (or other iterable) of model objects", self.objs)
        if not self.objs:
            self.fail(None, "objects", "a network has at least one object")
        allowed = (Bridge, Namespace, VethPair, Address, Route, Sysctl, NatRule, ForwardRule, FilterChain, Isolation,
                   EtcNetns, Names, Vxlan, *PORT_CLASSES)
        # one look per class; only a class that is none of them needs a look at each object
        strangers = not all(issubclass(t, allowed) for t in {type(o) for o in self.objs})
        for o in self.objs if strangers else ():
            if not isinstance(o, allowed):
                self.fail(None, "objects",
                          "objects are Bridge, Namespace, VethPair, Address, Route, Sysctl, NatRule, ForwardRule, "
                          "FilterChain, Isolation, EtcNetns, Names, Vxlan or a published port's object "
                          "(bridgenet.ports)", o)
        self.inventory = Inventory(self.objs)
        self.unique_keys()
        self.refs()
        self.names()
        self.bridge_rules()
        self.mtus()
        self.addresses()
        addresses6(self)
        self.routes()

    @property
    def inv(self) -> Inventory:
        assert self.inventory is not None
        return self.inventory

    def bridge_rules(self) -> None:
        """Bridge rules, in one pass over the objects: at most MAX_BRIDGE_PORTS veths on a bridge (the
        kernel's BR_MAX_PORTS); a bridge's subnet has room for a port; host addresses on different links
        are on disjoint subnets.

        Two subnets overlap when one contains the other, so one sweep in
        address order with a stack of the enclosing subnets finds every
        overlap (the stack holds at most 32). (Only objects of exactly these
        classes count here.)
        """
        count: dict[str, int] = {}
        bridges: dict[str, Bridge] = {}
        host: list[tuple[IPv4Interface, str, object]] = []  # (address, link, the object that puts it there)
        for o in self.inv.bridges_and_veths:
            if type(o) is VethPair:
                if o.master is not None:
                    count[o.master] = count.get(o.master, 0) + 1
                if o.netns is None and o.address is not None:  # a bare link's end in the host
                    host.append((o.address, o.peer, o))
            elif type(o) is Bridge:
                bridges[o.name] = o
        for o in self.inv.addresses:
            if type(o) is Address and o.netns is None and type(o.address) is IPv4Interface:
                host.append((o.address, o.dev, o))  # IPv6 host addresses: crosscheck6.py
        for master, n in count.items():
            if n > rules.MAX_BRIDGE_PORTS:
                self.fail(bridges[master], "ports", too_many_ports(master, n), n)
        for address, dev, o in host:
            if dev in bridges and address.network.prefixlen > 30:
                self.fail(o, "address", ROOMLESS_GATEWAY, str(address))
        if len(host) < 2:
            return
        host.sort(key=lambda h: (h[0].network.network_address, h[0].network.prefixlen))
        stack: list[tuple[IPv4Interface, str, object]] = []
        for h in host:
            net = h[0].network
            while stack and not net.subnet_of(stack[-1][0].network):
                stack.pop()
            for outer in stack:
                if outer[1] != h[1]:
                    first, second = sorted((outer, h), key=lambda x: self.objs.index(x[2]))
                    self.fail(second[2], "address", f"the subnets of two links do not overlap: "
                              f"{second[0].network} on {second[1]} overlaps {first[0].network} on "
                              f"{first[1]} ({rules.describe(first[2])}), and the host would route both to one "
                              f"of them", str(second[0]))
            stack.append(h)

    def mtus(self) -> None:
        """A bridge port's MTU is at most its bridge's (a larger one takes frames the bridge's other ports
        cannot carry; the kernel accepts it). Given lower on purpose is allowed: the kernel then lowers the
        bridge's own MTU to its smallest port's, unless the bridge's MTU is set (``Bridge.mtu``)."""
        mtu = {o.name: o.mtu for o in self.inv.bridges if o.mtu is not None}
        if not mtu:
            return
        for o in (*self.inv.veths, *self.inv.vxlans):
            top = mtu.get(o.master)
            if top is not None and o.mtu is not None and o.mtu > top:
                self.fail(o, "mtu", f"a bridge port's MTU is at most its bridge's: {o.master} has {top}", o.mtu)

    def unique_keys(self) -> None:
        keys = self.inv.keys = [o.step_key for o in self.objs]
        if len(set(keys)) == len(keys):
            return
        seen: dict[str, object] = {}
        for o, k in zip(self.objs, keys):
            if k in seen:
                self.fail(o, "objects", f"appears twice in the network ({k!r})")
            seen[k] = o

    def refs(self) -> None:
        namespaces = {o.name for o in self.inv.namespaces}
        bridges = {o.name for o in self.inv.bridges}
        links = self.inv.creators
        for o in self.objs:
            t = type(o)
            if t is Namespace or t is Bridge:  # no netns, and none of the checks below is about them
                continue
            ns = o.netns if t is VethPair or t is Route else getattr(o, "netns", None)
            if ns is not None and ns not in namespaces:
                self.fail(o, "netns", f"netns {ns!r} is not a Namespace of this network", ns)
            ends = getattr(o, "name_netns", None)
            if ends is not None and ends not in namespaces:
                self.fail(o, "name_netns", f"netns {ends!r} is not a Namespace of this network", ends)
            if t is Route:
                continue
            if isinstance(o, (VethPair, Vxlan)) and o.master is not None and o.master not in bridges:
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

        for o in self.inv.bridges_and_veths:
            if getattr(o, "name_netns", None) is None:
                claim(host, o.name, o.name, o, "name")
            else:
                claim(inside, (o.name_netns, o.name), o.name, o, "name")
        for o in self.inv.veths:
            # With move_peers the peer is born in the host (the lesson
            # creates it there and moves it), so it must not clash with a
            # host link either.
            if (self.net.move_peers or o.netns is None) and o.peer in host:
                self.fail(o, "peer", f"interface name {o.peer!r} is already used by "
                          f"{rules.describe(host[o.peer])} (the peer is created in the host first)", o.peer)
            claim(inside, (o.netns, o.peer), o.peer, o, "peer")

    def addresses(self) -> None:
        owners: dict[int, object] = {}
        bridge_addrs: dict[str, list[IPv4Interface]] = {}
        for o in self.inv.links_and_addresses:
            iface = o.address
            if iface is None or type(iface) is IPv6Interface:
                continue  # IPv6: crosscheck6.py
            ip = int(iface)
            other = owners.get(ip)
            if other is not None:
                port, gw = (o, other) if isinstance(o, VethPair) else (other, o)
                if isinstance(port, VethPair) and isinstance(gw, Address) and gw.netns is None \
                        and gw.dev == port.master:
                    self.fail(port, "address", f"an address is not the gateway {gw.address.ip} of bridge "
                              f"{port.master}", str(port.address))
                self.fail(o, "address", f"address {iface.ip} is already used by {_where_named(other)}", str(iface))
            owners[ip] = o
            if isinstance(o, Address) and o.netns is None:
                bridge_addrs.setdefault(o.dev, []).append(o.address)
        bridges = {o.name for o in self.inv.bridges}
        # per bridge: its gateways' networks (as keys) and addresses
        gw_nets = {dev: {_net_key(g.network) for g in gws} for dev, gws in bridge_addrs.items()}
        gw_ips = {dev: {int(g) for g in gws} for dev, gws in bridge_addrs.items()}
        port_net: dict[str, IPv4Network] = {}
        for o in self.inv.veths:
            if not (o.master in bridges and o.address is not None):
                continue
            a = o.address
            net = a.network
            ip = int(a)
            first_ip = int(net.network_address)
            prefixlen = net.prefixlen
            nets = gw_nets.get(o.master)
            if nets:
                if (first_ip, prefixlen) not in nets or ip & int(net.netmask) != first_ip:
                    self.outside_bridge_subnet(o, bridge_addrs[o.master])
            else:
                first = port_net.setdefault(o.master, a.network)
                if a.network != first:
                    self.fail(o, "address", f"addresses on one bridge share a subnet: other ports of {o.master} "
                              f"are on {first}", str(a))
            if prefixlen < 31 and (ip == first_ip or ip == first_ip | (0xFFFFFFFF >> prefixlen)):
                which = "network" if a.ip == net.network_address else "broadcast"
                self.fail(o, "address", f"an address is not the {which} address of its subnet {net}", str(a))
            if ip in gw_ips.get(o.master, ()):
                for g in bridge_addrs[o.master]:
                    if g.ip == a.ip:
                        self.fail(o, "address", f"an address is not the gateway {g.ip} of bridge {o.master}",
                                  str(a))

    def outside_bridge_subnet(self, o: VethPair, gws: list[IPv4Interface]) -> None:
        """Fail for a port whose address is not in its bridge's subnet (``gws``: the bridge's addresses)."""
        a = o.address
        assert a is not None
        nets = [g.network for g in gws]
        same_ip = [n for n in nets if a.ip in n]
        if same_ip:
            self.fail(o, "address", f"an address has the prefix length of its bridge's subnet: "
                      f"{o.master} has {same_ip[0]}, so /{same_ip[0].prefixlen}", str(a))
        self.fail(o, "address", f"an address must lie in its bridge's subnet: {o.master} has "
                  + ", ".join(map(str, nets)), str(a))

    def routes(self) -> None:
        holders = self.inv.holders  # the on-link subnets of each namespace, in integers
        seen: dict[tuple[str | None, str], Route] = {}
        for o in self.inv.routes:
            key = (o.netns, o.dst, type(o.via) is IPv4Address)  # one default route per family
            other = seen.get(key)
            if other is not None:
                self.fail(o, "dst", f"a namespace has one route to {o.dst}: {rules.describe(other)} is "
                          f"already {other.dst} via {other.via}", o.dst)
            seen[key] = o
            on = holders.get(o.netns, ())
            if o.netns is None and not on:
                continue  # a host route may use a link bridgenet does not manage
            via = o.via
            if type(via) is IPv4Address:  # as ``via in a.network`` and ``via == a.ip``, in integers
                v = int(via)
                inside = own = False
                for first, mask, _, _, ip in on:
                    if v & mask == first:
                        inside = True
                    if v == ip:
                        own = True
            else:
                nets = self.onlink(o.netns)
                inside = any(via in a.network for a in nets)
                own = any(via == a.ip for a in nets)
            if not inside:
                where = f"netns {o.netns}" if o.netns else "the host"
                shown = ", ".join(str(a.network) for a in self.onlink(o.netns)) or "no subnet at all"
                self.fail(o, "via", f"a gateway lies inside the on-link subnet of {where} ({shown})", str(o.via))
            if own:
                self.fail(o, "via", "a gateway is not the namespace's own address", str(o.via))

    def onlink(self, netns: str | None) -> list[IPv4Interface]:
        """The addresses on the links of ``netns`` (None: the host) that the network makes, in order."""
        out = [o.address for o in self.inv.links_and_addresses if o.address is not None and o.netns == netns]
        return out + [o.address6 for o in self.inv.veths if o.address6 is not None and o.netns == netns]
