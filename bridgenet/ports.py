"""Published ports: a container's port reached through the host's addresses (Docker's ``-p``).

``ports = ["8080:80", "127.0.0.1:8081:80", "5353:53/udp"]`` on a container
(:func:`parse_port`: ``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]``, IPv6
host addresses in brackets) becomes, in bridgenet's own chains and tagged
``bridgenet:NAME`` (the rules as ``iptables -S`` prints them back):

* :class:`DnatChain`, shared by every network (key ``"chain nat
  BRIDGENET-DNAT@host"``, handed over like the other ``"chain "`` steps):
  ``iptables -t nat -N BRIDGENET-DNAT``, jumped to from the top of
  PREROUTING (what arrives from outside and from the containers) and of
  OUTPUT (the host's own connections), both ``-m addrtype --dst-type
  LOCAL``: only what is addressed to one of the host's own addresses is
  translated, never a connection passing through to port 8080 elsewhere.
* :class:`PublishedPort`, per mapping: ``-A BRIDGENET-DNAT [-d HOST_IP/32]
  -p tcp -m tcp --dport 8080 -j DNAT --to-destination CIP:80``; in the
  filter table ``-A BRIDGENET-FORWARD -d CIP/32 ! -i BR -o BR -p tcp -m tcp
  --dport 80 -j ACCEPT`` (the published flow, and only it, passes a FORWARD
  DROP policy); and ``-t nat -A POSTROUTING -s CIP/32 -d CIP/32 -p tcp -m
  tcp --dport 80 -j MASQUERADE`` for the container reaching itself through
  the host (its reply would go straight to itself, un-NATed). No SNAT
  otherwise: the server sees the client's real address.
* :class:`Hairpin`, per published container: ``bridge link set dev VETH
  hairpin on`` (bridge(8)). With br_netfilter the DNAT
  happens at the bridge, and the frame of a container reaching its own
  published port must leave by the port it came in by (measured here: off,
  the connection times out; neighbours on the bridge need no hairpin).
* :class:`LocalnetGuard`, per bridge with a ``127.x`` publish (the host only
  reaches it): ``net.ipv4.conf.BR.route_localnet=1`` (a
  :class:`~bridgenet.sysctls.Sysctl`; without it the DNATed packet with its
  loopback source is a martian and is dropped: measured, a time-out),
  ``-t nat -A POSTROUTING -s 127.0.0.0/8 -o BR -j MASQUERADE`` (only the
  loopback-sourced packets, narrower than Docker's ``--src-type LOCAL``),
  and in ``BRIDGENET-INPUT`` (jumped to from the top of INPUT) kube-proxy's
  guard against CVE-2020-8558 (route_localnet lets neighbours on the link
  reach the host's 127.0.0.1-bound services): ``! -s 127.0.0.0/8 -d
  127.0.0.0/8 -i BR -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j
  DROP``. A ``127.x`` rule in BRIDGENET-DNAT also carries ``-m addrtype
  --src-type LOCAL``, so a packet from outside addressed to 127.0.0.1 is
  never translated.

IPv6 (Docker's semantics): an entry without a host address publishes on every
address of both families the container has (its ``address`` with iptables,
its ``address6`` with ip6tables); a bracketed IPv6 host address
(``"[2001:db8::2]:8080:80"``) on IPv6 only, an IPv4 one on IPv4 only. The
ip6tables objects are the same classes with ``family`` 6: the chain
``BRIDGENET-DNAT`` of the ip6tables nat table (key ``"chain nat
BRIDGENET-DNAT@host ip6"``), ``-d HOST_IP/128``, ``--to-destination
[CIP6]:80`` (the form ``ip6tables -S`` prints back, measured with iptables
1.8.9), the accept in the ip6tables ``BRIDGENET-FORWARD`` and the
MASQUERADE ``-s CIP6/128 -d CIP6/128``. ``[::1]`` is refused
(:data:`~bridgenet.portsyntax.LOOPBACK6_REFUSED`: IPv6 has no
route_localnet).

The syntax is parsed in ``portsyntax.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address

import attrs

from . import portreach, rules
from .commands import ChainAbsent, ChainPresent, Command, LinkHairpin, RuleAbsent, RulePresent, Step, iptables
from .errors import ValidationError
from .firewall import FORWARD_CHAIN, CHAIN_STEP_PREFIX, FilterChain, _check_comment, _family_suffix
from .portsyntax import LOOPBACK6_REFUSED, PortMapping, parse_port, parse_ports  # noqa: F401  (re-exported)
from .render import RenderContext
from .sysctls import Sysctl

DNAT_CHAIN = "BRIDGENET-DNAT"
"""nat chain of every published port, jumped to from PREROUTING and OUTPUT (local destinations only)."""

INPUT_CHAIN = "BRIDGENET-INPUT"
"""filter chain jumped to from the top of INPUT: the route_localnet guard (CVE-2020-8558)."""

_LOCAL_DST = ("-m", "addrtype", "--dst-type", "LOCAL")


def _ipt(family: int, *args: str, step: str, effect: object) -> Command:
    """``commands.iptables`` with the family first (``ip6tables`` for 6)."""
    return iptables(*args, step=step, effect=effect, family=family)  # type: ignore[arg-type]


def _match(proto: str, port: int) -> tuple[str, ...]:
    return ("-p", proto, "-m", proto, "--dport", str(port))


def _tag(comment: str | None) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", comment) if comment else ()


@attrs.frozen
class DnatChain:
    """``BRIDGENET-DNAT`` in the nat table, jumped to from the top of PREROUTING and OUTPUT (shared step).

    Down: the two jumps deleted, then ``-X`` (by the last network using it,
    as for :class:`~bridgenet.firewall.FilterChain`). ``family`` 6: the same
    in the ip6tables nat table (its own shared step, key ending in ``" ip6"``).
    """

    shared_chain = True  # (not an attrs field) see firewall.chains_needed
    family: int = attrs.field(default=4, validator=attrs.validators.in_((4, 6)))
    netns: None = None

    @property
    def chain(self) -> str:
        return DNAT_CHAIN

    @property
    def name(self) -> str:
        return f"nat {DNAT_CHAIN}"

    @property
    def step_key(self) -> str:
        return f"{CHAIN_STEP_PREFIX}nat {DNAT_CHAIN}@host{_family_suffix(self.family)}"

    @property
    def jump(self) -> tuple[str, ...]:
        return (*_LOCAL_DST, "-j", DNAT_CHAIN)

    def reads(self) -> list[tuple[str, str, None]]:
        return [("nat", DNAT_CHAIN, None), ("nat", "PREROUTING", None), ("nat", "OUTPUT", None)]

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, f, j = self.step_key, self.family, self.jump
        up = [_ipt(f, "-t", "nat", "-N", DNAT_CHAIN, step=k, effect=ChainPresent("nat", DNAT_CHAIN, None, f))]
        down = []
        for chain in ("PREROUTING", "OUTPUT"):
            up.append(_ipt(f, "-t", "nat", "-I", chain, *j, step=k, effect=RulePresent("nat", chain, j, None, f)))
            down.insert(0, _ipt(f, "-t", "nat", "-D", chain, *j, step=k,
                                effect=RuleAbsent("nat", chain, j, None, f)))
        down.append(_ipt(f, "-t", "nat", "-X", DNAT_CHAIN, step=k, effect=ChainAbsent("nat", DNAT_CHAIN, None, f)))
        which = " of ip6tables" if f == 6 else ""
        return [Step(
            key=k, title=f"create the nat chain {DNAT_CHAIN}{which} and jump to it from PREROUTING and OUTPUT",
            why=(f"Published ports are destination NAT rules in bridgenet's own chain {DNAT_CHAIN}, shared by "
                 "its networks. PREROUTING sends it what arrives from outside and from the containers, OUTPUT "
                 "the host's own connections; both only for destinations that are the host's own addresses "
                 "(addrtype LOCAL), so a connection passing through to port 8080 elsewhere is left alone. "
                 "The last network going down removes it."),
            up=tuple(up), down=tuple(down))]


@attrs.frozen
class PublishedPort:
    """One published port: host ``mapping.host_port`` → ``address:mapping.container_port`` (see the module).

    Attributes:
        container: the container's namespace (messages and the step key).
        address: the container's address the connection is sent to: an
            IPv4Address (iptables) or an IPv6Address (ip6tables); its
            family is the object's :attr:`family`, and a host address in
            ``mapping`` must be of the same family.
        bridge: the bridge it is on (the filter rule's ``-o``).
        mapping: the parsed entry.
        comment: stored with the rules, or None (a tagged network sets ``bridgenet:NAME``).
    """

    container: str = attrs.field(validator=rules.netns_name)
    address: IPv4Address | IPv6Address = attrs.field(converter=lambda a: ip_address(a) if isinstance(a, str) else a)
    bridge: str = attrs.field(validator=rules.ifname)
    mapping: PortMapping = attrs.field(validator=attrs.validators.instance_of(PortMapping))
    comment: str | None = attrs.field(default=None)
    netns: None = None

    @comment.validator
    def _check_comment(self, attribute: attrs.Attribute, value: str | None) -> None:
        _check_comment(self, value)

    @address.validator
    def _check_address(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, (IPv4Address, IPv6Address)):
            raise ValidationError(f"Container {self.container}", "ports",
                                  "a published port goes to the container's IPv4 or IPv6 address", value)
        if self.mapping.family not in (None, value.version):
            raise ValidationError(f"Container {self.container}", "ports",
                                  f"a port published on an IPv{self.mapping.family} host address goes to the "
                                  f"container's IPv{self.mapping.family} address, not {value}", self.mapping.text)

    @property
    def family(self) -> int:
        """4 (iptables) or 6 (ip6tables): the family of :attr:`address`."""
        return self.address.version

    @property
    def name(self) -> str:
        return f"{self.container} {self.mapping.text}"

    @property
    def step_key(self) -> str:
        return f"publish {self.mapping.binding()}@host{_family_suffix(self.family)}"

    def needed_chains(self) -> list:
        """``BRIDGENET-DNAT`` of its family, and ``BRIDGENET-FORWARD`` for its filter rule (a ``127.x``
        publish has none) (``firewall.chains_needed``)."""
        dnat = DnatChain(family=self.family)
        if self.mapping.loopback:
            return [dnat]
        return [dnat, FilterChain(FORWARD_CHAIN, "FORWARD", family=self.family)]

    def reads(self) -> list[tuple[str, str, None]]:
        return [("nat", DNAT_CHAIN, None), ("nat", "POSTROUTING", None), ("filter", FORWARD_CHAIN, None)]

    def rules(self, comment: str | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
        """``[(table, chain, rule), ...]`` as ``iptables -S`` (``ip6tables -S``) prints them after ``-A CHAIN``.

        IPv6: ``/128`` host masks and ``--to-destination [CIP6]:PORT``
        (measured: ip6tables 1.8.9 prints the brackets back).
        """
        m, tag = self.mapping, _tag(self.comment if self.comment is not None else comment)
        host = "/128" if self.family == 6 else "/32"
        cip = str(self.address)
        to = f"[{cip}]" if self.family == 6 else cip
        dst = ("-d", f"{m.host_ip}{host}") if not m.every else ()
        local_only = ("-m", "addrtype", "--src-type", "LOCAL") if m.loopback else ()
        out = [("nat", DNAT_CHAIN, (*dst, *_match(m.proto, m.host_port), *local_only, *tag,
                                    "-j", "DNAT", "--to-destination", f"{to}:{m.container_port}"))]
        if not m.loopback:  # from the host only: never forwarded, never hairpinned
            out.append(("filter", FORWARD_CHAIN, ("-d", f"{cip}{host}", "!", "-i", self.bridge, "-o", self.bridge,
                                                  *_match(m.proto, m.container_port), *tag, "-j", "ACCEPT")))
            out.append(("nat", "POSTROUTING", ("-s", f"{cip}{host}", "-d", f"{cip}{host}",
                                               *_match(m.proto, m.container_port), *tag, "-j", "MASQUERADE")))
        return out

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, f = self.step_key, self.family
        specs = self.rules(ctx.tag)
        m = self.mapping
        up = tuple(_ipt(f, *(("-t", t) if t != "filter" else ()), "-A", c, *r, step=k,
                        effect=RulePresent(t, c, r, None, f)) for t, c, r in specs)
        down = tuple(_ipt(f, *(("-t", t) if t != "filter" else ()), "-D", c, *r, step=k,
                          effect=RuleAbsent(t, c, r, None, f)) for t, c, r in reversed(specs))
        every = "every IPv6 address of the host" if f == 6 else "every address of the host"
        on = "the host's own 127.0.0.1 (from the host only)" if m.loopback else (
            every if m.every else f"{m.host_ip}")
        return [Step(
            key=k, title=f"publish {self.container}'s {m.proto} port {m.container_port} as port {m.host_port} on {on}",
            why=(f"Destination NAT sends what reaches port {m.host_port} ({m.proto}) of {on} to "
                 f"{'[' + str(self.address) + ']' if f == 6 else self.address}:{m.container_port}; the server "
                 "sees the client's own address. "
                 + ("" if m.loopback else
                    f"The filter rule accepts that flow, and only it, towards {self.bridge} whatever FORWARD's "
                    f"policy; the MASQUERADE lets {self.container} reach itself through the host (hairpin).")),
            up=up, down=down)]


def hairpin_command(port: str, on: bool, *, step: str = "") -> Command:
    """``bridge link set dev PORT hairpin on|off`` (bridge(8)).

    A tool of its own (not an ``ip`` line), so that the batch runner runs it
    after the ports are plugged into their bridge (``batchplan.py``: other
    tools come last going up, first going down).
    """
    return Command("bridge", ("link", "set", "dev", port, "hairpin", "on" if on else "off"), step=step,
                   effect=LinkHairpin(port, on))


@attrs.frozen
class Hairpin:
    """``bridge link set dev PORT hairpin on`` (bridge(8)): a frame may leave by the port it came in by.

    Needed with br_netfilter for a container reaching its own published port
    through the host (measured here). Down: ``hairpin off``; the setting
    goes with the port when bridgenet created it.
    """

    port: str = attrs.field(validator=rules.ifname)
    container: str = attrs.field(validator=rules.netns_name)
    netns: None = None

    @property
    def name(self) -> str:
        return f"hairpin {self.port}"

    @property
    def step_key(self) -> str:
        return f"hairpin {self.port}@host"

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        return [Step(
            key=k, title=f"let {self.container} reach its own published ports through the host (hairpin on {self.port})",
            why=("The host's bridge netfilter translates the destination at the bridge, so the frame of a "
                 f"container connecting to its own published port must go back out of {self.port}, the port it "
                 "came in by: a bridge does not do that unless the port is in hairpin mode."),
            up=(hairpin_command(self.port, True, step=k),),
            down=(hairpin_command(self.port, False, step=k),),
            covered_by=f"link {self.port}")]


@attrs.frozen
class LocalnetGuard:
    """What a ``127.x`` publish on ``bridge`` needs besides route_localnet: the MASQUERADE and the CVE-2020-8558 guard.

    ``-t nat -A POSTROUTING -s 127.0.0.0/8 -o BR -j MASQUERADE`` (the host's
    loopback-sourced connections get the bridge's address) and ``-A
    BRIDGENET-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -i BR -m conntrack !
    --ctstate RELATED,ESTABLISHED,DNAT -j DROP`` (kube-proxy's fix: with
    route_localnet, a neighbour on the bridge could otherwise reach the
    host's 127.0.0.1-bound services).
    """

    bridge: str = attrs.field(validator=rules.ifname)
    comment: str | None = attrs.field(default=None)
    netns: None = None

    @property
    def name(self) -> str:
        return f"localnet {self.bridge}"

    @property
    def step_key(self) -> str:
        return f"localnet {self.bridge}@host"

    def needed_chains(self) -> list[InputChain]:
        """``BRIDGENET-INPUT`` (``firewall.chains_needed``)."""
        return [InputChain()]

    def reads(self) -> list[tuple[str, str, None]]:
        return [("nat", "POSTROUTING", None), ("filter", INPUT_CHAIN, None), ("filter", "INPUT", None)]

    def rules(self, comment: str | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
        tag = _tag(self.comment if self.comment is not None else comment)
        return [("nat", "POSTROUTING", ("-s", "127.0.0.0/8", "-o", self.bridge, *tag, "-j", "MASQUERADE")),
                ("filter", INPUT_CHAIN, ("!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-i", self.bridge,
                                         "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT",
                                         *tag, "-j", "DROP"))]

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        specs = self.rules(ctx.tag)
        return [Step(
            key=k, title=f"masquerade the host's 127.0.0.1 connections to {self.bridge}, and guard 127.0.0.0/8",
            why=("A port published on 127.0.0.1 is reached from the host only: its packets leave for "
                 f"{self.bridge} with the source 127.0.0.1, which route_localnet allows and MASQUERADE replaces "
                 "with the bridge's address. route_localnet would also let a neighbour on the bridge reach the "
                 "host's own 127.0.0.1 services (CVE-2020-8558): the INPUT rule drops such packets, as "
                 "kube-proxy does."),
            up=tuple(_ipt(4, *(("-t", t) if t != "filter" else ()), "-A", c, *r, step=k, effect=RulePresent(t, c, r))
                     for t, c, r in specs),
            down=tuple(_ipt(4, *(("-t", t) if t != "filter" else ()), "-D", c, *r, step=k,
                            effect=RuleAbsent(t, c, r)) for t, c, r in reversed(specs)))]


@attrs.frozen
class InputChain:
    """``iptables -N BRIDGENET-INPUT``, ``iptables -I INPUT -j BRIDGENET-INPUT``: a shared step, as
    :class:`~bridgenet.firewall.FilterChain` renders it (a class of its own, so that the FORWARD rules
    of a network do not wait for it in the dependency order)."""

    shared_chain = True  # (not an attrs field) see firewall.chains_needed
    netns: None = None

    @property
    def chain(self) -> str:
        return INPUT_CHAIN

    @property
    def name(self) -> str:
        return INPUT_CHAIN

    @property
    def step_key(self) -> str:
        return FilterChain(INPUT_CHAIN, "INPUT").step_key

    def reads(self) -> list[tuple[str, str, None]]:
        return [("filter", INPUT_CHAIN, None), ("filter", "INPUT", None)]

    def steps(self, ctx: RenderContext) -> list[Step]:
        return FilterChain(INPUT_CHAIN, "INPUT").steps(ctx)


def route_localnet(bridge: str) -> Sysctl:
    """``net.ipv4.conf.BRIDGE.route_localnet=1`` (Documentation/networking/ip-sysctl.rst: route_localnet)."""
    return Sysctl(f"net.ipv4.conf.{bridge}.route_localnet", "1", default="0")


# --- building ------------------------------------------------------------------------


@attrs.frozen
class Publish:
    """What :func:`port_objects` needs of one container: its ports and where they go.

    ``address``/``bridge``/``port``: its IPv4 address (of its first
    interface that has one), that interface's bridge and host end;
    ``address6``/``bridge6``/``port6``: the same for IPv6 (None: no IPv6).
    """

    container: str
    ports: tuple[str, ...]
    address: IPv4Interface | IPv4Address | None
    bridge: str | None
    port: str | None  # the host end of its first veth
    address6: IPv6Interface | IPv6Address | None = None
    bridge6: str | None = None
    port6: str | None = None

    def target(self, family: int) -> tuple[IPv4Address | IPv6Address, str, str | None] | None:
        """``(address, bridge, host end)`` for ``family`` (4 or 6), or None when the container has none."""
        a, b, p = (self.address6, self.bridge6, self.port6) if family == 6 else (self.address, self.bridge, self.port)
        if a is None or b is None:
            return None
        return (a.ip if isinstance(a, (IPv4Interface, IPv6Interface)) else a), b, p  # an Interface is an Address too


def _unreachable(m: PortMapping, available: list[int]) -> str:
    """The rule broken by an entry that publishes on no family of the container's."""
    if not available:
        return ("a published port goes to the container's address: give its (first) interface an address "
                "(or address6) on a bridge")
    if m.family == 6:
        return ("a port published on an IPv6 host address goes to the container's address6 (ip6tables), and this "
                "container has none: give it an address6, or publish on an IPv4 host address or on every "
                "address (no host address)")
    return ("a port published on an IPv4 host address goes to the container's IPv4 address, and this container "
            "has no IPv4 address (it is IPv6-only): give it an address, or publish on an IPv6 host address in brackets or on every "
            "address (no host address)")


def port_objects(publishes: Sequence[Publish], *, hosts: dict | None = None, owners: dict | None = None) -> list:
    """The objects the containers' ports make, in order (none when no container publishes a port).

    Per entry and per family it publishes on (:meth:`PortMapping.families`:
    both families the container has without a host address, else the host
    address's own), one :class:`PublishedPort`. The shared chains they need
    (``BRIDGENET-DNAT``, ``BRIDGENET-FORWARD``, ``BRIDGENET-INPUT``) are put
    before the first object needing them by the network, like every shared
    chain (``needed_chains``, ``firewall.chains_needed``).

    Raises:
        ValidationError: a bad entry (``[::1]`` included), a container without
            an address of the entry's family (naming it and ``ports[i]``),
            two entries of the network taking the same host port (same
            protocol and family, overlapping address); with ``hosts`` and
            ``owners`` (``portreach.py``): an entry only on families whose
            bridge has no host address, a host address that is a container's.
    """
    objs: list = []
    seen: list[tuple[int, PortMapping, str]] = []
    localnet: list[str] = []
    hairpins: list[Hairpin] = []
    for p in publishes:
        where = f"Container {p.container}"
        mappings = parse_ports(where, p.ports)
        available = [f for f in (4, 6) if p.target(f) is not None]
        bridges = {f: p.target(f)[1] for f in available}  # type: ignore[index]
        reachable = portreach.routed(available, bridges, hosts)
        for i, m in enumerate(mappings):
            field = f"ports[{i}]"
            wanted = m.families(reachable)
            if not wanted:
                rule = portreach.unrouted(m, available, bridges) if m.families(available) else _unreachable(m, available)
                raise ValidationError(where, field, rule, m.text)
            portreach.not_a_container(where, field, m, owners)
            for f in wanted:
                for g, other, whose in seen:
                    if g == f and m.overlaps(other):
                        raise ValidationError(where, field, f"each host port is published once: {m.binding()} "
                                              f"overlaps {other.text!r} of {whose} (IPv{f})", m.text)
                seen.append((f, m, f"container {p.container}"))
                target = p.target(f)
                assert target is not None
                address, bridge, port = target
                objs.append(PublishedPort(p.container, address, bridge, m))
                if m.loopback and bridge not in localnet:
                    localnet.append(bridge)
                if not m.loopback and port is not None and all(h.port != port for h in hairpins):
                    hairpins.append(Hairpin(port, p.container))
    tail: list = []
    for bridge in localnet:
        tail += [route_localnet(bridge), LocalnetGuard(bridge)]
    return [*objs, *hairpins, *tail]


PORT_CLASSES = (DnatChain, InputChain, PublishedPort, Hairpin, LocalnetGuard)


# --- conflicts (portconflicts.py), importable from here as before ---------------------

from .portconflicts import check_port_conflicts  # noqa: E402,F401
