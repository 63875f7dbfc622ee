"""Addresses and routes: :class:`Address` (ip-address(8)) and :class:`Route` (ip-route(8))."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import attrs

from . import rules
from .commands import AddrAbsent, AddrPresent, Command, RouteAbsent, RoutePresent, Step, ip
from .render import RenderContext, _address_repeated, _address_text


@attrs.frozen
class Address:
    """An address on a link, e.g. the gateway address on the bridge (ip-address(8)).

    Attributes:
        dev: the link, e.g. ``"br0"``.
        address: address with prefix length, e.g. ``10.201.0.1/24``.
        netns: where the link lives (None: the host).
        brd: also set the subnet's broadcast address (``brd 10.201.0.255``).
    """

    dev: str = attrs.field(validator=rules.ifname)
    address: IPv4Interface = attrs.field(converter=rules.to_interface, validator=rules.interface)
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
        if self.brd:
            bcast = self.address.network.broadcast_address
            args += ["brd", str(bcast)]
        args += ["dev", self.dev]
        net = self.address.network
        return [
            Step(
                key=k,
                title=f"give {self.dev} the address {self.address}",
                why=(
                    f"With {self.address.ip} on {self.dev}, the kernel adds the connected route "
                    f"{net} dev {self.dev}: this side can now reach {net} directly, and "
                    f"{self.address.ip} can serve as the gateway of {net}."
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
        via: the gateway, an address on a subnet the namespace is attached to.
        dst: ``"default"`` or a destination subnet such as ``"10.9.0.0/16"``.
    """

    netns: str | None = attrs.field(validator=rules.optional_netns_name)
    via: IPv4Address = attrs.field(converter=rules.to_address, validator=_address_repeated)
    dst: str = attrs.field(default="default")

    @dst.validator
    def _check_dst(self, attribute: attrs.Attribute, value: str) -> None:
        if value == "default":
            return
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            IPv4Network(value)
        except ValueError:
            raise rules.ValidationError(
                rules.describe(self), "dst", "a route destination is 'default' or an IPv4 subnet with no host bits set",
                value,
            ) from None

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
