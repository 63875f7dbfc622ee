"""Beyond one bridge: several bridges, routers, bare veth links, routes and MTU (:func:`topology`).

The builder reads like a network file (``config.py``)::

    topology("campus",
             bridges=[BridgeSpec("lan0", address="10.10.0.1/24"), BridgeSpec("lan1", mtu=1400)],
             containers=[
                 Node("a", address="10.10.0.10", routes=[RouteSpec("10.20.0.0/24", "10.10.0.254")]),
                 Node("r1", forward=True, default_route=False, interfaces=[
                     Interface("lan0", "10.10.0.254/24"), Interface("lan1", "10.20.0.1/24")]),
                 Node("b", bridge="lan1", address="10.20.0.10/24", default_route="10.20.0.1"),
             ],
             links=[LinkSpec((End("b", "to-c", "10.99.0.1/30"), End("c", "to-b", "10.99.0.2/30")), mtu=1400)],
             routes=[RouteSpec("10.20.0.0/24", "10.10.0.254")])

It makes the same model objects the lesson's shape does (:func:`bridgenet.shape.bridge_network`),
in the same order, so a network of one bridge built either way is the same
:class:`~bridgenet.network.Network`: the bridges; for each container its
namespace and one veth pair per interface; for each link the namespaces
not made yet and its veth pair; the bridges' addresses and the link ends'
addresses; default routes, then static routes (containers', then the
host's); ``ip_forward`` inside each router, then in the host; isolation,
FORWARD accept rules and MASQUERADE per bridge.

What is set where (MTU): a bridge's ``mtu`` is set on the bridge and is the
default of every veth plugged into it (both ends); an interface's or a
link's ``mtu`` is set on both ends of its veth. A port may be given a lower
MTU than its bridge on purpose, never a higher one. Unset, the kernel's
default (1500) applies.

Every rule is checked before any command runs; a broken one raises
:class:`bridgenet.errors.ValidationError` naming the object, the field and
the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import attrs

from . import rules
from .crosscheck import ROOMLESS_GATEWAY
from .errors import ValidationError
from .firewall import Isolation
from .gcpause import paused
from . import topology_v6 as v6
from .model import (Address, Bridge, ForwardRule, Namespace, NatRule, NetworkObject, Route, VethPair, ip6_forward,
                    ip_forward)
from .network import Network
from .sysctls import ACCEPT_RA_ADVICE
from .names import check_dns, names_objects
from .ports import Publish, port_objects
from .specfields import _opt_text, _seq, _to_tuple, _tuple_of


@attrs.frozen
class BridgeSpec:
    """A bridge of a :func:`topology` (the file's ``[[bridges]]``).

    Attributes:
        name: the bridge, e.g. ``"lan0"``.
        address: the host's address on it with prefix length, e.g.
            ``"10.10.0.1/24"``: the default gateway of its containers; None:
            a plain switch, the host is not on it.
        mtu: bytes (68-65535), set on the bridge and, by default, on every
            veth plugged into it; None: the kernel's default.
        masquerade: MASQUERADE what leaves its subnet through another link;
            None: when it has an address.
        address6: the host's IPv6 address on it with prefix length, e.g.
            ``"fd00:30::1/64"`` (added with ``nodad``), the IPv6 default
            gateway of its containers; None: no IPv6 on the host's side.
        masquerade6: NAT66 (``ip6tables -t nat ... -j MASQUERADE``) for its
            IPv6 subnet; None: when ``address6`` is a unique local address
            (fc00::/7), as Docker does.
    """

    name: str = attrs.field(validator=rules.ifname)
    address: str | None = attrs.field(default=None, validator=_opt_text)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu)
    masquerade: bool | None = attrs.field(default=None, validator=rules.optional_boolean)
    address6: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)
    masquerade6: bool | None = attrs.field(default=None, validator=rules.optional_boolean, kw_only=True)


@attrs.frozen
class RouteSpec:
    """A static route: ``to`` (a subnet, or ``"default"``) via the neighbour ``via`` (ip-route(8)); IPv6
    when ``via`` is an IPv6 address (``to`` then an IPv6 subnet or ``"default"``)."""

    to: str = attrs.field(validator=rules.text)
    via: str = attrs.field(validator=rules.text)


@attrs.frozen
class Interface:
    """One link of a container into a bridge (the file's ``[[containers.interfaces]]``).

    Attributes:
        bridge: the bridge; None: the network's only bridge.
        address: e.g. ``"10.10.0.254/24"``, or without prefix length to take
            the bridge's; None: no address (required when the bridge has none).
        peer: the name inside the namespace; default ``eth0``, ``eth1``, ... by position.
        veth: the host end; default ``"v-NETNS"`` for the first interface and
            ``"v-NETNS-K"`` for the K-th after it (cut to fit 15 bytes).
        mtu: both ends' MTU; default: the bridge's.
        address6: its IPv6 address, e.g. ``"fd00:30::10"`` (prefix length
            from the bridge's ``address6``) or with prefix length; None: none.
    """

    bridge: str | None = attrs.field(default=None, validator=_opt_text)
    address: str | None = attrs.field(default=None, validator=_opt_text)
    peer: str | None = attrs.field(default=None, validator=_opt_text)
    veth: str | None = attrs.field(default=None, validator=_opt_text)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu)
    address6: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)


@attrs.frozen
class Node:
    """A container of a :func:`topology` (the file's ``[[containers]]``): a namespace and its links.

    Attributes:
        netns: the namespace.
        bridge, address, veth, peer, mtu: its one interface (see
            :class:`Interface`), when ``interfaces`` is empty.
        interfaces: several interfaces instead.
        routes: static routes inside the namespace.
        forward: ``net.ipv4.ip_forward=1`` inside it: a router (and
            ``net.ipv6.conf.all.forwarding=1`` when it has an IPv6 address).
        default_route: None: via the address of the bridge of its first
            interface with an IPv4 address whose bridge has one (required to
            be given or False when none has, unless the container is
            IPv6-only); False: none; an address: via it.
        address6: its one interface's IPv6 address (see :class:`Interface`).
        default_route6: None: via the ``address6`` of the bridge of its
            first interface with an IPv6 address whose bridge has one (else
            none); False: none; an IPv6 address: via it.
        ports: published ports, Docker's ``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]``
            (``"8080:80"``, ``"127.0.0.1:8081:80"``, ``"5353:53/udp"``;
            :mod:`bridgenet.ports`), sent to the address of its first
            interface that has one.
    """

    netns: str = attrs.field(validator=rules.netns_name)
    address: str | None = attrs.field(default=None, validator=_opt_text)
    bridge: str | None = attrs.field(default=None, validator=_opt_text)
    veth: str | None = attrs.field(default=None, validator=_opt_text)
    peer: str | None = attrs.field(default=None, validator=_opt_text)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu)
    interfaces: tuple[Interface, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=[_seq, _tuple_of(Interface, "an Interface")])
    routes: tuple[RouteSpec, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=[_seq, _tuple_of(RouteSpec, "a RouteSpec")])
    forward: bool = attrs.field(default=False, validator=rules.boolean)
    default_route: str | bool | None = attrs.field(default=None)
    address6: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)
    default_route6: str | bool | None = attrs.field(default=None, kw_only=True)

    @default_route6.validator
    def _check_default6(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and value is not False and not isinstance(value, str):
            raise ValidationError(rules.describe(self), "default_route6", "false, or the IPv6 gateway's address as "
                                  "text (default: via its bridge's address6)", value)
    ports: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_seq)

    @default_route.validator
    def _check_default(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and value is not False and not isinstance(value, str):
            raise ValidationError(rules.describe(self), "default_route",
                                  "false, or the gateway's address as text (default: via its bridge's address)", value)

    def links(self) -> tuple[Interface, ...]:
        """Its interfaces: ``interfaces``, or the one its own fields describe."""
        if self.interfaces:
            for key in ("address", "bridge", "veth", "peer", "mtu", "address6"):
                if getattr(self, key) is not None:
                    raise ValidationError(rules.describe(self), key,
                                          "give a container either interfaces or bridge/address/veth/peer/mtu, "
                                          "not both", getattr(self, key))
            return self.interfaces
        return (Interface(self.bridge, self.address, self.peer, self.veth, self.mtu, address6=self.address6),)


@attrs.frozen
class End:
    """One end of a :class:`LinkSpec`: its name, its namespace (None: the host), its address (with prefix),
    its IPv6 address (``address6``, with prefix)."""

    netns: str | None = attrs.field(validator=rules.optional_netns_name)
    name: str = attrs.field(validator=rules.ifname)
    address: str | None = attrs.field(default=None, validator=_opt_text)
    address6: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)


@attrs.frozen
class LinkSpec:
    """A veth straight between two namespaces (or a namespace and the host), no bridge (``[[links]]``)."""

    ends: tuple[End, ...] = attrs.field(converter=_to_tuple)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu)

    @ends.validator
    def _check_ends(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(e, End) for e in value):
            raise ValidationError(rules.describe(self), "ends", "a link has exactly two ends (End values)", value)
        if value[0].netns is None and value[1].netns is None:
            raise ValidationError(rules.describe(self), "ends",
                                  "at least one end of a link is in a namespace (netns = ...)", value)


def topology(name: str, *, bridges: Sequence[BridgeSpec] = (), containers: Sequence[Node] = (),
             links: Sequence[LinkSpec] = (), routes: Sequence[RouteSpec] = (), forward: bool = True,
             default_routes: bool = True, tag: bool = True, accept_forward: bool | None = None,
             isolate: bool | None = None, source: str | None = None, names: bool = True,
             dns: Sequence[str] = (), bridges_only: bool = False) -> Network:
    """A network of several bridges, routers, bare links and routes (see the module docstring).

    Args:
        name: the network's name.
        bridges, containers, links: what it is made of (:class:`BridgeSpec`,
            :class:`Node`, :class:`LinkSpec`); at least one container or link.
        routes: the host's own static routes.
        forward: ``net.ipv4.ip_forward=1`` in the host (the lesson's step).
        default_routes: give containers their default routes (see :class:`Node`).
        tag, accept_forward, isolate, source: as for :func:`bridgenet.shape.bridge_network`;
            isolation leaves the network's own bridges reachable from each
            other through the host (``Isolation.siblings``).
        names: write ``/etc/netns/NETNS/hosts`` and ``resolv.conf`` for each
            namespace (``names.py``): the containers resolve each other by name.
        dns: name servers for those ``resolv.conf`` (at most 3 addresses);
            none: unknown names fail at once.
        bridges_only: allow a network of bridges alone, no container and
            no link (one host's part of a multi-host network, ``stretch.py``).

    Raises:
        ValidationError: a bad value or a broken rule, naming the object,
            field and rule (also: a name reserved for the lesson).
    """
    where = f"topology {name}" if isinstance(name, str) else "topology"
    if not isinstance(name, str):
        raise ValidationError(where, "name", "a network name is a string", name)
    if name in rules.RESERVED_NETWORK_NAMES:
        raise ValidationError(where, "name", rules.RESERVED_NETWORK_NAMES[name], name)
    dns = check_dns(where, dns)
    for key, value in (("forward", forward), ("default_routes", default_routes), ("tag", tag), ("names", names)):
        if not isinstance(value, bool):
            raise ValidationError(where, key, "true or false (a bool)", value)
    for key, value in (("accept_forward", accept_forward), ("isolate", isolate)):
        if value is not None and not isinstance(value, bool):
            raise ValidationError(where, key, "true, false or None (the default: as tag)", value)
    with paused():
        return _Builder(where, name, tag=tag, source=source).build(
            _listed(where, "bridges", bridges, BridgeSpec), _listed(where, "containers", containers, Node),
            _listed(where, "links", links, LinkSpec), _listed(where, "routes", routes, RouteSpec),
            forward=forward, default_routes=default_routes,
            accept_forward=tag if accept_forward is None else accept_forward,
            isolate=tag if isolate is None else isolate, dns=dns if names else None,
            bridges_only=bridges_only is True and bool(bridges))


def _listed(where: str, key: str, value: object, cls: type) -> list:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValidationError(where, key, f"{key} is a list of {cls.__name__}", value)
    out = list(value)
    for i, item in enumerate(out):
        if not isinstance(item, cls):
            raise ValidationError(where, f"{key}[{i}]", f"each is a {cls.__name__}", item)
    return out


def _veth_name(netns: str, k: int) -> str:
    """Default host end of a container's K-th interface: ``v-NETNS``, then ``v-NETNS-1``, ... (15 bytes)."""
    if k == 0:
        return rules.cut_bytes(f"v-{netns}")
    suffix = f"-{k}"
    return rules.cut_bytes(f"v-{netns}", rules.IFNAMSIZ - 1 - len(suffix)) + suffix


class _Builder:
    def __init__(self, where: str, name: str, *, tag: bool, source: str | None) -> None:
        self.where, self.name, self.tag, self.source = where, name, tag, source

    def fail(self, obj: str, field: str, rule: str, value: object = None) -> None:
        raise ValidationError(obj, field, rule, value)

    def build(self, bridges: list[BridgeSpec], nodes: list[Node], links: list[LinkSpec], host_routes: list[RouteSpec],
              *, forward: bool, default_routes: bool, accept_forward: bool, isolate: bool,
              dns: tuple[str, ...] | None = (), bridges_only: bool = False) -> Network:
        if not nodes and not links and not bridges_only:
            self.fail(self.where, "containers", "a network has at least one container or link")
        gateways: dict[str, IPv4Interface | None] = {}
        gateways6: dict[str, IPv6Interface | None] = {}
        by_name: dict[str, BridgeSpec] = {}
        for b in bridges:
            if b.name in by_name:
                self.fail(f"BridgeSpec {b.name}", "name", "each bridge appears once", b.name)
            by_name[b.name] = b
            gateways[b.name] = self.gateway(b) if b.address is not None else None
            gateways6[b.name] = v6.gateway6(f"BridgeSpec {b.name}", b.address6) if b.address6 is not None else None
        objs: list[NetworkObject] = [Bridge(b.name, mtu=b.mtu) for b in bridges]
        made: set[str] = set()
        derived: dict[str, str] = {}
        defaults: list[Route] = []
        defaults6: list[Route] = []
        statics: list[Route] = []
        routers: list[str] = []
        routers6: list[str] = []
        publishes: list[Publish] = []
        for node in nodes:
            here = f"Container {node.netns}"
            if node.netns in made:
                self.fail(here, "netns", "appears twice in the containers of this network (each container has "
                          "its own namespace)", node.netns)
            made.add(node.netns)
            objs.append(Namespace(node.netns))
            first_gateway: IPv4Address | None = None
            first_gateway6: IPv6Address | None = None
            has4 = has6 = False
            target: VethPair | None = None
            target6: VethPair | None = None  # the first interfaces with an address, and with an address6
            for k, itf in enumerate(node.links()):
                where = here if not node.interfaces else f"{here} interfaces[{k}]"
                bridge = self.bridge_of(where, itf.bridge, by_name)
                gw, gw6 = gateways[bridge], gateways6[bridge]
                if itf.address6 is not None or (gw is None and gw6 is not None):
                    if itf.address is None and itf.address6 is None:
                        self.fail(where, "address6", f"a container on {bridge} (which has the address6 {gw6}) has "
                                  "an address in at least one of its subnets (address or address6)", None)
                    address = self.address(where, itf.address, gw, bridge) if itf.address is not None else None
                else:
                    address = self.address(where, itf.address, gw, bridge)
                address6 = v6.address6(where, itf.address6, gw6, bridge)
                v6.reachable(where, bridge, gw, gw6, address, address6)
                has4, has6 = has4 or address is not None, has6 or address6 is not None
                if gw is not None and first_gateway is None and address is not None:
                    first_gateway = gw.ip
                if gw6 is not None and first_gateway6 is None and address6 is not None:
                    first_gateway6 = gw6.ip
                veth = itf.veth if itf.veth is not None else _veth_name(node.netns, k)
                if itf.veth is None and veth in derived:
                    self.fail(where, "veth", f"the host end's default name is {veth!r}, the same as for "
                              f"{derived[veth]}; give one of them its own veth name", veth)
                derived.setdefault(veth, where)
                mtu = itf.mtu if itf.mtu is not None else by_name[bridge].mtu
                objs.append(VethPair(veth, itf.peer if itf.peer is not None else f"eth{k}", netns=node.netns,
                                     master=bridge, address=address, mtu=mtu, address6=address6))
                if target is None and objs[-1].address is not None:
                    target = objs[-1]
                if target6 is None and objs[-1].address6 is not None:
                    target6 = objs[-1]
            if node.ports:
                publishes.append(Publish(node.netns, node.ports, target.address if target else None,
                                         target.master if target else None, target.name if target else None,
                                         *((target6.address6, target6.master, target6.name) if target6 else ())))
            if default_routes:
                via = self.default_via(here, node, first_gateway, ipv6_only=has6 and not has4)
                if via is not None:
                    defaults.append(Route(node.netns, via))
                via6 = v6.default_via6(here, node.default_route6, first_gateway6)
                if via6 is not None:
                    defaults6.append(Route(node.netns, via6))
            statics.extend(self.route(here, node.netns, r) for r in node.routes)
            if node.forward:
                routers.append(node.netns)
                if has6:
                    routers6.append(node.netns)
        v6.default_clash(statics, defaults + defaults6)
        v6.disjoint(gateways, [o for o in objs if isinstance(o, VethPair)], "address", "subnets")
        v6.disjoint(gateways6, [o for o in objs if isinstance(o, VethPair)], "address6", "IPv6 subnets")
        end_addresses: list[Address] = []
        for i, link in enumerate(links):
            here = f"link {i}"
            a, b = link.ends
            for end in (a, b):
                if end.netns is not None and end.netns not in made:
                    made.add(end.netns)
                    objs.append(Namespace(end.netns))
            if a.netns is None and b.netns is not None:
                a, b = b, a  # the end in the host is the veth's peer: VethPair keeps its name end in a namespace
            peer_address = self.link_address(here, b)
            objs.append(VethPair(a.name, b.name, netns=b.netns, address=peer_address, mtu=link.mtu,
                                 name_netns=a.netns, address6=v6.address6(f"{here} end {b.name}", b.address6, None,
                                                                         None)))
            name_address = self.link_address(here, a)
            if name_address is not None:
                end_addresses.append(Address(a.name, name_address, a.netns, brd=False))
            name_address6 = v6.address6(f"{here} end {a.name}", a.address6, None, None)
            if name_address6 is not None:
                end_addresses.append(Address(a.name, name_address6, a.netns))
            for end in (a, b):
                if end.address6 is not None and end.netns is not None and end.netns in routers \
                        and end.netns not in routers6:
                    routers6.append(end.netns)
        objs.extend(Address(name, gw) for name, gw in gateways.items() if gw is not None)
        objs.extend(Address(name, gw6) for name, gw6 in gateways6.items() if gw6 is not None)
        objs.extend(end_addresses)
        objs.extend(defaults)
        objs.extend(defaults6)
        objs.extend(statics)
        objs.extend(self.route(self.where, None, r) for r in host_routes)
        objs.extend(ip_forward(ns) for ns in routers)
        objs.extend(ip6_forward(ns) for ns in routers6)
        advice = list(v6.router_advice(objs, routers)) + v6.router_advice6(objs, routers6)
        if forward:
            objs.append(ip_forward())
            if any(gw6 is not None for gw6 in gateways6.values()):
                objs.append(ip6_forward())
                advice.append(ACCEPT_RA_ADVICE)
        names = [b.name for b in bridges]
        if isolate:
            objs.extend(Isolation(n, siblings=[o for o in names if o != n and gateways[o] is not None]
                                  if gateways[n] is not None else ()) for n in names)
        if accept_forward:
            objs.extend(ForwardRule(n) for n in names)
        objs.extend(v6.firewall6(names, gateways6, [o for o in objs if isinstance(o, VethPair)], isolate=isolate,
                                 accept_forward=accept_forward))
        for b in bridges:
            gw = gateways[b.name]
            masquerade = b.masquerade if b.masquerade is not None else gw is not None
            if masquerade:
                if gw is None:
                    self.fail(f"BridgeSpec {b.name}", "masquerade", "MASQUERADE needs the bridge's address (its "
                              "subnet is what is rewritten): give it an address, or masquerade = false", True)
                objs.append(NatRule(gw.network, not_out_interface=b.name))
        objs.extend(n for n in (v6.nat6(b.name, gateways6[b.name], b.masquerade6) for b in bridges) if n is not None)
        objs.extend(port_objects(publishes, **v6.port_context(objs, gateways, gateways6)))
        if dns is not None:  # names on
            objs.extend(names_objects(self.name, [o.name for o in objs if isinstance(o, Namespace)], objs, dns))
        return Network(self.name, objs, tag=self.tag, source=self.source, advice=advice)

    def gateway(self, b: BridgeSpec) -> IPv4Interface:
        here = f"BridgeSpec {b.name}"
        gw = rules.to_interface(b.address)
        if not isinstance(gw, IPv4Interface):
            rule = ("a bridge's address needs its prefix length, as in 10.10.0.1/24" if "/" not in str(b.address)
                    else "a bridge's address is an IPv4 address with a prefix length, as in 10.10.0.1/24")
            self.fail(here, "address", rule, b.address)
        if gw.network.prefixlen == 0 or gw.network.prefixlen > 30:
            self.fail(here, "address", ROOMLESS_GATEWAY, str(gw))
        return gw

    def bridge_of(self, where: str, bridge: str | None, by_name: dict[str, BridgeSpec]) -> str:
        if bridge is None:
            if len(by_name) != 1:
                self.fail(where, "bridge", "a container names its bridge when the network has "
                          + ("none" if not by_name else f"several ({', '.join(by_name)})"), None)
            return next(iter(by_name))
        if bridge not in by_name:
            self.fail(where, "bridge", f"bridge {bridge!r} is not a bridge of this network "
                      f"({', '.join(by_name) or 'none'})", bridge)
        return bridge

    def address(self, where: str, text: str | None, gw: IPv4Interface | None, bridge: str) -> IPv4Interface | None:
        v6.as_written(where, "address", text)
        if text is None:
            if gw is not None:
                self.fail(where, "address", f"a container on {bridge} (which has the address {gw}) has an "
                          "address in its subnet", None)
            return None
        if "/" not in text:
            if gw is None:
                self.fail(where, "address", f"bridge {bridge} has no address, so a container's address on it "
                          "needs its prefix length, as in 10.20.0.10/24", text)
            text = f"{text}/{gw.network.prefixlen}"
        return text  # type: ignore[return-value]  # VethPair converts and checks it

    def link_address(self, where: str, end: End) -> str | None:
        if end.address is not None and "/" not in end.address:
            self.fail(f"{where} end {end.name}", "address", "a link end's address needs its prefix length, as in "
                      "10.99.0.1/30", end.address)
        return end.address

    def default_via(self, where: str, node: Node, gateway: IPv4Address | None, *,
                    ipv6_only: bool = False) -> IPv4Address | str | None:
        if node.default_route is False:
            return None
        if isinstance(node.default_route, str):
            return v6.default_via4(where, node.default_route)
        if gateway is None and ipv6_only:
            return None  # an IPv6-only container has no IPv4 default route
        if gateway is None:
            self.fail(where, "default_route", "none of this container's bridges has an address to route "
                      "through: give default_route an address, or false", None)
        return gateway

    def route(self, where: str, netns: str | None, r: RouteSpec) -> Route:
        return Route(netns, r.via, v6.route_target(where, r.to, r.via))
