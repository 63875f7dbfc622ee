"""Why can't A reach B? ``bridgenet.diagnose(src, dst)`` walks the path and names the first thing that breaks it.

The walk goes as a person would, hop by hop from the source: the link the
route leaves by and the cable behind it (the veth's other end, the bridge
port, its STP state, the MTUs), the route (``ip route get``), the next hop
(who holds it; a FAILED neighbour), and in each namespace that routes the
packet on: ``ip_forward``, ``rp_filter``, the iptables FORWARD chain (both
ways), MASQUERADE for traffic that leaves, a stale conntrack entry; at the
destination, the route back. Then it probes (ping, or TCP/UDP to a port)
and, when the probe fails with nothing named yet, reads the iptables
counters and neighbours again: a DROP/REJECT rule whose counter rose during
the probe, or a next hop that never answered ARP. It reads only; the probe
goes only to an address held by the host or one of its named namespaces.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, ip_address

import attrs

from .diagnose_args import HOST, check_args, check_network, usage_error
from .diagnose_checks import Checker, Hop, Problem, last_line, in_ns, ip_cmd, where
from .diagnose_firewall import Packet, blocking_hits, delete_command
from .diagnose_probe import Probe, ping, socket_probe
from .diagnose_state import View, live_netns, read_after, read_view, route_get
from .runners import Runner



@attrs.frozen
class Diagnosis:
    """The outcome of :func:`diagnose`.

    Attributes:
        source: ``host`` or a namespace name, as given.
        destination: as given (``host``, a namespace, an address).
        address: the IPv4 address probed.
        destination_netns: who holds ``address`` (``host``, a namespace) or None when nobody here does.
        port, protocol: the probe's (``icmp``, ``tcp``, ``udp``; port None for icmp).
        reachable: the probe passed; None when no probe was sent (the address is held by nobody here).
        problem: the first thing found that breaks the path, or None.
        hops: what was looked at, in order.
        probe: what the probe did, or None.
    """

    source: str
    destination: str
    address: str
    destination_netns: str | None
    port: int | None
    protocol: str
    reachable: bool | None
    problem: Problem | None
    hops: tuple[Hop, ...]
    probe: Probe | None

    def to_dict(self) -> dict:
        """One JSON-ready object (the shape ``bridgenet diagnose --json`` prints, README)."""
        return {
            "source": self.source, "destination": self.destination, "address": self.address,
            "destination_netns": self.destination_netns, "protocol": self.protocol, "port": self.port,
            "reachable": self.reachable, "problem": self.problem.to_dict() if self.problem else None,
            "hops": [h.to_dict() for h in self.hops], "probe": self.probe.to_dict() if self.probe else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """The text ``bridgenet diagnose`` prints: the hops, the problem and its fix, the probe, the verdict."""
        how = f"{self.protocol.upper()} port {self.port}" if self.port is not None else "ping"
        held = f" ({self.destination_netns})" if self.destination_netns else " (held by no namespace here)"
        lines = [f"diagnose {self.source} -> {self.address}{held} by {how}"]
        for h in self.hops:
            lines.append(f"  {'✓' if h.ok else '✗'} {h.where}: {h.what}" + (f": {h.detail}" if h.detail else ""))
        if self.problem is not None:
            lines.append(f"problem ({self.problem.kind}): {self.problem.message}")
            lines.append(f"fix: {self.problem.fix}" if self.problem.fix else "fix: (no single command; see above)")
        if self.probe is not None:
            lines.append(f"probe: {self.probe.method} {self.probe.target} from {self.source}: {self.probe.summary}")
        else:
            lines.append("probe: not sent (the address is held by no namespace on this host)")
        verdict = {True: "reachable", False: "NOT reachable", None: "not probed"}[self.reachable]
        lines.append(f"{verdict}: {self.source} -> {self.destination}")
        return "\n".join(lines) + "\n"


def _resolve(view: View, src: str | None, destination: str, names: list[str]) -> IPv4Address:
    try:
        addr = ip_address(destination)
    except ValueError:
        addr = None
    if addr is not None:
        assert isinstance(addr, IPv4Address)  # check_args refused the rest
        return addr
    if destination == HOST:
        host = [a for a in view.spaces[None].addresses() if not a.is_loopback]
        mine = [i.network for n in view.spaces[src].links for i in view.spaces[src].interfaces(n)]
        near = [a for a in host if any(a in net for net in mine)]
        if not (near or host):
            raise usage_error("destination", "the host has no IPv4 address", destination)
        return (near or host)[0]
    if destination not in names:
        raise usage_error("destination", f"neither 'host', an IPv4 address nor a network namespace here "
                     f"(namespaces: {', '.join(names) or 'none'})", destination)
    addrs = [a for a in view.spaces[destination].addresses() if not a.is_loopback]
    if not addrs:
        raise usage_error("destination", "that namespace has no IPv4 address to reach", destination)
    return addrs[0]


class _Walk:
    def __init__(self, runner: Runner, view: View, network: object | None, addr: IPv4Address, proto: str,
                 port: int | None) -> None:
        self.runner, self.view, self.network = runner, view, network
        self.addr, self.proto, self.port = addr, proto, port
        self.check = Checker(view, network)
        self.nodes: list[str | None] = []
        self.next_hop: tuple[str | None, IPv4Address] | None = None  # (namespace asking, an unknown next hop)
        self.sport = 0
        self.src_mtu: int | None = None
        self.probe_allowed = False

    def gateway_for(self, netns: str | None) -> str:
        for r in getattr(self.network, "objects", ()) if self.network is not None else ():
            if type(r).__name__ == "Route" and r.netns == netns and r.dst == "default":
                return str(r.via)
        ns = self.view.spaces[netns]
        nets = [i.network for n in ns.links for i in ns.interfaces(n)]
        for a in self.view.spaces[None].addresses():
            if any(a in n for n in nets):
                return str(a)
        return "GATEWAY"

    def run(self, src: str | None) -> Problem | None:
        node, iif, pkt_src = src, None, None
        nat_missing: tuple[str | None, str, str] | None = None
        for _ in range(8):
            self.nodes.append(node)
            ns = self.view.spaces[node]
            if self.addr in ns.addresses():
                self.probe_allowed = True
                self.check.hop(node, "destination", True, f"holds {self.addr}")
                return self.arrived(node, pkt_src, nat_missing)
            if iif is not None:
                p = self.check.forwarding(node, pkt_src, self.addr)
                if p:
                    return p
                back = None
                if ns.rp_filter(iif):  # the route back matters (a process) only when rp_filter is on
                    back, _ = route_get(self.runner, node, pkt_src)
                p = self.check.rp_filter(node, iif, pkt_src, back)
                if p:
                    return p
            route, err = route_get(self.runner, node, self.addr, src=pkt_src if iif else None, iif=iif)
            if route is None:
                return self.no_route(node, iif, err)
            dev, gw = route.get("dev", ""), route.get("gateway")
            nh = IPv4Address(gw or str(self.addr))
            self.check.hop(node, "route", True, f"{self.addr} via {gw} dev {dev}" if gw else f"{self.addr} dev {dev}")
            if pkt_src is None:
                pkt_src = IPv4Address(route["prefsrc"]) if route.get("prefsrc") else \
                    next(iter(i.ip for i in ns.interfaces(dev)), None)
                self.src_mtu = ns.links.get(dev, {}).get("mtu")
                if pkt_src is None:
                    return self.check.link(node, dev, need_address=True)
            p = self.misrouted(node, dev)
            if p:
                return p
            known, holder = self.view.owner(nh)
            item = ns.links.get(dev, {})
            if (item.get("linkinfo") or {}).get("info_kind") == "bridge":
                if not known:
                    return self.unknown_next_hop(node, dev, nh, gw, nat_missing, pkt_src)
                holder_if = self.view.spaces[holder].addresses()[nh]
                p = self.check.bridge_port_of(node, dev, holder, holder_if)
                if p:
                    return p
                p = self.forward_filter(node, iif, dev, pkt_src)
                if p:
                    return p
                node, iif = holder, holder_if
                continue
            p = self.check.link(node, dev, need_address=iif is None)
            if p:
                return p
            p = self.forward_filter(node, iif, dev, pkt_src)
            if p:
                return p
            if iif is not None:
                rule = self.check.masquerade_rule(node, pkt_src, self.addr, dev, self.proto)
                if rule is None:
                    nat_missing = (node, iif, dev)
                else:
                    self.check.hop(node, "MASQUERADE", True, rule)
                    p = self.conntrack(node, pkt_src)
                    if p:
                        return p
                    pkt_src = next(iter(i.ip for i in ns.interfaces(dev)), pkt_src)
            if not known:
                return self.unknown_next_hop(node, dev, nh, gw, nat_missing, pkt_src)
            found = self.view.peer(node, dev)
            if found is None:
                return None
            peer_ns, peer = found
            if holder == peer_ns:
                node, iif = holder, peer.get("master") or peer["ifname"]
                continue
            # bridged to another namespace on the same bridge: its link, its port, then FORWARD with br_netfilter
            holder_if = self.view.spaces[holder].addresses()[nh]
            p = self.check.link(holder, holder_if)
            if p:
                return p
            other = self.view.peer(holder, holder_if)
            bridge = peer.get("master")
            if other is not None and bridge and other[1].get("master") != bridge:
                return Problem("port-detached", f"{other[1]['ifname']} ({where(other[0])}) is a port of "
                               f"{other[1].get('master')}, not of {bridge} where {where(node)} is plugged in",
                               ip_cmd(other[0], f"link set dev {other[1]['ifname']} master {bridge}"), other[0])
            if bridge and self.view.bridge_nf:
                p = self.check.firewall(peer_ns, Packet(pkt_src, self.addr, bridge, bridge, self.proto, self.port),
                                        bridges=[bridge])
                if p:
                    return p
            node, iif = holder, holder_if
        return None

    def misrouted(self, node: str | None, dev: str) -> Problem | None:
        """The destination's namespace is plugged into ``node`` by a veth, yet the route leaves elsewhere."""
        known, holder = self.view.owner(self.addr)
        if not known or holder == node:
            return None
        holder_if = self.view.spaces[holder].addresses()[self.addr]
        found = self.view.peer(holder, holder_if)
        if found is None or found[0] != node:
            return None
        port = found[1]
        via = port.get("master") or port["ifname"]
        if dev == via:
            return None
        link = self.view.spaces[node].links.get(via, {})
        if "UP" not in link.get("flags", []):
            kind = "bridge-down" if (link.get("linkinfo") or {}).get("info_kind") == "bridge" else "port-down"
            self.check.hop(node, f"link {via}", False, "administratively DOWN")
            return Problem(kind, f"{via} in {where(node)}, which {where(holder)} is plugged into, is administratively "
                           f"down: its routes are gone and {self.addr} leaves by {dev}",
                           ip_cmd(node, f"link set dev {via} up"), node)
        subnet = next(iter(i for i in self.view.spaces[holder].interfaces(holder_if) if i.ip == self.addr), None)
        has_addr = bool(self.view.spaces[node].interfaces(via))
        if not has_addr and self.view.spaces[node].links.get(via, {}).get("linkinfo", {}).get("info_kind") == "bridge":
            want = self._bridge_address(via) or (f"ADDRESS/{subnet.network.prefixlen}" if subnet else "ADDRESS/PREFIX")
            self.check.hop(node, f"bridge {via}", False, "no IPv4 address")
            return Problem("no-address", f"the bridge {via} in {where(node)}, which {where(holder)} is plugged into, "
                           f"has no address: {where(node)} has no route onto it and sends {self.addr} out of {dev}",
                           ip_cmd(node, f"addr add {want} dev {via}"), node)
        self.check.hop(node, "route", False, f"{self.addr} leaves by {dev}, not {via}")
        fix = ip_cmd(node, f"route add {subnet.network} dev {via}") if subnet else None
        return Problem("no-route", f"{where(node)} sends {self.addr} out of {dev}, but {where(holder)} is plugged in "
                       f"by {via}", fix, node)

    def _bridge_address(self, bridge: str) -> str | None:
        for o in getattr(self.network, "objects", ()) if self.network is not None else ():
            if type(o).__name__ == "Address" and o.dev == bridge and o.netns is None:
                return str(o.address)
        return None

    def no_route(self, node: str | None, iif: str | None, err: str) -> Problem:
        ns = self.view.spaces[node]
        if iif is None:  # a link that is down has lost its routes: look at the links first
            for name, item in ns.links.items():
                if name == "lo":
                    continue
                p = self.check.link(node, name, need_address=True)
                if p:
                    return p
        self.check.hop(node, "route", False, f"{self.addr}: {err}")
        on_link = any(self.addr in i.network for n in ns.links for i in ns.interfaces(n))
        has_default = any(r.get("dst") == "default" for r in ns.routes)
        if not has_default and not on_link:
            return Problem("no-default-route", f"{where(node)} has no route to {self.addr} ({err}): no default route",
                           ip_cmd(node, f"route add default via {self.gateway_for(node)}"), node)
        return Problem("no-route", f"{where(node)} has no route to {self.addr}: {err}", None, node)

    def unknown_next_hop(self, node: str | None, dev: str, nh: IPv4Address, gw: str | None,
                         nat_missing: tuple | None, pkt_src: IPv4Address | None) -> Problem | None:
        """A next hop nobody here holds: a gateway that does not answer, or the way off this host."""
        failed = [n for n in self.view.spaces[node].neigh
                  if n.get("dst") == str(nh) and set(n.get("state", [])) & {"FAILED", "INCOMPLETE"}]
        if failed or (gw and self._segment_known(node, dev)):
            state = "/".join(failed[0]["state"]) if failed else "held by no namespace on that link"
            self.check.hop(node, f"next hop {nh}", False, state)
            fix = ip_cmd(node, f"route replace default via {self.gateway_for(node)}") if gw else None
            return Problem("gateway-unreachable", f"the gateway {nh} of {where(node)} (dev {dev}) does not answer "
                           f"ARP ({state})", fix, node)
        self.next_hop = (node, nh)
        self.check.hop(node, f"next hop {nh}", True, "not on this host: the packet leaves it")
        if nat_missing and pkt_src is not None and pkt_src.is_private:
            return self.masquerade_problem(nat_missing, pkt_src)
        return None

    def _segment_known(self, node: str | None, dev: str) -> bool:
        """Every other end on ``dev``'s link (its peer, or each port's peer) was read: nobody else can hold a next hop."""
        ns = self.view.spaces[node]
        item = ns.links.get(dev, {})
        found = self.view.peer(node, dev)
        if found is not None:
            peer_ns, peer = found
            bridge = peer.get("master")
            if not bridge:
                return True
            ports = [n for n, i in self.view.spaces[peer_ns].links.items() if i.get("master") == bridge]
            return all(self.view.peer(peer_ns, p) is not None for p in ports)
        if (item.get("linkinfo") or {}).get("info_kind") == "bridge":
            ports = [n for n, i in ns.links.items() if i.get("master") == dev]
            return all(self.view.peer(node, p) is not None for p in ports)
        return False

    def masquerade_problem(self, nat_missing: tuple, pkt_src: IPv4Address) -> Problem:
        node, iif, dev = nat_missing
        nets = [i.network for i in self.view.spaces[node].interfaces(iif) if pkt_src in i.network]
        subnet = str(nets[0]) if nets else f"{pkt_src}/32"
        self.check.hop(node, "MASQUERADE", False, f"no rule for {subnet} out of {dev}")
        return Problem("no-masquerade", f"{where(node)} routes {pkt_src} out of {dev} without source NAT: nothing "
                       f"beyond routes replies back to {subnet}",
                       in_ns(node, f"iptables -t nat -A POSTROUTING -s {subnet} ! -o {iif} -j MASQUERADE"), node)

    def arrived(self, node: str | None, pkt_src: IPv4Address | None, nat_missing: tuple | None) -> Problem | None:
        if pkt_src is None or len(self.nodes) == 1:
            return None
        back, err = route_get(self.runner, node, pkt_src)
        if back is not None:
            self.check.hop(node, "route back", True, f"{pkt_src} dev {back.get('dev')}")
            return None
        self.check.hop(node, "route back", False, f"{pkt_src}: {err}")
        if nat_missing:
            return self.masquerade_problem(nat_missing, pkt_src)
        has_default = any(r.get("dst") == "default" for r in self.view.spaces[node].routes)
        fix = None if has_default else ip_cmd(node, f"route add default via {self.gateway_for(node)}")
        return Problem("no-return-route", f"{where(node)} has no route back to {pkt_src} ({err}): replies go nowhere",
                       fix, node)

    def forward_filter(self, node: str | None, iif: str | None, oif: str, pkt_src: IPv4Address) -> Problem | None:
        if iif is None:
            return None
        bridges = [b for b in (iif, oif)
                   if (self.view.spaces[node].links.get(b, {}).get("linkinfo") or {}).get("info_kind") == "bridge"]
        for legacy in ((False, True) if node is None and self.view.legacy_rules else (False,)):
            for pkt in (Packet(pkt_src, self.addr, iif, oif, self.proto, self.port),
                        Packet(self.addr, pkt_src, oif, iif, self.proto, None, state="ESTABLISHED")):
                p = self.check.firewall(node, pkt, bridges=bridges or [iif], legacy=legacy)
                if p:
                    return p
        return None

    def conntrack(self, node: str | None, pkt_src: IPv4Address) -> Problem | None:
        if node is not None or self.proto not in ("udp", "tcp"):
            return None
        stale = self.check.stale_conntrack(pkt_src, self.addr, self.proto, self.port)
        if stale is None:
            return None
        line, self.sport = stale
        self.check.hop(node, "conntrack", False, " ".join(line.split()))
        dport = f" --dport {self.port}" if self.port else ""
        return Problem("stale-conntrack", f"a conntrack entry for {pkt_src} -> {self.addr} ({self.proto} from port "
                       f"{self.sport}) was made before MASQUERADE applied: its packets keep their private source, "
                       "unanswered, as long as they keep it alive",
                       f"conntrack -D -p {self.proto} -s {pkt_src} -d {self.addr}{dport}", None)


