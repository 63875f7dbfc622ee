"""The picture of a network: what ``bridgenet graph`` draws, taken from the model alone.

:func:`picture` reads a :class:`bridgenet.network.Network` (its objects,
never the host) into a :class:`Picture`: boxes (the host and each
namespace, with their interfaces and notes), the bridges the boxes plug
into, the bare veth links between boxes, and the source NAT towards the
upstream. The renderers draw a picture: ``diagram_text.py`` for a terminal,
``diagram_formats.py`` for Graphviz and Mermaid. :func:`graph` is the
entry point (``bridgenet.graph``).

What is shown, and from which object:

* a bridge (:class:`Bridge`): its name and MTU; the host's address on it
  (an :class:`Address` with ``dev`` = the bridge, in the host) is an
  interface of the host box, marked ``(gateway)`` when a route goes via it;
* a veth pair (:class:`VethPair`) with a ``master``: the container end
  (``peer``, with ``address``) is an interface of its namespace's box,
  plugged into the bridge through the host end (``name``, the bridge port);
* a veth pair without ``master``: a bare link between the box of
  ``name_netns`` (the host when None) and the box of ``netns``;
* a namespace with ``net.ipv4.ip_forward=1`` (:class:`Sysctl`) is a
  router; the host's own forwarding is noted on the host box;
* routes (:class:`Route`): on their namespace's box, at most
  :data:`MAX_ROUTES` of them (then a count of the rest);
* MASQUERADE (:class:`NatRule`) in the host: an edge from the host to the
  upstream (what lies beyond the host's uplink); in a namespace: a note;
* FORWARD accept rules and isolation (``firewall.py``): a note per bridge;
* IPv6 addresses (``VethPair.address6``, IPv6 ``Address``) and published ports
  (:func:`_published`).

Deterministic: everything follows the network's own order
(``Network.ordered``); nothing is sorted by hash or read from the host.
"""

from __future__ import annotations


import attrs

from .addressing import Address, Route
from .errors import ValidationError
from .firewall import ForwardRule, Isolation
from .links import Bridge, Namespace, VethPair
from .masquerade import NatRule
from .sysctls import Sysctl

FORMATS = ("text", "dot", "mermaid")
"""The formats :func:`graph` draws."""

MAX_ROUTES = 4
"""Routes shown per box; the rest are counted (``… and 3 more routes``)."""

HOST = ""
"""The key of the host's box (no namespace has an empty name, so a namespace may be called ``host``)."""

UPSTREAM = "upstream (beyond the host's uplink)"
"""What the NAT arrow points to, in every format."""


@attrs.frozen
class Iface:
    """One interface in a box.

    Attributes:
        name: the interface name in the box's namespace, e.g. ``"veth4"``.
        addresses: its addresses with prefix length, IPv4 first, as text.
        bridge: the bridge it is plugged into (directly for the bridge's own
            host interface, else through ``port``), or None.
        port: the bridge port that carries it: the veth's host end
            (``"brid4"``); None for the bridge itself and for bare links.
        link: the index in :attr:`Picture.links` of its bare link, or None.
        gateway: one of its addresses is a route's gateway.
        mtu: its MTU in bytes, when set.
    """

    name: str
    addresses: tuple[str, ...] = ()
    bridge: str | None = None
    port: str | None = None
    link: int | None = None
    gateway: bool = False
    mtu: int | None = None


@attrs.frozen
class Box:
    """The host or a namespace.

    Attributes:
        key: :data:`HOST` (``""``) or the namespace's name.
        title: what the box is headed with, e.g. ``"r1 (router: ip_forward=1)"``.
        ifaces: its interfaces, in the network's order.
        notes: one line each: routes, NAT inside a namespace, other sysctls, published ports.
        host: this is the host's box.
        router: the box forwards (``net.ipv4.ip_forward=1``).
    """

    key: str
    title: str
    ifaces: tuple[Iface, ...] = ()
    notes: tuple[str, ...] = ()
    host: bool = False
    router: bool = False


@attrs.frozen
class BridgeNode:
    """A bridge: ``label`` is its name with its MTU; ``notes``: its FORWARD accept and isolation rules."""

    name: str
    label: str
    notes: tuple[str, ...] = ()


