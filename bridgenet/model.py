"""The objects of a container network, as immutable validated values.

Each object is an ``attrs`` frozen class; its fields are checked when it is
built (see ``rules.py``), and rules that involve several objects are checked
when a :class:`bridgenet.network.Network` is assembled. An object renders
into :class:`bridgenet.commands.Step` values, the commands of ip-link(8),
ip-address(8), ip-route(8), ip-netns(8), sysctl(8) and iptables(8).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import attrs

from . import rules
from .commands import (
    AddrAbsent,
    AddrPresent,
    Command,
    LinkAbsent,
    LinkAlias,
    LinkInNetns,
    LinkMaster,
    LinkMtu,
    LinkPresent,
    LinkUp,
    NetnsAbsent,
    NetnsPresent,
    RouteAbsent,
    RoutePresent,
    RuleAbsent,
    RulePresent,
    Step,
    ip,
    iptables,
    sysctl_w,
)
from .firewall import FORWARD_CHAIN, FilterChain, Isolation


def _remembering(validator, size: int = 256):
    """``validator``, skipping a value it has accepted recently (performance only).

    The rules in ``rules.py`` depend on the value alone (the object only names
    itself in the error message), so a value once accepted is accepted again.
    A network of N containers checks the same peer name, bridge and gateway N
    times; this makes the repeats free. Rejections are never remembered, so
    errors are exactly those of ``validator``. At most ``size`` values are kept.
    """
    accepted: dict = {}

    def check(instance, attribute, value) -> None:
        key = (type(value), value)
        try:
            if key in accepted:
                return
        except TypeError:  # unhashable: just check it
            validator(instance, attribute, value)
            return
        validator(instance, attribute, value)
        if len(accepted) >= size:
            accepted.clear()
        accepted[key] = None

    return check


_ifname_repeated = _remembering(rules.ifname)
_optional_ifname_repeated = _remembering(rules.optional_ifname)
_address_repeated = _remembering(rules.address)


@attrs.frozen
class RenderContext:
    """What an object needs to know about its network to render its steps.

    Attributes:
        tag: text to tag links (alias) and iptables rules (comment) with,
            e.g. ``"bridgenet:demo"``; None to tag nothing (the lesson).
        fast: create each veth with its peer already in its namespace
            (``ip link add A type veth peer name B netns NS``, ≈0.5 ms) instead
            of creating it in the host and moving it (≈16 ms, the lesson's way).
        brings_lo_up: for each namespace, the veth whose container side also
            brings ``lo`` up (the first one into it).
        end_brings_lo_up: for each namespace reached first by a veth's
            ``name`` end (:attr:`VethPair.name_netns`), that veth.
    """

    tag: str | None = None
    fast: bool = False
    brings_lo_up: dict[str, str] = attrs.field(factory=dict)
    end_brings_lo_up: dict[str, str] = attrs.field(factory=dict)


_ADDRESS_TEXTS: dict[int, str] = {}


def _address_text(address: IPv4Address) -> str:
    """``str(address)``, remembered for plain ``IPv4Address`` values (performance only).

    Every default route of a bridge's containers names the same gateway,
    and ipaddress makes its text anew each time (≈1-2 µs). At most 1024
    texts are kept.
    """
    if type(address) is not IPv4Address:
        return str(address)
    n = int(address)
    text = _ADDRESS_TEXTS.get(n)
    if text is None:
        if len(_ADDRESS_TEXTS) >= 1024:
            _ADDRESS_TEXTS.clear()
        text = _ADDRESS_TEXTS[n] = str(address)
    return text


def _alias(name: str, tag: str | None, step: str, netns: str | None = None) -> list[Command]:
    if not tag:
        return []
    return [ip("link", "set", "dev", name, "alias", tag, netns=netns, step=step, effect=LinkAlias(name, tag, netns))]


def _mtu(name: str, mtu: int | None, step: str, netns: str | None = None) -> tuple[Command, ...]:
    """``ip link set dev NAME mtu MTU`` (ip-link(8)) when ``mtu`` is given, else nothing."""
    if mtu is None:
        return ()
    return (Command("ip", ("link", "set", "dev", name, "mtu", str(mtu)), netns, step, LinkMtu(name, mtu, netns)),)


@attrs.frozen
class Bridge:
    """A Linux bridge in the host (ip-link(8) ``type bridge``).

    Attributes:
        name: interface name, 1-15 bytes, e.g. ``"br0"``.
        mtu: the bridge's MTU in bytes (68-65535), set explicitly after it is
            created; None: the kernel's default (1500), which the kernel then
            lowers to its smallest port's MTU as ports join (net/bridge/br_if.c
            ``br_mtu_auto_adjust``; an MTU set by hand stays, measured here).
    """

    name: str = attrs.field(validator=rules.ifname)
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu, kw_only=True)

    @property
    def step_key(self) -> str:
        return f"link {self.name}"

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        return [
            Step(
                key=k,
                title=f"create the bridge {self.name} and bring it up",
                why=(
                    f"{self.name} is a virtual switch: every link plugged into it as a bridge "
                    "port can reach the others at layer 2. With no port yet it has nothing to carry "
                    "(the lesson's kernel showed it DOWN with NO-CARRIER)."
                    + (f" Its MTU is set to {self.mtu}, and every veth plugged into it gets the same MTU on both "
                       "ends: along one segment the MTU must match, or the larger frames one side sends are "
                       "dropped by the other (and a bridge left to itself drops its MTU to its smallest port's)."
                       if self.mtu is not None else "")
                ),
                up=(
                    ip("link", "add", self.name, "type", "bridge", step=k, effect=LinkPresent(self.name, "bridge")),
                    *_alias(self.name, ctx.tag, k),
                    *_mtu(self.name, self.mtu, k),
                    ip("link", "set", self.name, "up", step=k, effect=LinkUp(self.name)),
                ),
                down=(ip("link", "del", self.name, step=k, effect=LinkAbsent(self.name)),),
            )
        ]


@attrs.frozen
class Namespace:
    """A named network namespace, the network side of a container (ip-netns(8)).

    Attributes:
        name: the namespace's name; it becomes the file ``/run/netns/NAME``.
    """

    name: str = attrs.field(validator=rules.netns_name)

    @property
    def step_key(self) -> str:
        return f"netns {self.name}"

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        return [
            Step(
                key=k,
                title=f"create the network namespace {self.name}",
                why=(
                    f"{self.name} gets its own links, addresses, routes and iptables, "
                    "isolated from the host: the network half of a container. "
                    "It starts with only lo, and lo is down."
                ),
                up=self._up_commands(ctx),
                down=(ip("netns", "del", self.name, step=k, effect=NetnsAbsent(self.name)),),
            )
        ]

    def _up_commands(self, ctx: RenderContext) -> tuple[Command, ...]:
        """The ``up`` of :meth:`steps` (all of them, in order), without making the steps."""
        k = self.step_key
        add = Command("ip", ("netns", "add", self.name), None, k, NetnsPresent(self.name))
        if not ctx.tag:
            return (add,)
        # A namespace carries no alias; its lo does, so that `clean` can tell a
        # namespace bridgenet made from one it only used (ip-link(8) alias).
        return (add, Command("ip", ("link", "set", "dev", "lo", "alias", ctx.tag), self.name, k,
                             LinkAlias("lo", ctx.tag, self.name)))


@attrs.frozen
class VethPair:
    """A veth pair: ``name`` stays in the host (or goes into ``name_netns``), ``peer`` goes into ``netns``.

    Attributes:
        name: the host end, e.g. ``"brid4"``.
        peer: the container end, e.g. ``"veth4"``.
        netns: the namespace the peer lives in (None: the peer stays in the host).
        master: the bridge the host end is plugged into as a bridge port, or None.
        address: the peer's address with prefix length, e.g. ``10.201.0.4/24``, or None.
        mtu: both ends' MTU in bytes (68-65535; the two ends of a veth carry
            the same frames); None: the kernel's default, 1500.
        name_netns: the namespace the ``name`` end lives in, for a veth
            straight between two namespaces (None: the host). Such an end is
            no bridge port (``master`` must be None); its address, if any, is
            an :class:`Address` on it. Created in one request from the host:
            ``ip link add NAME netns NS1 type veth peer name PEER netns NS2``
            (ip-link(8): ``netns`` places each end).
    """

    name: str = attrs.field(validator=rules.ifname)
    peer: str = attrs.field(validator=_ifname_repeated)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)
    master: str | None = attrs.field(default=None, validator=_optional_ifname_repeated)
    address: IPv4Interface | None = attrs.field(
        default=None, converter=rules.to_interface, validator=rules.optional_interface
    )
    mtu: int | None = attrs.field(default=None, validator=rules.optional_mtu, kw_only=True)
    name_netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.peer == self.name and self.netns == self.name_netns:
            raise rules.ValidationError(
                rules.describe(self), "peer", "the two ends of a veth pair in one namespace have different names",
                self.peer
            )
        if self.name_netns is not None and self.master is not None:
            raise rules.ValidationError(
                rules.describe(self), "master", "a bridge port is a link of the host: a veth whose name end is "
                f"in netns {self.name_netns} has no master", self.master
            )
        if self.master is not None and self.master == self.name:
            raise rules.ValidationError(
                rules.describe(self), "master", "a link cannot be its own master", self.master
            )

    @property
    def step_key(self) -> str:
        return f"link {self.name}" if self.name_netns is None else f"link {self.name}@{self.name_netns}"

    @property
    def peer_key(self) -> str:
        return f"addr {self.peer}@{self.netns or 'host'}"

    @property
    def port_key(self) -> str:
        return f"port {self.name}"

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, ns, ends = self.step_key, self.netns, self.name_netns
        address = str(self.address) if self.address is not None else None
        if ends is not None:
            where = (f"{self.name} is created directly inside {ends} and {self.peer} inside "
                     f"{ns or 'the host'}: a cable straight between the two, no bridge")
        elif ns is None:
            where = "Both ends stay in the host"
        elif ctx.fast:
            where = f"{self.peer} is created directly inside {ns} (no move needed)"
        else:
            where = f"Both ends are born in the host; {self.peer} is then moved into {ns}"
        out = [
            Step(
                key=k,
                title=(
                    f"create the veth pair {self.name} in {ends} and {self.peer} in {ns or 'the host'}"
                    if ends is not None else
                    f"create the veth pair {self.name} (host end) and {self.peer}"
                    + (f", and put {self.peer} into {ns}" if ns else "")
                ),
                why=(
                    "A veth pair is a virtual cable: what goes in one end comes out of the other. "
                    f"{where}. "
                    f"Deleting {self.name} deletes {self.peer} too."
                    + (f" Both ends have the MTU {self.mtu}: a frame one end sends is one the other must take."
                       if self.mtu is not None else "")
                ),
                up=self._link_commands(ctx, k),
                down=(ip("link", "del", self.name, netns=ends, step=k, effect=LinkAbsent(self.name, ends)),),
            )
        ]
        pk = self.peer_key
        undo = []
        if self.address is not None:
            undo.append(
                ip("addr", "del", address, "dev", self.peer, netns=ns, step=pk,
                   effect=AddrAbsent(self.peer, self.address, ns))
            )
        out.append(
            Step(
                key=pk,
                title=(
                    f"address and bring up the container side {self.peer}"
                    + (f" in {ns}" if ns else "")
                ),
                why=(
                    (f"{self.peer} gets {address}; " if self.address else "")
                    + "lo and the link go up. Until its peer "
                    f"{self.name} is up too, {self.peer} shows LOWERLAYERDOWN."
                ),
                up=self._side_commands(ctx, pk, address),
                down=tuple(undo),
                covered_by=k,
            )
        )
        if self.master is not None:
            qk = self.port_key
            out.append(
                Step(
                    key=qk,
                    title=f"plug {self.name} into the bridge {self.master} and bring it up",
                    why=(
                        f"{self.name} becomes a bridge port of {self.master}, so the container "
                        f"behind it is on the same layer-2 segment as every other port."
                    ),
                    up=self._port_commands(qk, ctx),
                    down=(
                        ip("link", "set", "dev", self.name, "nomaster", step=qk,
                           effect=LinkMaster(self.name, None)),
                    ),
                    covered_by=k,
                )
            )
        else:
            qk = f"up {self.name}" if ends is None else f"up {self.name}@{ends}"
            out.append(
                Step(
                    key=qk,
                    title=f"bring up the host end {self.name}" if ends is None else f"bring up {self.name} in {ends}",
                    why=f"{self.peer} only carries traffic once {self.name} is up as well.",
                    up=self._port_commands(qk, ctx),
                    down=(),
                    covered_by=k,
                )
            )
        return out

    def _up_commands(self, ctx: RenderContext) -> tuple[Command, ...]:
        """The ``up`` of :meth:`steps` (all of them, in order), without making the steps."""
        address = str(self.address) if self.address is not None else None
        if self.master is not None:
            qk = self.port_key
        else:
            qk = f"up {self.name}" if self.name_netns is None else f"up {self.name}@{self.name_netns}"
        return (*self._link_commands(ctx, self.step_key), *self._side_commands(ctx, self.peer_key, address),
                *self._port_commands(qk, ctx))

    def _link_commands(self, ctx: RenderContext, k: str) -> tuple[Command, ...]:
        """Create the pair (step ``k``), and tag its host end."""
        # Command("ip", args, netns, step, effect), as ip() makes it (called directly: ≈40% faster)
        ns, ends = self.netns, self.name_netns
        if ends is not None:
            make: tuple[Command, ...] = (
                Command("ip", ("link", "add", self.name, "netns", ends, "type", "veth", "peer", "name", self.peer,
                               *(("netns", ns) if ns is not None else ())), None, k,
                        LinkPresent(self.name, "veth", ends, self.peer, ns)),
                *_mtu(self.name, self.mtu, k, ends),
            )
            return (*make, *_alias(self.name, ctx.tag, k, ends)) if ctx.tag else make
        if ns is None:
            make: tuple[Command, ...] = (
                Command("ip", ("link", "add", self.name, "type", "veth", "peer", "name", self.peer), None, k,
                        LinkPresent(self.name, "veth", None, self.peer, ns)),
            )
        elif ctx.fast:
            make = (
                Command("ip", ("link", "add", self.name, "type", "veth", "peer", "name", self.peer, "netns", ns),
                        None, k, LinkPresent(self.name, "veth", None, self.peer, ns)),
            )
        else:
            make = (
                Command("ip", ("link", "add", self.name, "type", "veth", "peer", "name", self.peer), None, k,
                        LinkPresent(self.name, "veth", None, self.peer, None)),
                Command("ip", ("link", "set", self.peer, "netns", ns), None, k, LinkInNetns(self.peer, ns)),
            )
        if self.mtu is not None:
            make = (*make, *_mtu(self.name, self.mtu, k))
        if ctx.tag:
            return (*make, *_alias(self.name, ctx.tag, k))
        return make

    def _side_commands(self, ctx: RenderContext, pk: str, address: str | None) -> tuple[Command, ...]:
        """Address the container side and bring it (and lo) up (step ``pk``); ``address``: its text."""
        ns = self.netns
        side: list[Command] = []
        if self.address is not None:
            side.append(Command("ip", ("addr", "add", address, "dev", self.peer), ns, pk,
                                AddrPresent(self.peer, self.address, ns)))
        if ns is not None and ctx.brings_lo_up.get(ns) == self.name:
            side.append(Command("ip", ("link", "set", "dev", "lo", "up"), ns, pk, LinkUp("lo", ns)))
        if ctx.tag and ns is not None:
            side.append(Command("ip", ("link", "set", "dev", self.peer, "alias", ctx.tag), ns, pk,
                                LinkAlias(self.peer, ctx.tag, ns)))
        if self.mtu is not None:
            side.extend(_mtu(self.peer, self.mtu, pk, ns))
        side.append(Command("ip", ("link", "set", "dev", self.peer, "up"), ns, pk, LinkUp(self.peer, ns)))
        return tuple(side)

    def _port_commands(self, qk: str, ctx: RenderContext) -> tuple[Command, ...]:
        """Plug the host end into its bridge, if any, and bring it up (step ``qk``)."""
        ends = self.name_netns
        up = Command("ip", ("link", "set", "dev", self.name, "up"), ends, qk, LinkUp(self.name, ends))
        if self.master is None:
            if ends is not None and ctx.end_brings_lo_up.get(ends) == self.name:
                return (Command("ip", ("link", "set", "dev", "lo", "up"), ends, qk, LinkUp("lo", ends)), up)
            return (up,)
        return (Command("ip", ("link", "set", self.name, "master", self.master), None, qk,
                        LinkMaster(self.name, self.master)), up)


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
                    f"{where} only knows the subnets it is attached to; "
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


def _int_to_text(value: object) -> object:
    """attrs converter: an int (not a bool) to its decimal text; anything else is left to the validator."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _sysctl_value(obj: "Sysctl", field: str, value: object) -> None:
    if not isinstance(value, str) or not value or not value.isprintable() or "\n" in value:
        raise rules.ValidationError(rules.describe(obj), field, "a sysctl value is printable text (or an int)", value)
    boolean = obj.key.endswith((".ip_forward", ".forwarding")) if isinstance(obj.key, str) else False
    if boolean and value not in ("0", "1"):
        raise rules.ValidationError(rules.describe(obj), field, f"{obj.key} is 0 or 1", value)


