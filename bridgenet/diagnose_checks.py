"""The single checks of ``bridgenet diagnose``: each looks at one hop and names what breaks it.

Every check takes the :class:`~bridgenet.diagnose_state.View` (and the
network's model, when known) and returns a :class:`Problem` or None; it
records what it looked at as a :class:`Hop`. The fix is the command a
person would type (ip-link(8), ip-address(8), ip-route(8), sysctl(8),
iptables(8), conntrack(8)); it is None when no single command fixes it.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address

import attrs

from .diagnose_firewall import Packet, Table, delete_command, matches, verdict
from .diagnose_state import View

KINDS = (
    "link-down", "no-carrier", "port-down", "port-detached", "bridge-down", "port-not-forwarding", "mtu-mismatch",
    "no-address", "no-route", "no-default-route", "no-return-route", "gateway-unreachable", "ip-forward-off",
    "rp-filter", "forward-policy", "forward-rule", "firewall-rule", "no-masquerade", "stale-conntrack",
    "iptables-legacy", "port-closed", "no-reply",
)
"""Every ``Problem.kind``, roughly in the order the walk meets them."""


@attrs.frozen
class Problem:
    """The first thing that breaks the path.

    Attributes:
        kind: one of :data:`KINDS`.
        message: one or two sentences for a person.
        fix: the command that fixes it (a shell line), or None.
        where: the namespace it is in (None: the host).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    message: str
    fix: str | None = None
    where: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "fix": self.fix, "where": self.where or "host"}


@attrs.frozen
class Hop:
    """One thing looked at: ``where`` (a namespace or ``host``), ``what`` (e.g. ``link eth0``), ``ok``, ``detail``."""

    where: str
    what: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"where": self.where, "what": self.what, "ok": self.ok, "detail": self.detail}


def where(netns: str | None) -> str:
    return netns if netns is not None else "host"


def ip_cmd(netns: str | None, rest: str) -> str:
    """``ip [-n NS] REST`` as a person types it."""
    return f"ip {f'-n {netns} ' if netns else ''}{rest}"


def in_ns(netns: str | None, rest: str) -> str:
    return f"ip netns exec {netns} {rest}" if netns else rest


def _up(item: dict) -> bool:
    return "UP" in item.get("flags", [])


def _carrier(item: dict) -> bool:
    return "LOWER_UP" in item.get("flags", []) or item.get("operstate") == "UP"


def _kind(item: dict) -> str | None:
    return (item.get("linkinfo") or {}).get("info_kind")


def _port_state(item: dict) -> str | None:
    info = item.get("linkinfo") or {}
    if info.get("info_slave_kind") != "bridge":
        return None
    return (info.get("info_slave_data") or {}).get("state")