@attrs.frozen
class Link:
    """A bare veth between two boxes: ``a``/``b`` are ``(box key, interface name)``; ``mtu`` in bytes or None."""

    a: tuple[str, str]
    b: tuple[str, str]
    mtu: int | None = None


@attrs.frozen
class Picture:
    """A network as :func:`picture` reads it: what every renderer draws.

    Attributes:
        name: the network's name.
        boxes: the host's box first, then each namespace's, in the network's order.
        bridges: in the network's order.
        links: the bare veth links.
        nat: one line per MASQUERADE rule of the host, e.g. ``"MASQUERADE 10.201.0.0/24"``;
            non-empty means traffic leaves for the upstream.
        published: one line per published port, e.g. ``"tcp 0.0.0.0:8080 -> web 10.88.0.10:80"``.
    """

    name: str
    boxes: tuple[Box, ...]
    bridges: tuple[BridgeNode, ...]
    links: tuple[Link, ...] = ()
    nat: tuple[str, ...] = ()
    published: tuple[str, ...] = ()

    def box(self, key: str) -> Box:
        return next(b for b in self.boxes if b.key == key)


# --- published ports ---------------------------------------------------------------------------------------


def _published(obj: object) -> str | None:
    """A published port (:class:`bridgenet.ports.PublishedPort`) as one line, e.g.
    ``tcp 0.0.0.0:8080 -> web 10.88.0.10:80``; None for any other object."""
    from .ports import PublishedPort

    if not isinstance(obj, PublishedPort):
        return None
    m, six = obj.mapping, obj.family == 6
    host_ip = ("[::]" if six else "0.0.0.0") if m.host_ip is None else (f"[{m.host_ip}]" if six else str(m.host_ip))
    to_ip = f"[{obj.address}]" if six else str(obj.address)
    return f"{m.proto} {host_ip}:{m.host_port} -> {obj.container} {to_ip}:{m.container_port}"


# --- reading a network ------------------------------------------------------------------------------------


def _ip_of(text: str) -> str:
    return text.split("/", 1)[0]