@attrs.frozen
class Sysctl:
    """A per-namespace kernel setting under ``net.ipv4``/``net.ipv6`` (sysctl(8)).

    Attributes:
        key: e.g. ``"net.ipv4.ip_forward"``.
        value: the value to set, as text.
        default: the value ``down`` restores when the value before ``up`` is
            not known (for ``net.ipv4.ip_forward``, the kernel default ``"0"``;
            Documentation/networking/ip-sysctl.rst).
        netns: where to set it (None: the host).
    """

    key: str = attrs.field(validator=rules.sysctl_key)
    value: str = attrs.field(converter=_int_to_text)

    @value.validator
    def _check_value(self, attribute: attrs.Attribute, value: str) -> None:
        _sysctl_value(self, "value", value)

    default: str = attrs.field(default="0", converter=_int_to_text)

    @default.validator
    def _check_default(self, attribute: attrs.Attribute, value: str) -> None:
        _sysctl_value(self, "default", value)

    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)

    @property
    def name(self) -> str:
        return self.key

    @property
    def step_key(self) -> str:
        return f"sysctl {self.key}@{self.netns or 'host'}"

    def restore_command(self, value: str) -> Command:
        """``sysctl -w KEY=VALUE`` that puts ``value`` back."""
        return sysctl_w(self.key, value, netns=self.netns, step=self.step_key)

    def steps(self, ctx: RenderContext, covered_by: str | None = None) -> list[Step]:
        k = self.step_key
        forwarding = self.key == "net.ipv4.ip_forward"
        if forwarding and self.netns is not None:
            why = (f"With ip_forward=1 inside {self.netns}, it routes packets between its own links: a router. "
                   "A packet that arrives on one link for a subnet behind another leaves there with its TTL one "
                   "lower (a new namespace starts with forwarding off, and drops such packets). "
                   "The namespace takes the setting with it when it is deleted.")
        elif forwarding:
            why = ("With ip_forward=1 the kernel routes packets between its links, so what the "
                   "containers send to their gateway can leave through another link. "
                   f"Taking the network down puts back the value it had before (else {self.default}).")
        else:
            why = f"Set {self.key}; taking the network down puts back the value it had before (else {self.default})."
        title = (("turn on IP forwarding" + (f" in {self.netns} (a router)" if self.netns else ""))
                 if (self.key, self.value) == ("net.ipv4.ip_forward", "1") else f"set {self.key}={self.value}")
        return [
            Step(
                key=k,
                title=title,
                why=why,
                up=(sysctl_w(self.key, self.value, netns=self.netns, step=k),),
                down=(self.restore_command(self.default),),
                covered_by=covered_by,
            )
        ]


