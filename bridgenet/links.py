"""The links of a container network: :class:`Bridge`, :class:`Namespace`, :class:`VethPair` (ip-link(8), ip-netns(8)).

Each renders into :class:`bridgenet.commands.Step` values; fields are checked
when built (``rules.py``).
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface

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
    LinkPresent,
    LinkUp,
    NetnsAbsent,
    NetnsPresent,
    Step,
    ip,
)
from .render import RenderContext, _alias, _ifname_repeated, _mtu, _optional_ifname_repeated


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
        address6: the peer's IPv6 address with prefix length, e.g.
            ``fd00:30::10/64``, or None; added with ``nodad`` (usable at
            once, see :class:`bridgenet.addressing.Address`).
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
    address6: IPv6Interface | None = attrs.field(default=None, converter=rules.to_interface6,
                                                 validator=rules.optional_interface6, kw_only=True)

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
        if self.address6 is not None:
            undo.append(ip("addr", "del", str(self.address6), "dev", self.peer, netns=ns, step=pk,
                           effect=AddrAbsent(self.peer, self.address6, ns)))
        out.append(
            Step(
                key=pk,
                title=(
                    f"address and bring up the container side {self.peer}"
                    + (f" in {ns}" if ns else "")
                ),
                why=(
                    (f"{self.peer} gets {address}; " if self.address else "")
                    + (f"{self.peer} gets {self.address6} (nodad: usable at once); " if self.address6 else "")
                    + ("lo and the link go up" if ns is not None and ctx.brings_lo_up.get(ns) == self.name
                       else "the link goes up") + ". Until its peer "
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
        if self.address6 is not None:
            side.append(Command("ip", ("addr", "add", str(self.address6), "dev", self.peer, "nodad"), ns, pk,
                                AddrPresent(self.peer, self.address6, ns)))
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
