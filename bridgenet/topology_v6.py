"""The IPv6 half of :func:`bridgenet.topology.topology`: bridges' ``address6``, containers' ``address6``,
IPv6 default routes, NAT66, forwarding and the ip6tables filter rules.

What the builder decides (see the README's "IPv6"):

* every IPv6 address is added with ``nodad`` (usable when ``up`` returns;
  the network's addresses are checked unique by bridgenet, ``crosscheck6.py``);
* a container's ``address6`` without prefix length takes its bridge's
  (``address6`` of the bridge); with no bridge address6, it needs one;
* ``default_route6``: None: via the bridge's ``address6`` of its first
  interface that has an IPv6 address on a bridge with one (none when there
  is none: no error, IPv6 is optional); False: none; an address: via it;
* ``masquerade6``: default true when the bridge's ``address6`` is a unique
  local address (fc00::/7, RFC 4193), as Docker NATs IPv6 with ip6tables;
  false otherwise (a global prefix is routed, not NATed);
* IPv6 forwarding (``net.ipv6.conf.all.forwarding=1``) in the host when
  ``forward`` is on and a bridge has an ``address6``, with the accept_ra
  advice (:data:`bridgenet.sysctls.ACCEPT_RA_ADVICE`); inside a router
  (``forward = true``) that has an IPv6 address;
* the ip6tables FORWARD accept rules and isolation (``family=6``) for each
  bridge that carries IPv6, so that an ip6tables FORWARD DROP policy is
  handled as the iptables one is.

Errors are :class:`bridgenet.errors.ValidationError` naming the object, field and rule.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

from . import rules
from .crosscheck6 import ROOMLESS_GATEWAY6
from .errors import ValidationError
from .firewall import Isolation
from .model import Address, ForwardRule, NatRule, NetworkObject, Route, VethPair

ULA = IPv6Network("fc00::/7")
"""Unique local addresses (RFC 4193): not routed on the internet, so NATed by default (``masquerade6``)."""


def gateway6(where: str, text: str) -> IPv6Interface:
    """A bridge's ``address6``: an IPv6 address with prefix length 1-126."""
    gw = rules.to_interface6(text)
    if not isinstance(gw, IPv6Interface):
        if isinstance(rules.to_interface(text), IPv4Interface):
            rule = "address6 is an IPv6 address (address takes the IPv4 one), as in fd00:30::1/64"
        elif "/" not in text:
            rule = "a bridge's address6 needs its prefix length, as in fd00:30::1/64"
        else:
            rule = "a bridge's address6 is an IPv6 address with a prefix length, as in fd00:30::1/64"
        raise ValidationError(where, "address6", rule, text)
    _checked(where, "address6", gw)
    if gw.network.prefixlen > 126:
        raise ValidationError(where, "address6", ROOMLESS_GATEWAY6, str(gw))
    return gw


def _checked(where: str, field: str, value: IPv6Interface) -> None:
    """:func:`bridgenet.rules.interface6`, its error naming ``where``."""
    try:
        rules.interface6(None, _Field(field), value)
    except ValidationError as e:
        raise ValidationError(where, field, e.rule, e.value) from None


def as_written(where: str, field: str, text: str | None) -> None:
    """Refuse an ``address`` (IPv4) or ``address6`` (IPv6) text that is no address of its family, with the
    text as written (before a prefix length is taken from the bridge) and the key that takes the other family."""
    if text is None:
        return
    plain = text.split("/", 1)[0]
    six = field == "address6"
    if six and "%" in plain:
        raise ValidationError(where, field, rules.SCOPED, text)
    try:
        (IPv6Address if six else IPv4Address)(plain)
        return
    except ValueError:
        pass
    try:
        (IPv4Address if six else IPv6Address)(plain.split("%", 1)[0])
        other = True
    except ValueError:
        other = False
    if other:
        rule = ("address6 is an IPv6 address (address takes the IPv4 one), as in fd00:30::10" if six else
                "address is an IPv4 address (address6 takes the IPv6 one), as in 10.20.0.10")
    else:
        rule = ("address6 is an IPv6 address, as in fd00:30::10 or fd00:30::10/64" if six else
                "address is an IPv4 address, as in 10.20.0.10 or 10.20.0.10/24")
    raise ValidationError(where, field, rule, text)


def default_via4(where: str, value: str) -> str:
    """A container's ``default_route`` given as text: an IPv4 address (the IPv6 one is ``default_route6``'s)."""
    if ":" in value:
        raise ValidationError(where, "default_route", "default_route is an IPv4 address (default_route6 takes the "
                              "IPv6 one), as in 10.20.0.1", value)
    return value


def address6(where: str, text: str | None, gw6: IPv6Interface | None, bridge: str | None) -> str | None:
    """A container interface's ``address6`` with its prefix length (from ``gw6`` when not given)."""
    as_written(where, "address6", text)
    if text is None or "/" in text:
        return text
    if gw6 is None:
        raise ValidationError(where, "address6", (f"bridge {bridge} has no address6" if bridge else
                                                  "this end is on no bridge") + ", so an IPv6 address needs its "
                              "prefix length, as in fd00:30::10/64", text)
    return f"{text}/{gw6.network.prefixlen}"