def ip_forward(netns: str | None = None) -> Sysctl:
    """The ``net.ipv4.ip_forward=1`` sysctl (kernel default 0; Documentation/networking/ip-sysctl.rst)."""
    return Sysctl("net.ipv4.ip_forward", "1", default="0", netns=netns)


@attrs.frozen
class NatRule:
    """Source NAT for a subnet: ``-t nat -A POSTROUTING -s SUBNET -j MASQUERADE`` (iptables-extensions(8)).

    Attributes:
        source: the subnet whose packets leave with the outgoing link's address.
        out_interface: only packets leaving through this link (``-o``), or None for any.
        not_out_interface: not packets leaving through this link (``! -o``);
            Docker excludes its bridge this way, so that traffic between two
            containers on the bridge keeps its source address (with
            ``net.bridge.bridge-nf-call-iptables=1`` bridged traffic passes
            POSTROUTING too, and the lesson's rule rewrites it to the
            gateway's address).
        comment: a comment stored with the rule (``-m comment --comment``), or
            None; a tagged network sets ``bridgenet:NAME`` here.
        netns: where the rule lives (None: the host).
    """

    source: IPv4Network = attrs.field(converter=rules.to_network, validator=rules.network)
    out_interface: str | None = attrs.field(default=None, validator=rules.optional_ifname)
    not_out_interface: str | None = attrs.field(default=None, validator=rules.optional_ifname)
    comment: str | None = attrs.field(default=None, validator=rules.comment)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)

    @property
    def name(self) -> str:
        return f"MASQUERADE {self.source}"

    @property
    def step_key(self) -> str:
        out = f" -o {self.out_interface}" if self.out_interface else ""
        out += f" ! -o {self.not_out_interface}" if self.not_out_interface else ""
        return f"nat {self.source}{out}@{self.netns or 'host'}"

    def rule(self, comment: str | None = None) -> tuple[str, ...]:
        """The rule as iptables-save prints it after ``-A POSTROUTING``."""
        spec: list[str] = ["-s", str(self.source)]
        if self.out_interface:
            spec += ["-o", self.out_interface]
        if self.not_out_interface:
            spec += ["!", "-o", self.not_out_interface]
        comment = self.comment if self.comment is not None else comment
        if comment:
            spec += ["-m", "comment", "--comment", comment]
        spec += ["-j", "MASQUERADE"]
        return tuple(spec)

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        spec = self.rule(ctx.tag)
        return [
            Step(
                key=k,
                title=f"masquerade what leaves from {self.source}",
                why=(
                    f"Hosts beyond the gateway have no route back to {self.source}. MASQUERADE in the "
                    "nat table's POSTROUTING chain rewrites the source of outgoing packets to the "
                    "address of the link they leave by, and conntrack maps the replies back. "
                    "(Port publishing is the mirror image: DNAT in PREROUTING.)"
                ),
                up=(iptables("-t", "nat", "-A", "POSTROUTING", *spec, netns=self.netns, step=k,
                             effect=RulePresent("nat", "POSTROUTING", spec, self.netns)),),
                down=(iptables("-t", "nat", "-D", "POSTROUTING", *spec, netns=self.netns, step=k,
                               effect=RuleAbsent("nat", "POSTROUTING", spec, self.netns)),),
            )
        ]


