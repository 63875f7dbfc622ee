"""A VXLAN tunnel endpoint on a bridge: one layer-2 segment stretched across hosts (:class:`Vxlan`).

VXLAN (RFC 7348) carries each Ethernet frame in a UDP datagram to port
4789 (the IANA port; ip-link(8) ``dstport``) of another host's underlay
address. Without multicast in the underlay, every other host gets an
all-zeros forwarding entry, ``bridge fdb append 00:00:00:00:00:00 dev VX
dst OTHER`` (bridge(8)): frames with no more specific entry (broadcast,
multicast, unknown unicast: ARP among them) are sent to every such
destination, one copy each ("head-end replication", the kernel's
Documentation/networking/vxlan.rst).

Learning. By default the device learns (``learning``, ip-link(8)'s
default): a frame received from host B with source MAC M makes the entry
M -> B, so unicast to M then goes to B alone instead of to every host.
With ``learning=False`` (``nolearning``) only the all-zeros entries exist
and every frame is replicated to all other hosts (each remote bridge drops
what is not for it): correct, N-1 times the traffic. Learning trusts any
sender that reaches the underlay port, exactly as the flooding entries do.

MTU. The encapsulation adds 50 bytes over IPv4 (14 inner Ethernet + 20
IPv4 + 8 UDP + 8 VXLAN; RFC 7348 section 5) and 70 over IPv6 (a 40-byte
header): the device's MTU, its bridge's and every port's on the segment is
the underlay's minus that (RFC 7348 section 4.3: VTEPs do not fragment).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import attrs

from . import rules
from .commands import (
    Command,
    FdbAbsent,
    FdbPresent,
    LinkAbsent,
    LinkMaster,
    LinkPresent,
    LinkUp,
    Step,
    ip,
)
from .errors import ValidationError
from .render import RenderContext, _alias, _mtu

VXLAN_PORT = 4789
"""The IANA-assigned VXLAN UDP port (RFC 7348 section 5); the kernel's own default is 8472 (Linux's early
choice), so ``dstport`` is always given."""

MAX_VNI = 2**24 - 1
"""A VNI is 24 bits (RFC 7348 section 5); bridgenet uses 1..MAX_VNI."""

FLOOD_MAC = "00:00:00:00:00:00"
"""The all-zeros FDB entry: where a VXLAN device sends frames that match no other entry (bridge(8))."""


def overhead(underlay: IPv4Address | IPv6Address) -> int:
    """Bytes VXLAN adds to a frame's payload: 50 over IPv4, 70 over IPv6 (RFC 7348 section 5)."""
    return 50 if underlay.version == 4 else 70


def _to_ip(value: object) -> object:
    if isinstance(value, str):
        try:
            return ip_address(value)
        except ValueError:
            return value
    return value


def _check_ip(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, (IPv4Address, IPv6Address)):
        raise ValidationError(rules.describe(instance), attribute.name,
                              "an underlay address is an IPv4 or IPv6 address, as in 198.51.100.11", value)


def _to_ips(value: object) -> object:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    return tuple(_to_ip(v) for v in value)


def _check_ips(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, tuple):
        raise ValidationError(rules.describe(instance), attribute.name, "a list of underlay addresses", value)
    for i, v in enumerate(value):
        if not isinstance(v, (IPv4Address, IPv6Address)):
            raise ValidationError(rules.describe(instance), f"{attribute.name}[{i}]",
                                  "an underlay address is an IPv4 or IPv6 address, as in 198.51.100.12", v)