def reachable(where: str, bridge: str, gw: IPv4Interface | None, gw6: IPv6Interface | None,
              address: object, address6: object) -> None:
    """A container on a bridge with an address has an address in at least one of the bridge's families
    (else neither default route has a gateway on-link: the container is cut off from the host)."""
    if (gw is None and gw6 is None) or (gw is not None and address is not None) or \
            (gw6 is not None and address6 is not None):
        return
    has = " and ".join(f"{k} {g}" for k, g in (("address", gw), ("address6", gw6)) if g is not None)
    lacks = "address6" if gw6 is None else "address"
    field, value = ("address6", address6) if address6 is not None else ("address", address)
    raise ValidationError(where, field, f"a container on a bridge with an address has an address in at least one "
                          f"of the bridge's families: {bridge} has the {has} but no {lacks}, so this container would "
                          f"have no gateway (give it an {'address' if gw is not None else 'address6'} in "
                          f"{(gw or gw6).network}, or give {bridge} an {lacks})", str(value) if value else None)


def default_via6(where: str, value: str | bool | None, gateway: IPv6Address | None) -> str | IPv6Address | None:
    """The IPv6 default route's gateway of a container (see the module docstring), or None for none."""
    if value is False:
        return None
    if isinstance(value, str):
        if ":" not in value:
            raise ValidationError(where, "default_route6", "default_route6 is an IPv6 address, as in fd00:30::1 "
                                  "(default_route takes the IPv4 one)", value)
        return value
    return gateway


def disjoint(gateways: dict[str, IPv4Interface | IPv6Interface | None], veths: list[VethPair], field: str,
             what: str) -> None:
    """Two bridges' subnets of one family do not overlap (a namespace on both, or the host, could not tell
    them apart): each bridge's subnet is its address's (``gateways``, in the bridges' order), or that of
    its first port with one (``field``: ``"address"`` or ``"address6"``; ``what`` names them in the error)."""
    subnet = {n: gw.network for n, gw in gateways.items() if gw is not None}
    source: dict[str, VethPair] = {}  # a bridge without an address: the port its subnet is taken from
    for v in veths:
        a = getattr(v, field)
        if v.master is not None and a is not None and v.master not in subnet:
            subnet[v.master], source[v.master] = a.network, v
    seen: list[tuple[str, object]] = []
    for name in gateways:
        net = subnet.get(name)
        if net is None:
            continue
        for other, onet in seen:
            if net.overlaps(onet):
                v = source.get(name)
                if v is not None and v.netns is not None:
                    raise ValidationError(f"Container {v.netns}", field, f"two bridges' {what} do not overlap: this "
                                          f"{field} puts {name} (which has no {field} of its own) on {net}, and "
                                          f"{other} is on {onet}", str(getattr(v, field)))
                raise ValidationError(f"BridgeSpec {name}", field, f"two bridges' {what} do not overlap: "
                                      f"{name} is on {net}, {other} on {onet}", str(net))
        seen.append((name, net))


def firewall6(names: list[str], gateways6: dict[str, IPv6Interface | None], veths: list[VethPair], *,
              isolate: bool, accept_forward: bool) -> list[NetworkObject]:
    """The ip6tables isolation and FORWARD accept rules of the bridges that carry IPv6."""
    carrying = {v.master for v in veths if v.address6 is not None} | {n for n, g in gateways6.items() if g}
    names6 = [n for n in names if n in carrying]
    out: list[NetworkObject] = []
    if isolate:
        out.extend(Isolation(n, siblings=[o for o in names6 if o != n and gateways6.get(o) is not None]
                             if gateways6.get(n) is not None else (), family=6) for n in names6)
    if accept_forward:
        out.extend(ForwardRule(n, family=6) for n in names6)
    return out


def nat6(name: str, gw6: IPv6Interface | None, masquerade6: bool | None) -> NatRule | None:
    """NAT66 for a bridge's IPv6 subnet (``ip6tables -t nat ... -j MASQUERADE``), or None."""
    wanted = masquerade6 if masquerade6 is not None else (gw6 is not None and gw6.network.subnet_of(ULA))
    if not wanted:
        return None
    if gw6 is None:
        raise ValidationError(f"BridgeSpec {name}", "masquerade6", "NAT66 needs the bridge's address6 (its subnet is "
                              "what is rewritten): give it an address6, or masquerade6 = false", True)
    return NatRule(gw6.network, not_out_interface=name)