@attrs.frozen
class ForwardRule:
    """Let a bridge's traffic through the filter table's FORWARD chain, whatever FORWARD holds (iptables(8)).

    ``-A BRIDGENET-FORWARD -i BRIDGE -j ACCEPT`` and ``-A BRIDGENET-FORWARD
    -o BRIDGE -j ACCEPT``, in bridgenet's own chain, which FORWARD jumps to
    first thing (:class:`bridgenet.firewall.FilterChain`; a network with a
    ForwardRule gets that shared step added before it). Appended to FORWARD
    itself, as before, they would never match behind a final ``-j REJECT``
    (some distributions' default). Needed where another tool set the
    FORWARD policy to DROP (Docker does) or ends FORWARD with a REJECT:
    there the lesson's network routes nothing out, even with
    ``ip_forward=1`` and MASQUERADE, and, with br_netfilter, nothing passes
    between two containers on the bridge either.

    Attributes:
        bridge: the bridge whose traffic to accept.
        comment: a comment stored with the rules, or None (a tagged network
            sets ``bridgenet:NAME``).
    """

    bridge: str = attrs.field(validator=rules.ifname)
    comment: str | None = attrs.field(default=None, validator=rules.comment)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)

    @property
    def name(self) -> str:
        return f"FORWARD {self.bridge}"

    @property
    def step_key(self) -> str:
        return f"forward {self.bridge}@{self.netns or 'host'}"

    @property
    def chain(self) -> str:
        """The chain the rules go into, ``BRIDGENET-FORWARD``."""
        return FORWARD_CHAIN

    def rules(self, comment: str | None = None) -> list[tuple[str, ...]]:
        """The two rules, as iptables-save prints them after ``-A BRIDGENET-FORWARD``."""
        comment = self.comment if self.comment is not None else comment
        tail = ("-m", "comment", "--comment", comment, "-j", "ACCEPT") if comment else ("-j", "ACCEPT")
        return [("-i", self.bridge, *tail), ("-o", self.bridge, *tail)]

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        specs = self.rules(ctx.tag)
        chain = self.chain
        return [
            Step(
                key=k,
                title=f"accept {self.bridge}'s traffic in the chain {chain} (jumped to from the top of FORWARD)",
                why=(
                    "Where another tool set the FORWARD policy to DROP (Docker does), or FORWARD ends with "
                    f"-j REJECT, routed traffic from and to {self.bridge} is dropped even with forwarding on "
                    "(and with br_netfilter, bridged traffic between its containers too); these two rules "
                    "let it through, before anything FORWARD holds."
                ),
                up=tuple(
                    iptables("-A", chain, *spec, netns=self.netns, step=k,
                             effect=RulePresent("filter", chain, spec, self.netns))
                    for spec in specs
                ),
                down=tuple(
                    iptables("-D", chain, *spec, netns=self.netns, step=k,
                             effect=RuleAbsent("filter", chain, spec, self.netns))
                    for spec in reversed(specs)
                ),
            )
        ]


NetworkObject = (
    Bridge | Namespace | VethPair | Address | Route | Sysctl | NatRule | ForwardRule | FilterChain | Isolation
)
