"""The rules that involve several IPv6 addresses of a network (the IPv6 half of ``crosscheck.py``).

Addresses unique within the network (bridgenet adds them with ``nodad``, so
it does duplicate detection itself), a port's address inside its bridge's
IPv6 subnet (the host's IPv6 address on the bridge) and not its gateway,
the ports of a bridge without one on one subnet, the host's IPv6 subnets on
different links disjoint, a bridge's subnet with room for a container.
"""

from __future__ import annotations

from ipaddress import IPv6Interface
from typing import TYPE_CHECKING

from . import rules
from .model import Address, VethPair

if TYPE_CHECKING:  # pragma: no cover
    from .crosscheck import Checker

ROOMLESS_GATEWAY6 = ("a bridge's IPv6 address has a prefix length of 1-126, so that its subnet has room for the "
                     "gateway and at least one container besides the subnet-router anycast address")


def where_named(o: object) -> str:
    """``o`` described, with its namespace for a veth pair (for "already used by ..." messages)."""
    ns = getattr(o, "netns", None)
    return f"{rules.describe(o)} in netns {ns}" if isinstance(o, VethPair) and ns else rules.describe(o)


def addresses6(ch: Checker) -> None:
    """Check the IPv6 addresses of ``ch``'s network (raises through ``ch.fail``)."""
    inv = ch.inv
    owners: dict[int, object] = {}
    gateways: dict[str, list[IPv6Interface]] = {}
    host: list[tuple[IPv6Interface, str, object]] = []  # (address, link, the object putting it in the host)
    bridges = {o.name for o in inv.bridges}
    ports = [o for o in inv.veths if o.address6 is not None]
    if not ports and not any(type(o.address) is IPv6Interface for o in inv.addresses):
        return  # an IPv4-only network: nothing to look at
    for o in inv.links_and_addresses:
        a = o.address6 if isinstance(o, VethPair) else o.address
        if type(a) is not IPv6Interface:
            continue
        other = owners.get(int(a))
        if other is not None:
            port, gw = (o, other) if isinstance(o, VethPair) else (other, o)
            if isinstance(port, VethPair) and isinstance(gw, Address) and gw.netns is None and gw.dev == port.master:
                ch.fail(port, "address6", f"an address is not the gateway {a.ip} of bridge {port.master}", str(a))
            ch.fail(o, "address6" if isinstance(o, VethPair) else "address",
                    f"address {a.ip} is already used by {where_named(other)}", str(a))
        owners[int(a)] = o
        if isinstance(o, VethPair) and o.netns is None:  # a bare link's end in the host
            host.append((a, o.peer, o))
        if isinstance(o, Address) and o.netns is None:
            host.append((a, o.dev, o))
            if o.dev in bridges:
                if a.network.prefixlen > 126:
                    ch.fail(o, "address", ROOMLESS_GATEWAY6, str(a))
                gateways.setdefault(o.dev, []).append(a)
    for i, (a, dev, o) in enumerate(host):
        for fa, fdev, first in host[:i]:
            if fdev != dev and fa.network.overlaps(a.network):
                ch.fail(o, "address6" if isinstance(o, VethPair) else "address",
                        f"the subnets of two links do not overlap: {a.network} on {dev} overlaps {fa.network} on "
                        f"{fdev} ({rules.describe(first)}), and the host would route both to one of them", str(a))
    port_net: dict[str, object] = {}
    for o in ports:
        if o.master not in bridges:
            continue
        a = o.address6
        gws = gateways.get(o.master)
        if gws:
            if not any(a.network == g.network for g in gws):
                same = [g.network for g in gws if a.ip in g.network]
                if same:
                    ch.fail(o, "address6", f"an address has the prefix length of its bridge's subnet: {o.master} "
                            f"has {same[0]}, so /{same[0].prefixlen}", str(a))
                ch.fail(o, "address6", f"an address must lie in its bridge's IPv6 subnet: {o.master} has "
                        + ", ".join(str(g.network) for g in gws), str(a))
            for g in gws:
                if g.ip == a.ip:
                    ch.fail(o, "address6", f"an address is not the gateway {g.ip} of bridge {o.master}", str(a))
        else:
            first = port_net.setdefault(o.master, a.network)
            if a.network != first:
                ch.fail(o, "address6", f"addresses on one bridge share a subnet: other ports of {o.master} are on "
                        f"{first}", str(a))
        if a.ip == a.network.network_address and a.network.prefixlen < 127:
            ch.fail(o, "address6", f"an IPv6 address is not the subnet-router anycast address of {a.network} "
                    "(RFC 4291 2.6.1)", str(a))