def _after_probe(walk: _Walk, probe: Probe) -> Problem | None:
    """The probe failed and the walk named nothing: iptables counters that rose, a neighbour that never answered."""
    spaces = list(dict.fromkeys([*walk.nodes, None]))
    after = read_after(walk.runner, spaces)
    for ns in spaces:
        before = walk.view.spaces[ns]
        for hit in blocking_hits(before.counters, after[ns][0], before.filter_rules):
            if hit.chain == "FORWARD" and hit.rule is None:
                return Problem("forward-policy", f"the iptables FORWARD policy {hit.action} in {where(ns)} dropped "
                               "the probe", None, ns)
            kind = "forward-rule" if hit.chain == "FORWARD" else "firewall-rule"
            label = f"`{hit.rule}`" if hit.rule else f"the {hit.chain} policy {hit.action}"

            return Problem(kind, f"{label} in {where(ns)} {hit.action.lower()}ed the probe (its counter rose)",
                           delete_command(hit.rule, netns=ns) if hit.rule else
                           in_ns(ns, f"iptables -P {hit.chain} ACCEPT"), ns)
    if walk.next_hop is not None:
        asker, nh = walk.next_hop
        for n in after.get(asker, ("", []))[1]:
            if n.get("dst") == str(nh) and set(n.get("state", [])) & {"FAILED", "INCOMPLETE"}:
                return Problem("gateway-unreachable", f"the next hop {nh} of {where(asker)} does not answer ARP "
                               f"({'/'.join(n['state'])})", None, asker)
    if walk.view.spaces[None].legacy:
        return Problem("iptables-legacy", "iptables-legacy tables exist next to the nf_tables ones, and nothing "
                       "else explains the loss: look at `iptables-legacy -S`", "iptables-legacy -S", None)
    if probe.refused:
        return Problem("port-closed", f"{probe.target} answered that nothing listens there ({probe.summary})",
                       None, None)
    return Problem("no-reply", f"every check passed, but the probe got no reply ({last_line(probe.summary)})",
                   None, None)


