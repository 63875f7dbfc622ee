"""Parsing machine output into values: ``ip -details -json`` links and routes (ip(8) ``-json``), ``iptables -S``.

:class:`Link` and :class:`RouteEntry` are what ``state.py`` reads live state
into; nothing here runs anything.
"""

from __future__ import annotations

import json
import shlex
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

import attrs


@attrs.frozen
class Link:
    """A link as ``ip -d -json addr show`` reports it.

    Attributes:
        name: ifname.
        kind: ``linkinfo.info_kind`` (``"bridge"``, ``"veth"``, ...) or None.
        ifindex: the link's index in its namespace.
        master: the bridge it is a port of, or None.
        flags: e.g. ``("BROADCAST", "MULTICAST", "UP", "LOWER_UP")``.
        operstate: ``"UP"``, ``"DOWN"``, ``"LOWERLAYERDOWN"``, ...
        mtu: bytes.
        alias: ``ifalias`` or None.
        peer: for a veth whose peer is in the same namespace, the peer's name.
        peer_index: ``link_index``: the peer's ifindex (in the peer's namespace).
        peer_netnsid: ``link_netnsid``: set when the peer is in another namespace.
        addresses: IPv4 addresses with prefix length.
        broadcasts: the broadcast address of each of ``addresses`` (or None).
        addresses6: IPv6 addresses of scope ``global`` (unique local ones
            too) with prefix length, tentative or not; the kernel's own
            link-local fe80:: addresses (scope ``link``) and ``::1`` are left
            out, so that they never look like a conflict.
        stp_state: for a bridge, ``linkinfo.info_data.stp_state`` (0: STP off,
            1: kernel STP, 2: user-space STP); None for other links.
        forward_delay: for a bridge, ``linkinfo.info_data.forward_delay`` in
            centiseconds (clock_t, USER_HZ = 100: ``ip`` prints the value of
            /sys/class/net/BR/bridge/forward_delay, 1500 = 15 s by default;
            measured here); None for other links.
        group: the link group (ip-link(8) ``group``) as ``ip -json`` prints
            it: ``"default"`` for group 0, else its number (or its name from
            ``/etc/iproute2/group``).
    """

    name: str
    kind: str | None
    ifindex: int
    master: str | None = None
    flags: tuple[str, ...] = ()
    operstate: str = ""
    mtu: int = 0
    alias: str | None = None
    peer: str | None = None
    peer_index: int | None = None
    peer_netnsid: int | None = None
    addresses: tuple[IPv4Interface, ...] = ()
    broadcasts: tuple[IPv4Address | None, ...] = ()
    stp_state: int | None = None
    forward_delay: int | None = None
    group: str | None = None
    addresses6: tuple[IPv6Interface, ...] = ()
    hairpin: bool | None = None

    @property
    def up(self) -> bool:
        return "UP" in self.flags


@attrs.frozen
class RouteEntry:
    """A route of the main table: ``dst`` (``"default"`` or CIDR), ``gateway``, ``dev``, ``protocol``."""

    dst: str
    gateway: str | None
    dev: str | None
    protocol: str | None = None
    scope: str | None = None


def _json_docs(text: str) -> list:
    """Split concatenated JSON documents (``ip -json -batch`` prints one per command)."""
    dec = json.JSONDecoder()
    out, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        doc, i = dec.raw_decode(text, i)
        out.append(doc)
    return out


def parse_links(doc: list[dict]) -> dict[str, Link]:
    """Parse ``ip -d -json addr show`` output into ``{name: Link}``."""
    links: dict[str, Link] = {}
    for item in doc:
        name = item.get("ifname")
        if not name:
            continue
        addrs, bcasts, addrs6 = [], [], []
        for a in item.get("addr_info", []):
            if a.get("family") == "inet":
                addrs.append(IPv4Interface(f"{a['local']}/{a['prefixlen']}"))
                b = a.get("broadcast")
                bcasts.append(IPv4Address(b) if b else None)
            elif a.get("family") == "inet6" and a.get("scope") == "global":
                addrs6.append(IPv6Interface(f"{a['local']}/{a['prefixlen']}"))
        info = item.get("linkinfo") or {}
        data = info.get("info_data") if info.get("info_kind") == "bridge" else None
        data = data if isinstance(data, dict) else {}
        port = info.get("info_slave_data") if info.get("info_slave_kind") == "bridge" else None
        links[name] = Link(
            name=name,
            kind=info.get("info_kind"),
            ifindex=int(item.get("ifindex", 0)),
            master=item.get("master"),
            flags=tuple(item.get("flags", ())),
            operstate=item.get("operstate", ""),
            mtu=int(item.get("mtu", 0)),
            alias=item.get("ifalias"),
            peer=item.get("link"),
            peer_index=item.get("link_index"),
            peer_netnsid=item.get("link_netnsid"),
            addresses=tuple(addrs),
            broadcasts=tuple(bcasts),
            stp_state=_int_or_none(data.get("stp_state")),
            forward_delay=_int_or_none(data.get("forward_delay")),
            group=str(item["group"]) if item.get("group") is not None else None,
            addresses6=tuple(addrs6),
            hairpin=bool(port.get("hairpin")) if isinstance(port, dict) else None,
        )
    return links


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_routes(doc: list[dict]) -> tuple[RouteEntry, ...]:
    """Parse ``ip -json route show`` output (main table, IPv4)."""
    return tuple(
        RouteEntry(r.get("dst", ""), r.get("gateway"), r.get("dev"), r.get("protocol"), r.get("scope"))
        for r in doc
    )


def is_route6(entry: dict) -> bool:
    """Whether an entry of ``ip -json route show table all`` is an IPv6 route of the main table.

    ``table all`` lists both families (``ip route show`` alone only IPv4, and
    a batch line takes no ``-6``); main-table entries carry no ``table`` key
    (``"table": "main"`` with ``-d``), and only IPv6 ones carry ``pref``
    (RTA_PREF; measured with iproute2 6.1).
    """
    if entry.get("table", "main") != "main":
        return False
    return "pref" in entry or ":" in str(entry.get("dst", "")) or ":" in str(entry.get("gateway") or "")


def parse_routes6(doc: list[dict]) -> tuple[RouteEntry, ...]:
    """The IPv6 main-table routes of ``ip -json route show table all`` output (:func:`is_route6`)."""
    return parse_routes([r for r in doc if isinstance(r, dict) and is_route6(r)])


def parse_rules(text: str, chain: str) -> list[tuple[str, ...]]:
    """Rules of ``chain`` from ``iptables -S`` output, each as the argv after ``-A CHAIN``.

    ``#`` lines (a warning about legacy tables, KERNEL-NOTES) are skipped.
    """
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = shlex.split(line)
        if len(parts) >= 2 and parts[0] == "-A" and parts[1] == chain:
            out.append(tuple(parts[2:]))
    return out


def parse_chains(text: str) -> frozenset[str]:
    """Every chain named in ``iptables -S`` output of a whole table (``-P`` built-in, ``-N`` user-defined)."""
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("-P", "-N"):
            out.add(parts[1])
    return frozenset(out)