def picture(network: object) -> Picture:
    """Read ``network`` (a :class:`bridgenet.network.Network`) into a :class:`Picture`; runs nothing.

    Raises:
        ValidationError: ``network`` is not a Network.
    """
    from .network import Network

    if not isinstance(network, Network):
        raise ValidationError("graph", "network", "a bridgenet.Network", type(network).__name__)
    objs = network.ordered
    gateways = {str(o.via) for o in objs if isinstance(o, Route)}
    forwarding = {o.netns for o in objs if isinstance(o, Sysctl) and o.key == "net.ipv4.ip_forward"
                  and o.value == "1"}
    # interfaces per box, in order: key -> {ifname: Iface fields}
    order: list[str] = [HOST]
    ifaces: dict[str, dict[str, dict]] = {HOST: {}}
    notes: dict[str, list[str]] = {HOST: []}
    routes: dict[str, list[str]] = {HOST: []}

    def box(netns: str | None) -> str:
        key = HOST if netns is None else netns
        if key not in ifaces:
            order.append(key)
            ifaces[key] = {}
            notes[key] = []
            routes[key] = []
        return key

    def iface(netns: str | None, name: str) -> dict:
        return ifaces[box(netns)].setdefault(name, {"name": name, "addresses": []})

    bridges: list[BridgeNode] = []
    bridge_notes: dict[str, list[str]] = {}
    links: list[Link] = []
    nat: list[str] = []
    published: list[str] = []
    for o in objs:
        if isinstance(o, Bridge):
            bridge_notes[o.name] = []
            bridges.append(BridgeNode(o.name, o.name if o.mtu is None else f"{o.name} MTU {o.mtu}"))
        elif isinstance(o, Namespace):
            box(o.name)
        elif isinstance(o, VethPair):
            end = iface(o.netns, o.peer)
            if o.address is not None:
                end["addresses"].append(str(o.address))
            if o.address6 is not None:
                end["addresses"].append(str(o.address6))
            end["mtu"] = o.mtu
            if o.master is not None:
                end.update(bridge=o.master, port=o.name)
            else:
                near = iface(o.name_netns, o.name)
                near["mtu"] = o.mtu
                near["link"] = end["link"] = len(links)
                links.append(Link((box(o.name_netns), o.name), (box(o.netns), o.peer), o.mtu))
        elif isinstance(o, Address):
            f = iface(o.netns, o.dev)
            f["addresses"].append(str(o.address))  # either family
            if o.netns is None and o.dev in bridge_notes:
                f["bridge"] = o.dev
        elif isinstance(o, Route):
            routes[box(o.netns)].append(f"{o.dst} via {o.via}")
        elif isinstance(o, Sysctl):
            if not (o.key == "net.ipv4.ip_forward" and o.value == "1"):
                notes[box(o.netns)].append(f"sysctl {o.key}={o.value}")
        elif isinstance(o, NatRule):
            text = f"MASQUERADE {o.source}" + (f" out {o.out_interface}" if o.out_interface else "") + (
                f" (not out {o.not_out_interface})" if o.not_out_interface else "")
            if o.netns is None:
                nat.append(text)
            else:
                notes[box(o.netns)].append(text)
        elif isinstance(o, (ForwardRule, Isolation)) and o.netns is None and o.bridge in bridge_notes:
            note = ("FORWARD accepts the bridge's traffic" if isinstance(o, ForwardRule)
                    else "isolated from other networks")  # once, whatever the family (iptables, ip6tables)
            if note not in bridge_notes[o.bridge]:
                bridge_notes[o.bridge].append(note)
        else:
            line = _published(o)
            if line is not None:
                published.append(line)
    boxes = []
    for key in order:
        rs = routes[key]
        shown = [f"route {r}" for r in rs[:MAX_ROUTES]]
        if len(rs) > MAX_ROUTES:
            shown.append(f"... and {len(rs) - MAX_ROUTES} more routes")
        ns = None if key == HOST else key
        router = ns in forwarding
        if key == HOST:
            title = "host (ip_forward=1)" if router else "host"
            extra = [f"publish {p}" for p in published]
        else:
            name = f"netns {key}" if key == "host" else key  # not to be taken for the host's box
            title = f"{name} (router: ip_forward=1)" if router else name
            extra = []
        made = tuple(Iface(name=f["name"], addresses=tuple(f["addresses"]), bridge=f.get("bridge"),
                           port=f.get("port"), link=f.get("link"), mtu=f.get("mtu"),
                           gateway=any(_ip_of(a) in gateways for a in f["addresses"]))
                     for f in ifaces[key].values())
        boxes.append(Box(key, title, made, tuple([*shown, *notes[key], *extra]),
                         host=key == HOST, router=router))
    return Picture(
        name=network.name,
        boxes=tuple(boxes),
        bridges=tuple(attrs.evolve(b, notes=tuple(bridge_notes[b.name])) for b in bridges),
        links=tuple(links),
        nat=tuple(nat),
        published=tuple(published),
    )


def graph(network: object, format: str = "text", ascii: bool = False) -> str:  # noqa: A002
    """A diagram of ``network``, drawn from its model alone (no root, nothing run).

    Args:
        network: a :class:`bridgenet.network.Network` (e.g. ``bridgenet.tutorial()`` or
            ``bridgenet.config.load("net.toml")``).
        format: ``"text"`` (box-drawing characters, for a terminal), ``"dot"``
            (Graphviz: ``dot -Tsvg``) or ``"mermaid"`` (a ``flowchart`` for Markdown).
        ascii: with ``"text"``: plain ASCII only (``+ - |``).

    Returns:
        The diagram: lines ending in ``\\n``, the same for the same network.

    Raises:
        ValidationError: an unknown format, ``ascii`` with a format other than text,
            or a value that is not a Network.
    """
    if format not in FORMATS:
        raise ValidationError("graph", "format", f"one of {', '.join(FORMATS)}", format)
    if not isinstance(ascii, bool):
        raise ValidationError("graph", "ascii", "true or false", ascii)
    if ascii and format != "text":
        raise ValidationError("graph", "ascii", "plain ASCII goes with the text format", format)
    pic = picture(network)
    if format == "text":
        from .diagram_text import render_text

        return render_text(pic, ascii=ascii)
    from .diagram_formats import render_dot, render_mermaid

    return render_dot(pic) if format == "dot" else render_mermaid(pic)
