"""The lesson's shape: one bridge, containers plugged into it (:func:`bridge_network`).

:class:`Container` names one container; :func:`bridge_network` checks its
arguments (types, the lesson's reserved name, how many ports a bridge takes,
options that contradict each other) and builds the :class:`Network`.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Interface

import attrs

from . import rules
from .errors import ValidationError
from .firewall import Isolation
from .model import Address, Bridge, ForwardRule, Namespace, NatRule, NetworkObject, Route, VethPair, ip_forward
from .crosscheck import ROOMLESS_GATEWAY as _ROOMLESS_GATEWAY
from .crosscheck import too_many_ports as _too_many_ports
from .gcpause import paused as _gc_paused
from .network import Network


@attrs.frozen
class Container:
    """One container on a bridge: its namespace, its address, its veth pair's names.

    Attributes:
        netns: the namespace, e.g. ``"container4"``.
        address: ``"10.201.0.4/24"``, or ``"10.201.0.4"`` to take the
            gateway's prefix length.
        veth: the host end; default ``"v-"`` + the netns name (cut to 15 bytes).
        peer: the container end; default ``"eth0"``, as Docker names it.
        ports: published ports, e.g. ``["8080:80", "5353:53/udp"]`` (:mod:`bridgenet.ports`).
    """

    netns: str = attrs.field(validator=rules.netns_name)
    address: str | IPv4Interface = attrs.field()
    veth: str | None = attrs.field(default=None)
    peer: str = attrs.field(default="eth0", validator=rules.text)
    ports: tuple[str, ...] = attrs.field(default=(), converter=lambda v: tuple(v) if isinstance(v, list) else v)

    @ports.validator
    def _check_ports(self, attribute: attrs.Attribute, value: object) -> None:
        from .ports import parse_ports

        parse_ports(rules.describe(self), value)

    @property
    def name(self) -> str | None:
        """The container's name in messages: its netns."""
        return self.netns if isinstance(self.netns, str) else None

    @address.validator
    def _check_address(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, (str, IPv4Interface)):
            raise ValidationError(rules.describe(self), "address",
                                  "an address is text such as '10.201.0.4/24' or '10.201.0.4', or an IPv4Interface",
                                  value)

    @veth.validator
    def _check_veth(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and not isinstance(value, str):
            raise ValidationError(rules.describe(self), "veth", "a veth name is a string (or None for the default)",
                                  value)


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
    isolate: bool | None = None,
    source: str | None = None,
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
        ValidationError: for any bad name, address or option, naming the
            field: also a name reserved for bridgenet's own networks
            (``"tutorial"``, :data:`bridgenet.rules.RESERVED_NETWORK_NAMES`),
            no container or more than a bridge takes
            (:data:`bridgenet.rules.MAX_BRIDGE_PORTS`, 1023), a namespace
            given twice, a gateway with no room for a container (prefix
            length 0, 31 or 32), and ``lesson_form`` with ``masquerade`` but
            without ``forward``.
    """
    where = f"bridge_network {name}" if isinstance(name, str) else "bridge_network"
    _check_name(where, name)
    return build_bridge_network(name, containers, bridge=bridge, gateway=gateway, default_routes=default_routes,
                                forward=forward, masquerade=masquerade, tag=tag, lesson_form=lesson_form,
                                accept_forward=accept_forward, isolate=isolate, source=source)


def build_bridge_network(name: str, containers: Iterable[Container], **options: object) -> Network:
    """:func:`bridge_network` without the check that ``name`` is not reserved: for bridgenet's own networks.

    ``bridgenet.tutorial()`` builds the lesson's network, named ``"tutorial"``, this way.
    """
    where = f"bridge_network {name}" if isinstance(name, str) else "bridge_network"
    with _gc_paused():
        return _bridge_network(name, _container_list(where, containers), **_options(where, **options))


def _check_name(where: str, name: object) -> None:
    if not isinstance(name, str):
        raise ValidationError(where, "name", "a network name is a string", name)
    if name in rules.RESERVED_NETWORK_NAMES:
        raise ValidationError(where, "name", rules.RESERVED_NETWORK_NAMES[name], name)


def _container_list(where: str, containers: object) -> list[Container]:
    if isinstance(containers, (str, bytes, dict, Container)) or not isinstance(containers, Iterable):
        raise ValidationError(where, "containers", "containers is a list of Container", containers)
    out = list(containers)
    if not out:
        raise ValidationError(where, "containers", "a network has at least one container")
    for i, c in enumerate(out):
        if not isinstance(c, Container):
            raise ValidationError(where, f"containers[{i}]", "each container is a Container", c)
    if len(out) > rules.MAX_BRIDGE_PORTS:
        raise ValidationError(where, "containers", _too_many_ports("the bridge", len(out)), len(out))
    return out


def _options(where: str, *, bridge: object = "br0", gateway: object = "10.201.0.1/24", default_routes: object = True,
             forward: object = True, masquerade: object = True, tag: object = True, lesson_form: object = False,
             accept_forward: object = None, isolate: object = None, source: object = None) -> dict:
    """The options of bridge_network, checked for type (and the rules between them)."""
    flags = {"default_routes": default_routes, "forward": forward, "masquerade": masquerade, "tag": tag,
             "lesson_form": lesson_form}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ValidationError(where, key, "true or false (a bool)", value)
    for key, value in (("accept_forward", accept_forward), ("isolate", isolate)):
        if value is not None and not isinstance(value, bool):
            raise ValidationError(where, key, "true, false or None (the default: as tag)", value)
    if source is not None and not isinstance(source, str):
        raise ValidationError(where, "source", "a source is text (a file's path) or None", source)
    problem = rules.ifname_problem(bridge)
    if problem:
        raise ValidationError(where, "bridge", problem, bridge)
    gw = rules.to_interface(gateway) if isinstance(gateway, str) else gateway
    if isinstance(gateway, str) and not isinstance(gw, IPv4Interface):
        rule = ("a gateway needs its prefix length, as in 10.201.0.1/24" if "/" not in gateway
                else "a gateway is an IPv4 address with a prefix length, as in 10.201.0.1/24")
        raise ValidationError(where, "gateway", rule, gateway)
    if not isinstance(gw, IPv4Interface):
        raise ValidationError(where, "gateway", "a gateway is text such as '10.201.0.1/24' or an IPv4Interface",
                              gateway)
    if gw.network.prefixlen == 0 or gw.network.prefixlen > 30:
        raise ValidationError(where, "gateway", _ROOMLESS_GATEWAY, str(gw))
    if lesson_form and masquerade and not forward:
        raise ValidationError(
            where, "lesson_form",
            "lesson_form = true needs forward = true: its MASQUERADE rewrites traffic between two containers "
            "too (no '! -o BRIDGE'), and with br_netfilter the replies come back to the gateway's address and "
            "must be routed onto the bridge again, so without IP forwarding the containers cannot reach each "
            "other; set forward = true, or lesson_form = false (or masquerade = false)", lesson_form)
    return dict(flags, bridge=bridge, gateway=gw, accept_forward=accept_forward, isolate=isolate, source=source)


def _bridge_network(name: str, containers: list[Container], *, bridge: str, gateway: IPv4Interface,
                    default_routes: bool, forward: bool, masquerade: bool, tag: bool, lesson_form: bool,
                    accept_forward: bool | None, isolate: bool | None, source: str | None) -> Network:
    br = Bridge(bridge)
    gw_addr = Address(bridge, gateway)
    objs: list[NetworkObject] = [br]
    namespaces: list[str] = []
    publishes = []
    derived: dict[str, str] = {}
    seen: set[str] = set()
    for c in containers:
        if c.netns in seen:
            raise ValidationError(
                f"Container {c.netns}", "netns",
                "appears twice in the containers of this network (each container has its own namespace)", c.netns)
        seen.add(c.netns)
        addr = c.address
        if isinstance(addr, str) and "/" not in addr:
            addr = f"{addr}/{gw_addr.address.network.prefixlen}"
        veth = c.veth if c.veth is not None else rules.cut_bytes(f"v-{c.netns}")
        if c.veth is None and veth in derived:
            raise ValidationError(
                f"Container {c.netns}", "veth",
                f"the host end's default name ('v-' + netns, cut to 15 bytes) is {veth!r}, the same as for "
                f"container {derived[veth]!r}; give one of them its own veth name", veth)
        derived.setdefault(veth, c.netns)
        objs.append(Namespace(c.netns))
        objs.append(VethPair(veth, c.peer, netns=c.netns, master=bridge, address=addr))
        namespaces.append(c.netns)
        if c.ports:
            from .ports import Publish

            publishes.append(Publish(c.netns, c.ports, objs[-1].address, bridge, veth))
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
    if publishes:
        from .ports import port_objects

        objs.extend(port_objects(publishes))
    return Network(name, objs, tag=tag, move_peers=lesson_form, source=source)