def _check_vni(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VNI:
        raise ValidationError(rules.describe(instance), attribute.name,
                              f"a VNI is a whole number from 1 to {MAX_VNI} (24 bits, RFC 7348)", value)


@attrs.frozen
class Vxlan:
    """A VXLAN device in the host, plugged into a bridge, with a flooding entry per remote host.

    Attributes:
        name: the device, 1-15 bytes, e.g. ``"vx4240"``.
        vni: the VXLAN network identifier, 1..16777215.
        local: this host's underlay address (``local``: the source of the
            encapsulated packets), an IPv4 or IPv6 address.
        master: the bridge it is a port of.
        remotes: the other hosts' underlay addresses (same family as
            ``local``): one ``bridge fdb append 00:00:00:00:00:00 dev NAME
            dst REMOTE`` each.
        mtu: the device's MTU (bytes); None: the kernel's default (1450 over
            IPv4 without a lower device).
        learning: learn remote MACs from received frames (see the module
            docstring); False renders ``nolearning``.
        dstport: the UDP port, :data:`VXLAN_PORT` (4789) by default.

    Commands (ip-link(8) VXLAN type, bridge(8))::

        ip link add NAME type vxlan id VNI dstport 4789 local LOCAL [nolearning]
        ip link set dev NAME mtu MTU            # when mtu is given
        ip link set NAME master MASTER
        ip link set dev NAME up
        bridge fdb append 00:00:00:00:00:00 dev NAME dst REMOTE   # per remote

    Undo: ``ip link del NAME`` (its FDB entries and its bridge port go with it).
    """

    name: str = attrs.field(validator=rules.ifname)
    vni: int = attrs.field(validator=_check_vni)
    local: IPv4Address | IPv6Address = attrs.field(converter=_to_ip, validator=_check_ip)
    master: str = attrs.field(validator=rules.ifname)
    remotes: tuple[IPv4Address | IPv6Address, ...] = attrs.field(default=(), converter=_to_ips,
                                                                  validator=_check_ips)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu, kw_only=True)
    learning: bool = attrs.field(default=True, validator=rules.boolean, kw_only=True)
    dstport: int = attrs.field(default=VXLAN_PORT, kw_only=True)

    netns = None
    """Always in the host (the checks ask every object for its namespace)."""

    @dstport.validator
    def _check_port(self, attribute: attrs.Attribute, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValidationError(rules.describe(self), "dstport", "a UDP port from 1 to 65535", value)

    def __attrs_post_init__(self) -> None:
        for r in self.remotes:
            if r.version != self.local.version:
                raise ValidationError(rules.describe(self), "remotes", "every remote is of the local address's "
                                      f"family (local {self.local} is IPv{self.local.version})", str(r))
            if r == self.local:
                raise ValidationError(rules.describe(self), "remotes", "a remote is another host's underlay "
                                      "address, not this host's own", str(r))
        if len(set(self.remotes)) != len(self.remotes):
            raise ValidationError(rules.describe(self), "remotes", "each remote appears once",
                                  [str(r) for r in self.remotes])
        if self.master == self.name:
            raise ValidationError(rules.describe(self), "master", "a link cannot be its own master", self.master)

    @property
    def step_key(self) -> str:
        return f"link {self.name}"

    @property
    def port_key(self) -> str:
        return f"port {self.name}"

    def fdb_key(self, remote: IPv4Address | IPv6Address) -> str:
        return f"fdb {self.name} {remote}"

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, n = self.step_key, self.name
        add = ip("link", "add", n, "type", "vxlan", "id", str(self.vni), "dstport", str(self.dstport),
                 "local", str(self.local), *(() if self.learning else ("nolearning",)), step=k,
                 effect=LinkPresent(n, "vxlan"))
        out = [
            Step(
                key=k,
                title=f"create the VXLAN device {n} (VNI {self.vni}, from {self.local})",
                why=(f"{n} wraps each frame the bridge hands it in a UDP datagram to port {self.dstport} of "
                     "another host's underlay address, and unwraps those arriving: the bridge's segment "
                     "then continues on the other hosts. "
                     + ("It learns which host each remote MAC is behind from the frames it receives."
                        if self.learning else "It learns nothing (nolearning): every frame goes to every host.")
                     + (f" Its MTU is {self.mtu}: the underlay's minus the encapsulation (RFC 7348)."
                        if self.mtu is not None else "")),
                up=(add, *_mtu(n, self.mtu, k), *_alias(n, ctx.tag, k)),
                down=(ip("link", "del", n, step=k, effect=LinkAbsent(n)),),
            ),
            Step(
                key=self.port_key,
                title=f"plug {n} into the bridge {self.master} and bring it up",
                why=f"{n} becomes a bridge port of {self.master}: the local containers and the other hosts' "
                    "share one layer-2 segment.",
                up=(ip("link", "set", n, "master", self.master, step=self.port_key,
                       effect=LinkMaster(n, self.master)),
                    ip("link", "set", "dev", n, "up", step=self.port_key, effect=LinkUp(n))),
                down=(ip("link", "set", "dev", n, "nomaster", step=self.port_key, effect=LinkMaster(n, None)),),
                covered_by=k,
            ),
        ]
        for r in self.remotes:
            fk, dst = self.fdb_key(r), str(r)
            out.append(Step(
                key=fk,
                title=f"flood {n}'s unknown frames to {dst} too",
                why=(f"An all-zeros forwarding entry sends what {n} has no other entry for (broadcast, "
                     f"ARP, unknown unicast) to {dst}, one copy per such entry: no multicast is needed "
                     "in the underlay (head-end replication)."),
                up=(Command("bridge", ("fdb", "append", FLOOD_MAC, "dev", n, "dst", dst), None, fk,
                            FdbPresent(n, FLOOD_MAC, dst)),),
                down=(Command("bridge", ("fdb", "del", FLOOD_MAC, "dev", n, "dst", dst), None, fk,
                              FdbAbsent(n, FLOOD_MAC, dst)),),
                covered_by=k,
            ))
        return out