def diagnose(source: str, destination: str, *, port: int | None = None, udp: bool = False,
             network: object | None = None, runner: Runner | None = None, wait: float = 1.0) -> Diagnosis:
    """Walk from ``source`` to ``destination``, name the first thing that breaks the path, then probe.

    Args:
        source: ``"host"`` or a network namespace name (``ip netns list``).
        destination: ``"host"``, a namespace name (its first IPv4 address), or an IPv4 address.
        port: probe TCP (or with ``udp`` UDP) to this port instead of pinging.
        network: the intended :class:`~bridgenet.network.Network` (``-f``): the addresses,
            gateways and bridges its fixes name. None: live state alone. Every named
            namespace is read either way.
        runner: where to look (default: this host, ``ShRunner()``; a sandbox's ``runner()``).
        wait: seconds each probe attempt waits (two attempts).

    Returns:
        a :class:`Diagnosis`. Cost: three or four processes to read, one per
        route lookup, one probe; ≈2 × ``wait`` s at most for the probe.

    Raises:
        ValidationError: bad arguments, an unknown source namespace or destination, a
            destination that is IPv6 or not unicast, a namespace the ``network`` does not
            have (exit code 2 in the CLI).
    """
    check_args(source, destination, port, udp)
    if network is not None:
        check_network(network, source, destination)
    if runner is None:
        from .runners import ShRunner

        runner = ShRunner()
    names = live_netns(runner)
    src = None if source == HOST else source
    if src is not None and src not in names:
        raise usage_error("source", f"neither 'host' nor a network namespace here (namespaces: {', '.join(names) or 'none'})",
                     source)
    # every named namespace is read (an address held by one is a safe target for the probe);
    # the network's model only names the fixes
    view = read_view(runner, names)
    addr = _resolve(view, src, destination, names)
    proto = "udp" if udp else ("tcp" if port is not None else "icmp")
    walk = _Walk(runner, view, network, addr, proto, port)
    problem = walk.run(src)
    known, holder = view.owner(addr)
    probe = None
    if known:
        if port is None:
            size = (walk.src_mtu - 28) if problem is not None and problem.kind == "mtu-mismatch" and walk.src_mtu \
                else None
            probe = ping(runner, src, str(addr), wait=wait, size=size)
        else:
            probe = socket_probe(runner, src, str(addr), port, udp=udp, wait=wait, sport=walk.sport)
        if not probe.passed and problem is None:
            problem = _after_probe(walk, probe)
    return Diagnosis(source, destination, str(addr), where(holder) if known else None, port, proto,
                     probe.passed if probe is not None else None, problem, tuple(walk.check.hops), probe)