class Checker:
    """The checks bound to one view and (optionally) the network's model; ``hops`` collects what was seen."""

    def __init__(self, view: View, network: object | None = None) -> None:
        self.view = view
        self.network = network
        self.hops: list[Hop] = []

    def hop(self, netns: str | None, what: str, ok: bool, detail: str = "") -> None:
        self.hops.append(Hop(where(netns), what, ok, detail))

    # --- what the model says, when there is one ------------------------------------

    def _veth(self, **match: object):  # noqa: ANN202
        for v in getattr(self.network, "veths", []) if self.network is not None else []:
            if all(getattr(v, k) == val for k, val in match.items()):
                return v
        return None

    def expected_master(self, host_end: str) -> str | None:
        v = self._veth(name=host_end)
        return v.master if v is not None else None

    def expected_address(self, netns: str | None, ifname: str) -> str | None:
        v = self._veth(netns=netns, peer=ifname)
        return str(v.address) if v is not None and v.address is not None else None

    # --- a link and the cable behind it -------------------------------------------

    def link(self, netns: str | None, ifname: str, *, need_address: bool = False) -> Problem | None:
        """Link ``ifname`` in ``netns``, its veth peer, the bridge that peer is a port of, and their MTUs."""
        ns = self.view.spaces[netns]
        item = ns.links.get(ifname)
        if item is None:
            self.hop(netns, f"link {ifname}", False, "missing")
            return Problem("link-down", f"{where(netns)} has no link {ifname}", None, netns)
        if not _up(item):
            self.hop(netns, f"link {ifname}", False, "administratively DOWN")
            return Problem("link-down", f"link {ifname} in {where(netns)} is administratively down",
                           ip_cmd(netns, f"link set dev {ifname} up"), netns)
        if need_address and not ns.interfaces(ifname):
            want = self.expected_address(netns, ifname) or "ADDRESS/PREFIX"
            self.hop(netns, f"link {ifname}", False, "no IPv4 address")
            return Problem("no-address", f"link {ifname} in {where(netns)} has no IPv4 address",
                           ip_cmd(netns, f"addr add {want} dev {ifname}"), netns)
        found = self.view.peer(netns, ifname)
        if found is None:
            if _kind(item) == "veth" and not _carrier(item):
                self.hop(netns, f"link {ifname}", False, "up, NO-CARRIER, peer not found")
                return Problem("no-carrier", f"link {ifname} in {where(netns)} is up but has no carrier: its veth "
                               f"peer (ifindex {item.get('link_index')}) is down and in no namespace read here "
                               "(moved to another namespace?)", None, netns)
            self.hop(netns, f"link {ifname}", True, _addr_text(ns.interfaces(ifname)))
            return None
        peer_ns, peer = found
        pname = peer["ifname"]
        if not _up(peer) and not peer.get("master") and peer_ns is not None and self.expected_master(pname):
            self.hop(netns, f"link {ifname}", False, f"up, NO-CARRIER: its peer {pname} is in {peer_ns}")
            return Problem("no-carrier", f"link {ifname} in {where(netns)} is up but has no carrier: its peer {pname} "
                           f"is down in the namespace {peer_ns}, not in the host as a port of "
                           f"{self.expected_master(pname)}", None, netns)
        if not _up(peer):
            kind = "port-down" if peer.get("master") or self.expected_master(pname) else "link-down"
            self.hop(peer_ns, f"link {pname}", False, f"administratively DOWN (the other end of {ifname})")
            role = f"bridge port {pname} ({peer['master']})" if peer.get("master") else f"link {pname}"
            return Problem(kind, f"{role} in {where(peer_ns)}, the other end of {ifname} in {where(netns)}, is "
                           "administratively down: no carrier on the cable", ip_cmd(peer_ns, f"link set dev {pname} up"),
                           peer_ns)
        if not _carrier(item):
            self.hop(netns, f"link {ifname}", False, "up, NO-CARRIER")
            return Problem("no-carrier", f"link {ifname} in {where(netns)} is up but has no carrier", None, netns)
        self.hop(netns, f"link {ifname}", True, _addr_text(ns.interfaces(ifname)) + f" mtu {item.get('mtu')}")
        if item.get("mtu") != peer.get("mtu"):
            small, big = sorted([(item.get("mtu"), netns, ifname), (peer.get("mtu"), peer_ns, pname)],
                                key=lambda t: t[0] or 0)
            self.hop(peer_ns, f"link {pname}", False, f"mtu {peer.get('mtu')} vs {item.get('mtu')}")
            return Problem("mtu-mismatch", f"the two ends of a veth differ in MTU: {ifname} in {where(netns)} "
                           f"has {item.get('mtu')}, {pname} in {where(peer_ns)} has {peer.get('mtu')}: full-size "
                           "packets from the larger side are dropped",
                           ip_cmd(big[1], f"link set dev {big[2]} mtu {small[0]}"), big[1])
        master = peer.get("master")
        want = self.expected_master(pname)
        if master is None and (want or self._is_port_expected(peer_ns, netns, ifname)):
            bridge = want or self._bridge_for(peer_ns, netns, ifname) or "BRIDGE"
            self.hop(peer_ns, f"link {pname}", False, "not a bridge port (nomaster)")
            return Problem("port-detached", f"{pname} in {where(peer_ns)}, the other end of {ifname}, is not "
                           f"plugged into a bridge (nomaster): frames from {where(netns)} go nowhere",
                           ip_cmd(peer_ns, f"link set dev {pname} master {bridge}"), peer_ns)
        if master is not None:
            return self.port(peer_ns, peer)
        self.hop(peer_ns, f"link {pname}", True, _addr_text(self.view.spaces[peer_ns].interfaces(pname)))
        return None

    def _bridge_for(self, host_ns: str | None, netns: str | None, ifname: str) -> str | None:
        """The bridge in ``host_ns`` whose subnet holds an address of ``ifname`` in ``netns``."""
        mine = self.view.spaces[netns].interfaces(ifname)
        for name, item in self.view.spaces[host_ns].links.items():
            if _kind(item) == "bridge":
                for net in self.view.spaces[host_ns].interfaces(name):
                    if any(a.ip in net.network for a in mine):
                        return name
        return None

    def _is_port_expected(self, host_ns: str | None, netns: str | None, ifname: str) -> bool:
        return self._bridge_for(host_ns, netns, ifname) is not None

    def port(self, netns: str | None, item: dict) -> Problem | None:
        """A bridge port: its bridge is up, it forwards (STP state), its MTU is the bridge's."""
        name, bridge = item["ifname"], item.get("master")
        br = self.view.spaces[netns].links.get(bridge, {})
        if not _up(br):
            self.hop(netns, f"bridge {bridge}", False, "administratively DOWN")
            return Problem("bridge-down", f"the bridge {bridge} in {where(netns)} is administratively down",
                           ip_cmd(netns, f"link set dev {bridge} up"), netns)
        state = _port_state(item)
        if state not in (None, "forwarding"):
            delay = ((br.get("linkinfo") or {}).get("info_data") or {}).get("forward_delay")
            secs = f"{2 * delay / 100:g} s" if isinstance(delay, (int, float)) else "2 × forward_delay"
            self.hop(netns, f"port {name} of {bridge}", False, f"STP state {state}")
            return Problem("port-not-forwarding", f"bridge port {name} of {bridge} is in STP state {state}, not "
                           f"forwarding: STP holds a port that came up in listening, then learning, for {secs} "
                           "in all; no frame passes meanwhile",
                           ip_cmd(netns, f"link set dev {bridge} type bridge stp_state 0") + " && "
                           + ip_cmd(netns, f"link set dev {name} down") + " && " + ip_cmd(netns, f"link set dev {name} up"),
                           netns)
        if br.get("mtu") and item.get("mtu") != br.get("mtu"):
            self.hop(netns, f"port {name} of {bridge}", False, f"mtu {item.get('mtu')}, bridge {br.get('mtu')}")
            return Problem("mtu-mismatch", f"bridge port {name} has MTU {item.get('mtu')}, its bridge {bridge} "
                           f"{br.get('mtu')}: frames larger than the smaller one are dropped",
                           ip_cmd(netns, f"link set dev {name} mtu {br.get('mtu')}"), netns)
        self.hop(netns, f"port {name} of {bridge}", True, f"{state or 'up'}, mtu {item.get('mtu')}")
        return None

    def bridge_port_of(self, netns: str | None, bridge: str, holder: str | None, ifname: str) -> Problem | None:
        """The path from ``bridge`` (in ``netns``) to ``ifname`` in ``holder``: that link, its peer, the port."""
        br = self.view.spaces[netns].links.get(bridge, {})
        if not _up(br):
            self.hop(netns, f"bridge {bridge}", False, "administratively DOWN")
            return Problem("bridge-down", f"the bridge {bridge} in {where(netns)} is administratively down",
                           ip_cmd(netns, f"link set dev {bridge} up"), netns)
        return self.link(holder, ifname)

    # --- a router ------------------------------------------------------------

    def forwarding(self, netns: str | None, src: IPv4Address, dst: IPv4Address) -> Problem | None:
        """A namespace that routes the packet on: ``ip_forward`` (``rp_filter``: :meth:`rp_filter`)."""
        ns = self.view.spaces[netns]
        if not ns.ip_forward:
            self.hop(netns, "ip_forward", False, "0")
            return Problem("ip-forward-off", f"{where(netns)} does not forward packets between its links "
                           f"(net.ipv4.ip_forward=0), and {src} -> {dst} must be routed there",
                           in_ns(netns, "sysctl -w net.ipv4.ip_forward=1"), netns)
        self.hop(netns, "ip_forward", True, "1")
        return None

    def rp_filter(self, netns: str | None, iif: str, src: IPv4Address, back: dict | None) -> Problem | None:
        """``back``: the route of ``netns`` towards ``src`` (``ip route get SRC``), or None when it has none."""
        mode = self.view.spaces[netns].rp_filter(iif)
        if mode == 0:
            return None
        bad = back is None or (mode == 1 and back.get("dev") != iif)
        if not bad:
            self.hop(netns, f"rp_filter on {iif}", True, f"{mode}, route back via {back.get('dev')}")
            return None
        way = f"via {back.get('dev')}" if back else "nowhere"
        self.hop(netns, f"rp_filter on {iif}", False, f"{mode}, route back {way}")
        strict = "strict" if mode == 1 else "loose"
        fix = in_ns(netns, f"sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{iif}.rp_filter=2") if mode == 1 \
            else None
        return Problem("rp-filter", f"{where(netns)} drops packets from {src} arriving on {iif}: rp_filter is {mode} "
                       f"({strict}) and its route back to {src} goes {way} (an asymmetric path)", fix, netns)

    def firewall(self, netns: str | None, pkt: Packet, *, bridges: list[str], legacy: bool = False) -> Problem | None:
        """Follow ``pkt`` through the FORWARD chain of ``netns`` (or of the host's legacy tables)."""
        text = self.view.legacy_rules if legacy else self.view.spaces[netns].filter_rules
        if not text.strip():
            return None
        table = Table.parse(text)
        v = verdict(table, "FORWARD", pkt)
        label = "iptables-legacy FORWARD" if legacy else "iptables FORWARD"
        if v.action not in ("DROP", "REJECT"):
            self.hop(netns, label, True, f"{v.action.lower()} {pkt.src} -> {pkt.dst} ({pkt.state})"
                     + (f" by `{v.rule}`" if v.rule else ""))
            return None
        flow = f"{pkt.src} -> {pkt.dst} ({pkt.iif} -> {pkt.oif}, {pkt.state})"
        if legacy:
            self.hop(netns, label, False, v.rule or f"policy {v.action}")
            fix = delete_command(v.rule, program="iptables-legacy") if v.rule else "iptables-legacy -P FORWARD ACCEPT"
            return Problem("iptables-legacy", f"the iptables-legacy tables, which `iptables` (nf_tables) does not "
                           f"show, {'hold `' + v.rule + '`' if v.rule else 'have FORWARD policy ' + v.action}: it "
                           f"drops {flow}", fix, netns)
        if v.rule is None:
            self.hop(netns, label, False, f"policy {v.action}")
            accept = " && ".join(in_ns(netns, f"iptables -I FORWARD {d} {b} -j ACCEPT") for b in bridges[:1]
                                 for d in ("-i", "-o")) or None
            return Problem("forward-policy", f"the iptables FORWARD policy in {where(netns)} is {v.action} and no "
                           f"rule accepts {flow}", accept, netns)
        self.hop(netns, label, False, v.rule)
        return Problem("forward-rule", f"the iptables rule `{v.rule}` in {where(netns)} {v.action.lower()}s {flow}",
                       delete_command(v.rule, netns=netns), netns)

    # --- NAT and conntrack -------------------------------------------------------

    def masquerade_rule(self, netns: str | None, src: IPv4Address, dst: IPv4Address, oif: str,
                        proto: str) -> str | None:
        """The POSTROUTING MASQUERADE/SNAT rule of ``netns`` that rewrites ``src`` going out of ``oif``, if any."""
        table = Table.parse(self.view.spaces[netns].nat_rules)
        pkt = Packet(src, dst, None, oif, proto=proto)
        for line, words in table.rules.get("POSTROUTING", []):
            if "-j" in words and words[words.index("-j") + 1] in ("MASQUERADE", "SNAT") \
                    and matches(words, pkt) is not False:
                return line
        return None

    def stale_conntrack(self, src: IPv4Address, dst: IPv4Address, proto: str, dport: int | None) -> tuple[str, int] | None:
        """An entry ``src -> dst`` (proto, dport) whose reply was never NATed: ``(line, its source port)``."""
        for line in self.view.conntrack.splitlines():
            words = line.split()
            if not words or words[0] != proto:
                continue
            fields = [w.split("=", 1) for w in words if "=" in w]
            first: dict[str, str] = {}
            second: dict[str, str] = {}
            for k, v in fields:
                (second if k in first else first)[k] = v
            if first.get("src") != str(src) or first.get("dst") != str(dst):
                continue
            if dport is not None and first.get("dport") != str(dport):
                continue
            if second.get("dst") == str(src) and first.get("sport", "").isdigit():
                return line, int(first["sport"])
        return None


def _addr_text(addrs: list) -> str:
    return ", ".join(str(a) for a in addrs) or "no IPv4 address"


def last_line(text: str) -> str:
    """The last line of ``text`` (a command's final word on what happened), whitespace collapsed."""
    return re.sub(r"\s+", " ", text.strip().splitlines()[-1]) if text.strip() else ""
