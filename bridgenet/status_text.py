"""How ``bridgenet show`` prints a :class:`bridgenet.status.NetworkStatus`: as text, or as a JSON object.

The JSON object follows ``ip -json`` (ip(8)): a link is ``ifname``,
``info_kind`` (``linkinfo.info_kind``), ``operstate``, ``flags``, ``mtu``,
``master``, ``addr_info`` (``family``, ``local``, ``prefixlen``); a route
``dst``, ``gateway``, ``dev``, ``protocol``. Added: ``present`` (false: the
network has it, the host does not) and ``carrier`` (``LOWER_UP`` in flags).
The README ("bridgenet show") has an example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .commands import shell_join

if TYPE_CHECKING:
    from .status import NetworkStatus, Place
    from .state import Link

FAMILIES = {4: "inet", 6: "inet6"}
"""``addr_info.family`` and a rule's ``family`` as ``ip -json`` names them."""


def link_dict(name: str, link: Link | None) -> dict:
    """One link, ``ip -json``-shaped; ``{"ifname", "present": false}`` when it is missing."""
    if link is None:
        return {"ifname": name, "present": False}
    addrs = [{"family": "inet", "local": str(a.ip), "prefixlen": a.network.prefixlen} for a in link.addresses]
    addrs += [{"family": "inet6", "local": str(a.ip), "prefixlen": a.network.prefixlen} for a in link.addresses6]
    return {"ifname": name, "present": True, "info_kind": link.kind, "operstate": link.operstate,
            "flags": list(link.flags), "carrier": "LOWER_UP" in link.flags, "mtu": link.mtu,
            "master": link.master, "addr_info": addrs}


def _place_dict(place: Place) -> dict:
    return {"name": place.name, "present": place.present,
            "links": [link_dict(n, link) for n, link in place.links], "routes": list(place.routes)}


def status_dict(st: NetworkStatus) -> dict:
    """The object ``bridgenet show --json`` prints for one network (see the module and the README)."""
    host, *spaces = st.places or (None,)
    return {
        "network": st.network, "source": st.source, "state_file": st.state_file, "compared": st.compared,
        "drifted": st.drifted,
        "host": _place_dict(host) if host else None,
        "namespaces": [_place_dict(p) for p in spaces],
        "bridges": [{"ifname": b, "ports": list(ports)} for b, ports in st.bridges],
        "sysctls": [{"key": k, "netns": n, "value": v, "wanted": w} for k, n, v, w in st.sysctls],
        "rules": [{"family": FAMILIES[f], "table": t, "chain": c, "netns": n, "rule": list(r), "present": ok}
                  for f, t, c, n, r, ok in st.rules],
        "ports": [{"container": c, "publish": text, "family": FAMILIES[f], "present": ok}
                  for c, text, f, ok in st.ports],
        "files": [{"path": p, "present": ok} for p, ok in st.files],
        "drift": [d.to_dict() for d in st.drift],
        "warnings": list(st.warnings),
    }


def _link_line(name: str, link: Link | None, ports: dict[str, tuple[str, ...]]) -> str:
    if link is None:
        return f"    {name:<12}  MISSING"
    words = [f"{name:<12}", f"{link.kind or 'device':<7}", link.operstate or ("UP" if link.up else "DOWN")]
    if link.up and "LOWER_UP" not in link.flags:
        words.append("NO-CARRIER")
    words.append(f"mtu {link.mtu}")
    if link.master:
        words.append(f"master {link.master}")
    words += [str(a) for a in (*link.addresses, *link.addresses6)]
    if name in ports:
        words.append("ports: " + (" ".join(ports[name]) or "none"))
    return "    " + "  ".join(words)


def _route_line(r: dict) -> str:
    via = f" via {r['gateway']}" if "gateway" in r else ""
    return f"    route {r['dst']}{via} dev {r['dev']}"


def render(st: NetworkStatus) -> str:
    """The text of ``bridgenet show`` for one network: each place's links and routes, rules, drift."""
    where = f"state file {st.state_file}" if st.state_file else "not up here: no state file"
    origin = {None: "built in Python", "the lesson": "the lesson"}.get(st.source, st.source)
    lines = [f"network {st.network} ({origin}; {where})"]
    ports = dict(st.bridges)
    for i, place in enumerate(st.places):
        lines.append(f"  {place.name}" + ("" if place.present else "  MISSING"))
        if not place.present:
            continue
        lines += [_link_line(n, link, ports) for n, link in place.links]
        lines += [_route_line(r) for r in place.routes]
        netns = None if i == 0 else place.name  # the first place is the host
        lines += [f"    {k} = {v if v is not None else '?'}" for k, n, v, _ in st.sysctls if n == netns]
    if st.rules:
        lines.append("  rules")
        for f, t, c, n, r, ok in st.rules:
            tool = "iptables" if f == 4 else "ip6tables"
            inside = f" (in {n})" if n else ""
            lines.append(f"    {'✓' if ok else '✗'} {tool} -t {t} {c} {shell_join(r)}{inside}")
    if st.ports:
        lines.append("  published ports")
        lines += [f"    {'✓' if ok else '✗'} {c} {text} ({FAMILIES[f]})" for c, text, f, ok in st.ports]
    if st.files:
        lines.append("  files")
        lines += [f"    {'✓' if ok else '✗'} {p}" for p, ok in st.files]
    if not st.compared:
        pass
    elif st.drift:
        lines.append(f"  drift ({len(st.drift)}):")
        for d in st.drift:
            detail = f": {d.detail}" if d.detail else ""
            lines.append(f"    {d.kind:<8} {d.where}: {d.what}{detail}")
            if d.fix:
                lines.append(f"             fix: {d.fix}")
    else:
        lines.append("  drift: none (up would run nothing)")
    lines += [f"  warning: {w}" for w in st.warnings]
    return "\n".join(lines) + "\n"