def route_target(where: str, to: str, via: str = "") -> str:
    """A route's ``to``: ``"default"`` or a subnet (IPv4 or IPv6, no host bits), as text.

    ``0.0.0.0/0`` and ``::/0`` are ``"default"`` (ip-route(8): "default" is 0/0 of the route's family), so
    that one next to the automatic default route is caught as the same route twice, not at ``up`` ("File exists").
    """
    if to == "default":
        return to
    if "%" in to:
        raise ValidationError(where, "routes", "a route's 'to' is a subnet, with no scope id (the '%' part)", to)
    try:
        net = IPv6Network(to) if ":" in to else _ipv4_network(to)
        return "default" if net.prefixlen == 0 and (":" in via) == (net.version == 6) else str(net)
    except ValueError:
        raise ValidationError(where, "routes", "a route's 'to' is 'default' or an IPv4 or IPv6 subnet with no host "
                              "bits set, as in 10.20.0.0/24 or fd00:40::/64", to) from None


def default_clash(statics: list[Route], automatic: list[Route]) -> None:
    """Refuse a container's route to ``default`` (``0.0.0.0/0``, ``::/0``) next to its automatic default route
    of the same family (``ip route add`` would fail with "File exists" at ``up``), naming ``routes[i]``."""
    index: dict = {}
    for r in statics:
        i = index[r.netns] = index.get(r.netns, -1) + 1
        for a in automatic:
            if r.dst == "default" and r.netns is not None and a.netns == r.netns and a.via.version == r.via.version:
                key = "default_route6" if r.via.version == 6 else "default_route"
                raise ValidationError(f"Container {r.netns}", f"routes[{i}]", "a route to default ("
                                      f"{'::/0' if r.via.version == 6 else '0.0.0.0/0'}) is the container's default "
                                      f"route, which it already gets via {a.via} ({key}): give {key} = "
                                      f"\"{r.via}\" instead, or {key} = false", str(r.via))


def _ipv4_network(text: str):  # noqa: ANN202
    from ipaddress import IPv4Network

    return IPv4Network(text)


def port_context(objs: list[NetworkObject], gateways: dict[str, IPv4Interface | None],
                 gateways6: dict[str, IPv6Interface | None]) -> dict:
    """:func:`bridgenet.ports.port_objects`'s ``hosts`` (per bridge, the families the host has an address of
    on it) and ``owners`` (each container address: its namespace), for ``portreach.py``'s checks."""
    hosts = {n: (4,) * (gateways[n] is not None) + (6,) * (gateways6.get(n) is not None) for n in gateways}
    owners: dict = {}
    for o in objs:
        if isinstance(o, VethPair) and o.netns is not None:
            owners.update((a.ip, o.netns) for a in (o.address, o.address6) if a is not None)
        elif isinstance(o, Address) and o.netns is not None:
            owners[o.address.ip] = o.netns
    return {"hosts": hosts, "owners": owners}


def router_advice6(objs: list[NetworkObject], routers6: list[str]) -> list[str]:
    """Warnings: an IPv6 route whose ``via`` is an address of a namespace that does not forward IPv6."""
    owner: dict[IPv6Address, str] = {}
    for o in objs:
        if isinstance(o, VethPair) and o.address6 is not None and o.netns is not None:
            owner[o.address6.ip] = o.netns
        elif isinstance(o, Address) and o.netns is not None and isinstance(o.address, IPv6Interface):
            owner[o.address.ip] = o.netns
    out = []
    for o in objs:
        if isinstance(o, Route) and isinstance(o.via, IPv6Address):
            ns = owner.get(o.via)
            if ns is not None and ns not in routers6 and ns != o.netns:
                out.append(f"route {o.dst} via {o.via} in {o.netns or 'the host'}: {o.via} is netns {ns}, which "
                           "does not forward IPv6 (give it forward = true: net.ipv6.conf.all.forwarding=1 inside "
                           "it; it is 0 in a new namespace), so what this route sends there is dropped")
    return out


def router_advice(objs: list[NetworkObject], routers: list[str]) -> tuple[str, ...]:
    """Warnings: a route whose ``via`` is an address of a namespace without ``forward = true`` (that
    namespace drops what it is asked to forward: IPv4 forwarding is off in a new namespace)."""
    owner: dict = {}
    for o in objs:
        if isinstance(o, VethPair) and o.address is not None and o.netns is not None:
            owner[o.address.ip] = o.netns
        elif isinstance(o, Address) and o.netns is not None:
            owner[o.address.ip] = o.netns
    out = []
    for o in objs:
        if isinstance(o, Route) and not isinstance(o.via, IPv6Address):
            ns = owner.get(o.via)
            if ns is not None and ns not in routers and ns != o.netns:
                out.append(f"route {o.dst} via {o.via} in {o.netns or 'the host'}: {o.via} is netns {ns}, which "
                           "does not forward (give it forward = true: net.ipv4.ip_forward=1 inside it; it is 0 in "
                           "a new namespace), so what this route sends there is dropped")
    return tuple(out)


class _Field:
    """Stands for the attrs attribute a validator names (its ``name``)."""

    def __init__(self, name: str) -> None:
        self.name = name
