"""One network stretched across several hosts over VXLAN: :func:`stretch` builds each host's :class:`Network`.

The builder reads like a multi-host network file (``hosts_file.py``)::

    stretch("stretch", gateway="10.40.0.1/24", vni=4240,
            hosts=[HostSpec("h1", ssh="root@198.51.100.11"), HostSpec("h2", ssh="root@198.51.100.12")],
            containers=[Member("h1", "a", "10.40.0.10"), Member("h2", "b", "10.40.0.20")])

Each host gets, in this order: the bridge (MTU = the overlay's), the VXLAN
device ``vxVNI`` on it (same MTU, ``local`` = its underlay address) with a
flooding entry for every other host's underlay address (:mod:`bridgenet.vxlan`),
its containers (both veth ends with the overlay's MTU), and the firewall
rules of any bridgenet network (FORWARD accept rules: with br_netfilter,
bridged frames to and from the VXLAN port traverse FORWARD; isolation).
Only the gateway host (``gateway_host``, default the first host) puts the
gateway address on its bridge and has ``ip_forward`` and MASQUERADE.
Containers on the other hosts get their default route via the gateway
address all the same: it is on their segment, reached across the overlay
at layer 2 (ARP for it is flooded to every host, the gateway host answers),
so their traffic to other subnets leaves through the gateway host.

MTU: the overlay's MTU is ``mtu``, by default ``underlay_mtu`` (default
1500: a file cannot know the underlay's real MTU) minus the VXLAN overhead,
50 over IPv4 (RFC 7348) and 70 over IPv6; a larger ``mtu`` is refused (the
encapsulated packet would not fit the underlay, and RFC 7348 4.3 forbids
VTEPs to fragment).

Every host's network has the same name (each host keeps its own state
file), the same tag and the same ``source``. Names (``names = true``):
every container's ``/etc/netns/NETNS/hosts`` lists the containers of all
hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, ip_interface

import attrs

from . import rules
from .errors import ValidationError
from .gcpause import paused
from .hosts import HostSpec, default_vni
from .names import EtcNetns, Names, check_dns, check_names, hosts_text, resolv_text
from .network import Network
from .specfields import _opt_text, _seq, _to_tuple
from .topology import BridgeSpec, Node, _listed, topology
from .vxlan import MAX_VNI, Vxlan, overhead

DEFAULT_UNDERLAY_MTU = 1500
"""The underlay MTU assumed when the file gives none (Ethernet's)."""


@attrs.frozen
class Member:
    """A container of a :func:`stretch` network (the file's ``[[containers]]`` with ``host``).

    Attributes:
        host: the name of its :class:`HostSpec`.
        netns: its namespace (unique across all hosts).
        address: its address on the overlay, e.g. ``"10.40.0.10"`` (the
            gateway's prefix length is added) or with the gateway's prefix length.
        veth, peer: the host end (default ``v-NETNS``) and the container end (default ``eth0``).
        mtu: both ends' MTU, at most the overlay's (default: the overlay's).
        default_route: None: via the gateway's address; False: none; an address: via it.
        ports: published ports (:mod:`bridgenet.ports`); only on the gateway host (the others have no
            address on the overlay to route to the container from).
    """

    host: str = attrs.field(validator=rules.text)
    netns: str = attrs.field(validator=rules.netns_name)
    address: str = attrs.field(validator=rules.text)
    veth: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)
    peer: str | None = attrs.field(default=None, validator=_opt_text, kw_only=True)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu, kw_only=True)
    default_route: str | bool | None = attrs.field(default=None, kw_only=True)
    ports: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_seq, kw_only=True)

    @property
    def name(self) -> str:
        return self.netns

    @default_route.validator
    def _check_default(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and value is not False and not isinstance(value, str):
            raise ValidationError(rules.describe(self), "default_route",
                                  "false, or the gateway's address as text (default: via the gateway)", value)


@attrs.frozen
class Stretch:
    """A network across hosts: each host and its own :class:`Network`, in the file's order.

    Attributes:
        name: the network's name (each host's network has it).
        hosts: the hosts, in order.
        networks: ``networks[i]`` is what ``hosts[i]`` builds.
        vni, mtu: the VXLAN network identifier and the overlay's MTU (bytes).
        gateway_host: the name of the host with the gateway address, forwarding and NAT.
    """

    name: str
    hosts: tuple[HostSpec, ...] = attrs.field(converter=tuple)
    networks: tuple[Network, ...] = attrs.field(converter=tuple)
    vni: int
    mtu: int
    gateway_host: str

    def network_of(self, host: str) -> Network:
        """The network of the host named ``host`` (KeyError when there is none)."""
        for h, n in zip(self.hosts, self.networks):
            if h.name == host:
                return n
        raise KeyError(host)

    def pairs(self) -> list[tuple[HostSpec, Network]]:
        """``[(host, its network), ...]`` in order."""
        return list(zip(self.hosts, self.networks))

    @property
    def local_only(self) -> bool:
        """True when the network has one host and it is this machine: then it runs like any network."""
        return len(self.hosts) == 1 and self.hosts[0].local


def stretch(name: str, *, hosts: Sequence[HostSpec], gateway: str, containers: Sequence[Member] = (),
            gateway_host: str | None = None, vni: int | None = None, mtu: int | None = None,
            underlay_mtu: int = DEFAULT_UNDERLAY_MTU, bridge: str = "br0", learning: bool = True,
            forward: bool = True, masquerade: bool = True, default_routes: bool = True, tag: bool = True,
            accept_forward: bool | None = None, isolate: bool | None = None, names: bool = True,
            dns: Sequence[str] = (), source: str | None = None) -> Stretch:
    """One network across ``hosts`` (see the module docstring).

    Args:
        name: the network's name.
        hosts: at least one :class:`HostSpec`; names and underlay addresses
            unique, the underlay addresses of one family.
        gateway: the gateway's address with prefix length, e.g.
            ``"10.40.0.1/24"``: the overlay's subnet.
        containers: the :class:`Member` values, each on a host of ``hosts``.
        gateway_host: the host with the gateway (default: the first).
        vni: 1..16777215; default :func:`bridgenet.hosts.default_vni` of the name.
        mtu: the overlay's MTU; default ``underlay_mtu`` minus 50 (IPv4
            underlay) or 70 (IPv6).
        underlay_mtu: the underlay's MTU (bytes), default 1500.
        bridge: the bridge's name on every host.
        learning: the VXLAN devices learn remote MACs (:mod:`bridgenet.vxlan`).
        forward, masquerade: ``ip_forward`` and MASQUERADE on the gateway host.
        default_routes, tag, accept_forward, isolate, names, dns, source: as
            for :func:`bridgenet.topology.topology`.

    Raises:
        ValidationError: naming the object, field and rule, before anything is built.
    """
    where = f"stretch {name}" if isinstance(name, str) else "stretch"
    if not isinstance(name, str):
        raise ValidationError(where, "name", "a network name is a string", name)
    if name in rules.RESERVED_NETWORK_NAMES:
        raise ValidationError(where, "name", rules.RESERVED_NETWORK_NAMES[name], name)
    problem = rules.ifname_problem(bridge)
    if problem:
        raise ValidationError(where, "bridge", problem, bridge)
    for key, value in (("learning", learning), ("forward", forward), ("masquerade", masquerade),
                       ("default_routes", default_routes), ("tag", tag), ("names", names)):
        if not isinstance(value, bool):
            raise ValidationError(where, key, "true or false (a bool)", value)
    dns = check_dns(where, dns)
    host_list = _listed(where, "hosts", hosts, HostSpec)
    members = _listed(where, "containers", containers, Member)
    if not host_list:
        raise ValidationError(where, "hosts", "a network across hosts has at least one host")
    _unique_hosts(where, host_list)
    family = host_list[0].underlay.version
    vni = _vni(where, name, vni)
    mtu = _mtu(where, mtu, underlay_mtu, overhead(host_list[0].underlay))
    gw = _gateway(where, gateway)
    by_name = {h.name: h for h in host_list}
    if gateway_host is None:
        gateway_host = host_list[0].name
    elif gateway_host not in by_name:
        raise ValidationError(where, "gateway_host", f"gateway_host names a host of this network "
                              f"({', '.join(by_name)})", gateway_host)
    placed: dict[str, list[Node]] = {h.name: [] for h in host_list}
    seen_ns: dict[str, str] = {}
    seen_ip: dict[IPv4Address, str] = {gw.ip: "the gateway"}
    for i, m in enumerate(members):
        here = f"{where} containers[{i}] ({rules.describe(m)})"
        if m.host not in by_name:
            raise ValidationError(here, "host", f"host {m.host!r} is not a host of this network "
                                  f"({', '.join(by_name)})", m.host)
        if m.netns in seen_ns:
            raise ValidationError(here, "netns", f"appears twice in the containers of this network (already on "
                                  f"host {seen_ns[m.netns]}; each container has its own namespace)", m.netns)
        seen_ns[m.netns] = m.host
        address = _address(here, m.address, gw)
        if address.ip in seen_ip:
            raise ValidationError(here, "address", f"each address is used once: {address.ip} is "
                                  f"{seen_ip[address.ip]}'s", m.address)
        seen_ip[address.ip] = f"container {m.netns}"
        if m.mtu is not None and m.mtu > mtu:
            raise ValidationError(here, "mtu", f"a container's MTU is at most the overlay's ({mtu})", m.mtu)
        if m.ports and m.host != gateway_host:
            raise ValidationError(here, "ports", f"published ports are on the gateway host ({gateway_host}): "
                                  f"{m.host} has no address on the overlay to reach the container from",
                                  list(m.ports))
        via = m.default_route
        if via is None and m.host != gateway_host:
            via = str(gw.ip)
        placed[m.host].append(Node(m.netns, str(address), veth=m.veth, peer=m.peer, mtu=m.mtu, default_route=via,
                                   ports=m.ports))
    for i, h in enumerate(host_list):
        if h.underlay.version != family:
            raise ValidationError(f"{where} hosts[{i}] ({rules.describe(h)})", "underlay", f"every host's underlay address is of one family "
                                  f"(the first host's is IPv{family})", str(h.underlay))
    with paused():
        nets = [_host_network(name, h, host_list, placed[h.name], h.name == gateway_host, gw, bridge, vni, mtu,
                              learning=learning, forward=forward, masquerade=masquerade,
                              default_routes=default_routes, tag=tag, accept_forward=accept_forward,
                              isolate=isolate, source=source) for h in host_list]
        if names:
            nets = _with_names(name, nets, [m.netns for m in members], dns, tag=tag, source=source)
    return Stretch(name, host_list, nets, vni, mtu, gateway_host)


def _unique_hosts(where: str, hosts: list[HostSpec]) -> None:
    names: dict[str, HostSpec] = {}
    underlays: dict[object, HostSpec] = {}
    for i, h in enumerate(hosts):
        here = f"{where} hosts[{i}] ({rules.describe(h)})"
        if h.name in names:
            raise ValidationError(here, "name", "each host appears once", h.name)
        names[h.name] = h
        if h.underlay in underlays:
            raise ValidationError(here, "underlay", f"each host has its own underlay address: "
                                  f"{h.underlay} is host {underlays[h.underlay].name}'s too", str(h.underlay))
        underlays[h.underlay] = h
    if sum(1 for h in hosts if h.local) > 1:
        local = [h.name for h in hosts if h.local]
        second = [i for i, h in enumerate(hosts) if h.local][1]
        raise ValidationError(f"{where} hosts[{second}] ({rules.describe(hosts[second])})", "ssh",
                              f"at most one host is this machine (no ssh); {', '.join(local)} have none")


def _vni(where: str, name: str, vni: object) -> int:
    if vni is None:
        return default_vni(name)
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= MAX_VNI:
        raise ValidationError(where, "vni", f"a VNI is a whole number from 1 to {MAX_VNI} (24 bits, RFC 7348)", vni)
    return vni


def _mtu(where: str, mtu: object, underlay_mtu: object, extra: int) -> int:
    if isinstance(underlay_mtu, bool) or not isinstance(underlay_mtu, int) \
            or not rules.MIN_MTU + extra <= underlay_mtu <= rules.MAX_MTU:
        raise ValidationError(where, "underlay_mtu", f"the underlay's MTU is a whole number of bytes from "
                              f"{rules.MIN_MTU + extra} to {rules.MAX_MTU} (VXLAN adds {extra})", underlay_mtu)
    top = underlay_mtu - extra
    if mtu is None:
        return top
    problem = rules.mtu_problem(mtu)
    if problem:
        raise ValidationError(where, "mtu", problem, mtu)
    if mtu > top:  # type: ignore[operator]
        raise ValidationError(where, "mtu", f"the overlay's MTU is at most underlay_mtu - {extra} = {top}: a larger "
                              "frame does not fit one underlay packet (RFC 7348: VTEPs do not fragment)", mtu)
    return mtu  # type: ignore[return-value]


def _gateway(where: str, gateway: object) -> IPv4Interface:
    gw = rules.to_interface(gateway)
    if not isinstance(gw, IPv4Interface) or "/" not in str(gateway):
        raise ValidationError(where, "gateway", "the gateway is an IPv4 address with a prefix length, as in "
                              "10.40.0.1/24", gateway)
    if not 0 < gw.network.prefixlen <= 30 or gw.ip in (gw.network.network_address, gw.network.broadcast_address):
        raise ValidationError(where, "gateway", "the gateway's subnet has room for containers (a prefix length "
                              "from 1 to 30) and the gateway is a host address in it", str(gw))
    return gw


def _address(here: str, text: str, gw: IPv4Interface) -> IPv4Interface:
    full = text if "/" in text else f"{text}/{gw.network.prefixlen}"
    try:
        address = ip_interface(full)
    except ValueError:
        raise ValidationError(here, "address", "an IPv4 address, as in 10.40.0.10", text) from None
    if not isinstance(address, IPv4Interface) or address.network != gw.network \
            or address.ip in (gw.network.network_address, gw.network.broadcast_address):
        raise ValidationError(here, "address", f"an address on the overlay is a host address in the gateway's "
                              f"subnet {gw.network}", text)
    return address


def _host_network(name: str, h: HostSpec, hosts: list[HostSpec], nodes: list[Node], is_gateway: bool,
                  gw: IPv4Interface, bridge: str, vni: int, mtu: int, *, learning: bool, forward: bool,
                  masquerade: bool, default_routes: bool, tag: bool, accept_forward: bool | None,
                  isolate: bool | None, source: str | None) -> Network:
    """One host's network: ``topology()`` of its bridge and containers, with the VXLAN device after the bridge."""
    spec = BridgeSpec(bridge, str(gw) if is_gateway else None, mtu, masquerade if is_gateway else False)
    try:
        net = topology(name, bridges=[spec], containers=nodes, forward=forward and is_gateway,
                       default_routes=default_routes, tag=tag, accept_forward=accept_forward, isolate=isolate,
                       source=source, names=False, bridges_only=True)
        vx = Vxlan(f"vx{vni}", vni, h.underlay, bridge, [o.underlay for o in hosts if o is not h], mtu=mtu,
                   learning=learning)
        objs = list(net.objects)
        objs.insert(1, vx)  # right after the bridge
        return Network(name, objs, tag=tag, source=source, advice=net.advice)
    except ValidationError as e:
        raise ValidationError(f"host {h.name}: {e.obj}", e.field, e.rule, e.value) from None


def _with_names(name: str, nets: list[Network], namespaces: list[str], dns: tuple[str, ...], *, tag: bool,
                source: str | None) -> list[Network]:
    """Each network with the ``/etc/netns`` files of its containers, whose ``hosts`` lists every host's."""
    if not namespaces:
        return nets
    check_names(name, namespaces)
    everything = [o for n in nets for o in n.objects]
    hosts, resolv = hosts_text(name, namespaces, everything), resolv_text(dns)
    out = []
    for n in nets:
        mine = [ns.name for ns in n.namespaces]
        if not mine:
            out.append(n)
            continue
        extra = [EtcNetns(), *(Names(ns, hosts, resolv) for ns in mine)]
        out.append(Network(name, [*n.objects, *extra], tag=tag, source=source, advice=n.advice))
    return out
