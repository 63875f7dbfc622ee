"""What ``bridgenet diagnose`` reads: each namespace's links, routes, neighbours, sysctls and iptables.

Everything comes from machine output: ``ip -d -json`` (ip(8) ``-json``;
a bridge port's STP state is ``linkinfo.info_slave_data.state``, as
``bridge -json link`` prints it), ``/proc/sys/net/ipv4`` (ip-sysctl.rst:
``ip_forward``, ``conf/*/rp_filter``), ``iptables -S`` and ``iptables -nvxL``
(iptables(8)), ``conntrack -L`` (conntrack(8)). All reads of one pass run in
one shell (:func:`bridgenet.state.gather`): one process through the runner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface

import attrs

from .hostcheck import LEGACY_MARK
from .runners import Runner
from .state import _json_docs, gather, read_netns


def _in(netns: str | None, argv: tuple[str, ...]) -> tuple[str, ...]:
    return ("ip", "netns", "exec", netns, *argv) if netns is not None else argv


def _ip(netns: str | None, *args: str) -> tuple[str, ...]:
    return ("ip", *(("-n", netns) if netns is not None else ()), *args)


@attrs.frozen
class NsView:
    """One namespace as read (None: the host).

    Attributes:
        links: ``{ifname: item}``, each item as ``ip -d -json addr show`` prints it.
        routes: ``ip -json route show`` items (main table).
        neigh: ``ip -json neigh show`` items.
        proc: ``{"ip_forward": "1", "rp_filter.all": "0", "rp_filter.eth0": "0", ...}``.
        filter_rules: ``iptables -w -S`` (filter table) with stderr, so the
            ``# Warning: iptables-legacy tables present`` line is there when it applies.
        counters: ``iptables -w -nvxL`` (filter table, exact counters).
        nat_rules: ``iptables -w -t nat -S``.
    """

    name: str | None
    links: dict[str, dict]
    routes: list[dict]
    neigh: list[dict]
    proc: dict[str, str]
    filter_rules: str = ""
    counters: str = ""
    nat_rules: str = ""

    def addresses(self) -> dict[IPv4Address, str]:
        """``{address: ifname}`` of every IPv4 address here."""
        out = {}
        for name, item in self.links.items():
            for a in item.get("addr_info", []):
                if a.get("family") == "inet":
                    out[IPv4Address(a["local"])] = name
        return out

    def interfaces(self, name: str) -> list[IPv4Interface]:
        """The IPv4 addresses (with prefix) of link ``name``."""
        return [IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in self.links.get(name, {}).get("addr_info", [])
                if a.get("family") == "inet"]

    @property
    def ip_forward(self) -> bool:
        return self.proc.get("ip_forward") == "1"

    def rp_filter(self, dev: str) -> int:
        """Effective rp_filter on ``dev``: the larger of ``conf.all`` and ``conf.DEV`` (ip-sysctl.rst)."""
        vals = [self.proc.get("rp_filter.all", "0"), self.proc.get(f"rp_filter.{dev}", "0")]
        return max(int(v) if v.isdigit() else 0 for v in vals)

    @property
    def legacy(self) -> bool:
        return LEGACY_MARK in self.filter_rules


@attrs.frozen
class View:
    """The host and the namespaces read, plus what only the host has.

    Attributes:
        spaces: ``{None: host, name: NsView}``.
        bridge_nf: ``net.bridge.bridge-nf-call-iptables`` in the host is 1
            (bridged frames pass the iptables FORWARD chain).
        conntrack: ``conntrack -L`` lines of the host ("" when unreadable).
        legacy_rules: ``iptables-legacy -S`` of the host, read only when
            iptables says legacy tables exist (reading them does not create
            them then).
    """

    spaces: dict[str | None, NsView]
    bridge_nf: bool = False
    conntrack: str = ""
    legacy_rules: str = ""

    def owner(self, address: IPv4Address) -> tuple[bool, str | None]:
        """``(True, netns)`` for the namespace holding ``address`` (None: the host), ``(False, None)``."""
        for name, ns in self.spaces.items():
            if address in ns.addresses():
                return True, name
        return False, None

    def peer(self, netns: str | None, ifname: str) -> tuple[str | None, dict] | None:
        """The other end of veth ``ifname`` in ``netns``: ``(its netns, its item)``, or None if not found.

        A peer in the same namespace is named by ``link``; one elsewhere is
        found by the two indexes pointing at each other (``link_index``), the
        host looked at first (two ends in a fresh sandbox may share an ifindex).
        """
        item = self.spaces[netns].links.get(ifname)
        if not item or (item.get("linkinfo") or {}).get("info_kind") != "veth":
            return None
        if "link_netnsid" not in item and item.get("link") in self.spaces[netns].links:
            return netns, self.spaces[netns].links[item["link"]]
        order = [None, *[n for n in self.spaces if n is not None]]
        for name in order:
            if name == netns or name not in self.spaces:
                continue
            for other in self.spaces[name].links.values():
                if other.get("ifindex") == item.get("link_index") and other.get("link_index") == item.get("ifindex") \
                        and (other.get("linkinfo") or {}).get("info_kind") == "veth":
                    return name, other
        return None


_PROC = ("sh", "-c", "cd /proc/sys/net/ipv4 && grep -H . ip_forward conf/*/rp_filter")


def _full_reads(netns: str | None) -> list[tuple[tuple[str, ...], str | None]]:
    return [
        (_ip(netns, "-d", "-json", "-batch", "-"), "addr show\nroute show\nneigh show\n"),
        (_in(netns, _PROC), None),
        (_in(netns, ("sh", "-c", "iptables -w -S 2>&1")), None),
        (_in(netns, ("iptables", "-w", "-nvxL")), None),
        (_in(netns, ("iptables", "-w", "-t", "nat", "-S")), None),
    ]


def _parse_proc(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        path, _, value = line.partition(":")
        if path == "ip_forward":
            out["ip_forward"] = value.strip()
        elif path.startswith("conf/") and path.endswith("/rp_filter"):
            out[f"rp_filter.{path.split('/')[1]}"] = value.strip()
    return out


def _ns_view(name: str | None, results: list[tuple[int, str]]) -> NsView:
    (code, ip_text), (_, proc), (_, rules), (ccode, counters), (ncode, nat) = results
    try:
        docs = _json_docs(ip_text) if code == 0 else []
    except ValueError:
        docs = []
    links_doc, routes, neigh = (docs + [[], [], []])[:3]
    links = {item["ifname"]: item for item in links_doc or [] if item.get("ifname")}
    return NsView(name, links, list(routes or []), list(neigh or []), _parse_proc(proc), rules,
                  counters if ccode == 0 else "", nat if ncode == 0 else "")


def live_netns(runner: Runner) -> list[str]:
    """The named namespaces that exist (``/run/netns`` entries that are mounted namespaces)."""
    names, stale = read_netns(runner)
    return sorted(names - stale)


def read_view(runner: Runner, namespaces: Iterable[str]) -> View:
    """Read the host and ``namespaces`` (each must exist) in one shell.

    Cost: one process through ``runner``, plus one when iptables-legacy tables exist.
    """
    spaces = [None, *dict.fromkeys(namespaces)]
    reads = [r for ns in spaces for r in _full_reads(ns)]
    reads += [(("sysctl", "-n", "net.bridge.bridge-nf-call-iptables"), None), (("conntrack", "-L"), None)]
    results = gather(runner, reads)
    per = len(_full_reads(None))
    views = {ns: _ns_view(ns, results[i * per:(i + 1) * per]) for i, ns in enumerate(spaces)}
    (_, nf), (ctcode, ct) = results[-2:]
    legacy = ""
    if views[None].legacy:
        code, text = gather(runner, [(("iptables-legacy", "-w", "-S"), None)])[0]
        legacy = text if code == 0 else ""
    return View(views, nf.strip() == "1", ct if ctcode == 0 else "", legacy)


def route_get(runner: Runner, netns: str | None, dst: IPv4Address, *, src: IPv4Address | None = None,
              iif: str | None = None) -> tuple[dict | None, str]:
    """``ip -json route get DST [from SRC iif IIF]`` in ``netns``: (the route, "") or (None, the error)."""
    args = ["-json", "route", "get", str(dst)]
    if src is not None:
        args += ["from", str(src)]
    if iif is not None:
        args += ["iif", iif]
    r = runner.exec(_ip(netns, *args), check=False, timeout=5)
    if r.exit_code != 0:
        err = (r.stderr.strip().splitlines() or [f"exit {r.exit_code}"])[-1]
        return None, re.sub(r"^RTNETLINK answers: ", "", err)
    try:
        rows = json.loads(r.stdout or "[]")
    except ValueError:
        return None, "unreadable output"
    return (rows[0], "") if rows else (None, "no route")


def read_after(runner: Runner, namespaces: Iterable[str | None]) -> dict[str | None, tuple[str, list[dict]]]:
    """After a probe: ``{netns: (iptables -nvxL, ip -json neigh)}`` for ``namespaces``, in one shell."""
    spaces = list(dict.fromkeys(namespaces))
    reads = []
    for ns in spaces:
        reads += [(_in(ns, ("iptables", "-w", "-nvxL")), None), (_ip(ns, "-json", "neigh", "show"), None)]
    results = gather(runner, reads)
    out = {}
    for i, ns in enumerate(spaces):
        (_, counters), (ncode, neigh) = results[2 * i:2 * i + 2]
        try:
            rows = json.loads(neigh) if ncode == 0 and neigh.strip() else []
        except ValueError:
            rows = []
        out[ns] = (counters, rows)
    return out
