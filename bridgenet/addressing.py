"""Addresses and routes: :class:`Address` (ip-address(8)) and :class:`Route` (ip-route(8))."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

import attrs

from . import rules
from .commands import AddrAbsent, AddrPresent, Command, RouteAbsent, RoutePresent, Step, ip
from .render import RenderContext, _address_text, _via_repeated


@attrs.frozen
class Address:
    """An address on a link, e.g. the gateway address on the bridge (ip-address(8)).

    Attributes:
        dev: the link, e.g. ``"br0"``.
        address: address with prefix length, e.g. ``10.201.0.1/24``, or an
            IPv6 one, e.g. ``fd00:30::1/64``; an IPv6 address is added with
            ``nodad`` (ip-address(8): no duplicate address detection, so it
            is usable at once instead of ``tentative`` for ≈1-2 s, during
            which ``bind()`` to it fails; bridgenet checks that a network's
            addresses are unique itself).
        netns: where the link lives (None: the host).
        brd: also set the subnet's broadcast address (``brd 10.201.0.255``);
            IPv4 only (IPv6 has no broadcast: ignored for an IPv6 address).
    """

    dev: str = attrs.field(validator=rules.ifname)
    address: IPv4Interface | IPv6Interface = attrs.field(converter=rules.to_interface_any,
                                                         validator=rules.interface_any)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)
    brd: bool = attrs.field(default=True, validator=rules.boolean)

    @property
    def step_key(self) -> str:
        return f"addr {self.address} dev {self.dev}@{self.netns or 'host'}"

    @property
    def name(self) -> str:
        return f"{self.address} dev {self.dev}"

    def __attrs_post_init__(self) -> None:
        net = self.address.network
        if type(self.address) is IPv6Interface:
            if self.address.ip == net.network_address and net.prefixlen < 127:
                raise rules.ValidationError(
                    rules.describe(self), "address",
                    f"an IPv6 address is not the subnet-router anycast address of {net} (RFC 4291 2.6.1)",
                    str(self.address))
            return
        if self.address.ip in (net.network_address, net.broadcast_address) and net.prefixlen < 31:
            raise rules.ValidationError(
                rules.describe(self), "address",
                f"an address is neither the network address nor the broadcast address of {net}",
                str(self.address),
            )

    def steps(self, ctx: RenderContext, covered_by: str | None = None) -> list[Step]:
        k = self.step_key
        args = ["addr", "add", str(self.address)]
        bcast = None
        v6 = type(self.address) is IPv6Interface
        if self.brd and not v6:
            bcast = self.address.network.broadcast_address
            args += ["brd", str(bcast)]
        args += ["dev", self.dev]
        if v6:
            args.append("nodad")
        net = self.address.network
        return [
            Step(
                key=k,
                title=f"give {self.dev} the address {self.address}",
                why=(
                    f"With {self.address.ip} on {self.dev}, the kernel adds the connected route "
                    f"{net} dev {self.dev}: this side can now reach {net} directly, and "
                    f"{self.address.ip} can serve as the gateway of {net}."
                    + (" nodad: no duplicate address detection, so the address is usable at once (not "
                       "'tentative' for a second or two, when bind() to it fails)." if v6 else "")
                ),
                up=(ip(*args, netns=self.netns, step=k, effect=AddrPresent(self.dev, self.address, self.netns, bcast)),),
                down=(
                    ip("addr", "del", str(self.address), "dev", self.dev, netns=self.netns, step=k,
                       effect=AddrAbsent(self.dev, self.address, self.netns)),
                ),
                covered_by=covered_by,
            )
        ]


@attrs.frozen
class Route:
    """A route inside a namespace, by default its default route (ip-route(8)).

    Attributes:
        netns: the namespace the route lives in (None: the host).
        via: the gateway, an address on a subnet the namespace is attached to:
            IPv4, or IPv6 (global or unique local; then the route is an IPv6
            one: ``ip route add default via fd00:30::1`` needs no ``-6``,
            ip-route(8) takes the family from the address).
        dst: ``"default"`` or a destination subnet such as ``"10.9.0.0/16"``
            (or ``"2001:db8:5::/64"``), of the family of ``via``.
    """

    netns: str | None = attrs.field(validator=rules.optional_netns_name)
    via: IPv4Address | IPv6Address = attrs.field(converter=rules.to_address_any, validator=_via_repeated)
    dst: str = attrs.field(default="default")

    @dst.validator
    def _check_dst(self, attribute: attrs.Attribute, value: str) -> None:
        if value == "default":
            return
        v6 = type(self.via) is IPv6Address
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            (IPv6Network if ":" in value else IPv4Network)(value)
        except ValueError:
            raise rules.ValidationError(
                rules.describe(self), "dst", "a route destination is 'default' or an IPv4 or IPv6 subnet with no "
                "host bits set", value,
            ) from None
        if (":" in value) != v6:
            raise rules.ValidationError(
                rules.describe(self), "dst", f"a route's destination and gateway are of one family: {value} is "
                f"IPv{6 if ':' in value else 4}, via {self.via} IPv{6 if v6 else 4}", value)

    @property
    def step_key(self) -> str:
        return f"route {self.dst} via {_address_text(self.via)}@{self.netns or 'host'}"

    @property
    def name(self) -> str:
        return f"{self.dst} via {self.via}"

    def steps(self, ctx: RenderContext, covered_by: str | None = None) -> list[Step]:
        k = self.step_key
        where = self.netns or "the host"
        via = _address_text(self.via)
        return [
            Step(
                key=k,
                title=f"add the route {self.dst} via {via} in {where}",
                why=(
                    f"{'The host' if self.netns is None else where} only knows the subnets it is attached to; "
                    + (
                        f"with a default route via {via}, everything else goes to the gateway."
                        if self.dst == "default"
                        else f"this route tells it which neighbour to hand packets for {self.dst} to: {via}, "
                        "which must be on one of its subnets and forward them on (a router)."
                    )
                ),
                up=self._up_commands(ctx),
                down=(ip("route", "del", self.dst, "via", via, netns=self.netns, step=k,
                         effect=RouteAbsent(self.dst, self.via, self.netns)),),
                covered_by=covered_by,
            )
        ]

    def _up_commands(self, ctx: RenderContext) -> tuple[Command, ...]:
        """The ``up`` of :meth:`steps`, without making the step."""
        return (Command("ip", ("route", "add", self.dst, "via", _address_text(self.via)), self.netns, self.step_key,
                        RoutePresent(self.dst, self.via, self.netns)),)
