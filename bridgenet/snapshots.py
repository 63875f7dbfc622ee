"""Snapshots for before/after comparisons: everything ``up``/``down`` could change, normalised.

Read from ``ip -json`` (both families), ``sysctl -n`` and
``iptables-save``/``ip6tables-save``; see :func:`snapshot`.
"""

from __future__ import annotations

import json

from . import names as _names
from .runners import Runner
from .state import _in_netns, _routes6_doc, _show_docs, _show_read, gather, read_netns
from .sysctls import IPV6_FORWARDING

_FORWARDING = ("sysctl", "-n", "net.ipv4.ip_forward", IPV6_FORWARDING)
"""Both forwarding sysctls in one process (sysctl(8) prints one value per line, in order)."""


def _forwarding(result: tuple[int, str]) -> tuple[str | None, str | None]:
    """(ip_forward, IPv6 forwarding) of a :data:`_FORWARDING` read; None for a value not printed (no IPv6)."""
    lines = [line.strip() for line in result[1].splitlines() if line.strip()]
    return (lines[0] if lines else None), (lines[1] if len(lines) > 1 else None)


_VOLATILE_LINK_KEYS = {
    "ifindex", "link_index", "address", "broadcast", "stats", "stats64", "txqlen", "qdisc",
    "link_netnsid", "perm_address", "inet6_addr_gen_mode", "parentbus", "parentdev",
}


_CARRIER_FLAGS = {"LOWER_UP", "NO-CARRIER", "DORMANT", "M-DOWN"}


def _norm_links(doc: list[dict]) -> list[dict]:
    out = []
    for item in doc:
        d = {k: v for k, v in item.items() if k not in _VOLATILE_LINK_KEYS}
        # Carrier is derived by the kernel (a bridge that lost its last port
        # stays without carrier; a new one reports it), not configuration.
        d.pop("operstate", None)
        d["flags"] = [f for f in item.get("flags", []) if f not in _CARRIER_FLAGS]
        info = d.get("linkinfo")
        if isinstance(info, dict):
            d["linkinfo"] = {"info_kind": info.get("info_kind"), "info_slave_kind": info.get("info_slave_kind")}
        d["addr_info"] = sorted(
            (f"{a.get('local')}/{a.get('prefixlen')} brd {a.get('broadcast')}"
             for a in item.get("addr_info", []) if a.get("family") == "inet"),
        )
        # global IPv6 addresses (not the kernel's link-local ones, made from the MAC address)
        d["addr_info"] += sorted(f"{a.get('local')}/{a.get('prefixlen')}" for a in item.get("addr_info", [])
                                 if a.get("family") == "inet6" and a.get("scope") == "global")
        for k in list(d):
            if k.startswith(("min_", "max_", "gso_", "gro_", "tso_", "num_", "promiscuity", "allmulti")):
                d.pop(k)
        out.append(d)
    return sorted(out, key=lambda d: d.get("ifname", ""))


def snapshot(runner: Runner) -> dict:
    """Everything that ``up``/``down`` could change, normalised for comparison.

    Returns a dict with, for the host and every named namespace, the links
    (without counters, indexes, MAC addresses and carrier state, which the
    kernel derives), IPv4 and global IPv6 addresses, main routes of both
    families (``routes6``: without the kernel's ``fe80::/64`` ones) and, in
    a namespace, its ``ip_forward`` and ``ipv6_forwarding`` (a router's);
    ``netns``: the sorted ``/run/netns`` names; ``ip_forward``,
    ``ipv6_forwarding``; ``iptables`` and ``ip6tables``: ``iptables-save``
    and ``ip6tables-save`` without ``#`` lines and counters; and
    ``etc_netns``: every directory (``"DIR"``) and file (its text) under
    ``/etc/netns``. Two processes through ``runner``.
    """
    names, stale = read_netns(runner)
    spaces = sorted(names - stale)
    n = len(spaces)
    reads = [_show_read(None, True), *(_show_read(s, True) for s in spaces),
             *((_in_netns(_FORWARDING, s), None) for s in spaces),
             (("iptables-save",), None), (("ip6tables-save",), None), (_FORWARDING, None), _names.READ]
    results = gather(runner, reads)
    files, dirs = _names.parse_tree(*results.pop())
    forwarding = [_forwarding(r) for r in results[1 + n:1 + 2 * n]]
    host_forward, host_forward6 = _forwarding(results[-1])

    def one(text: str, forward: tuple[str | None, str | None] | None = None) -> dict:
        links, routes = _show_docs(text)
        routes6 = [r for r in _routes6_doc(text) if not str(r.get("dst", "")).startswith("fe80:")]
        out = {"links": _norm_links(links), "routes": sorted(json.dumps(x, sort_keys=True) for x in routes),
               "routes6": sorted(json.dumps(x, sort_keys=True) for x in routes6)}
        if forward is not None:
            out["ip_forward"], out["ipv6_forwarding"] = forward
        return out

    return {
        "host": one(results[0][1]),
        "namespaces": {s: one(r[1], f) for s, r, f in zip(spaces, results[1:1 + n], forwarding)},
        "netns": sorted(names),
        "stale_netns": sorted(stale),
        "ip_forward": host_forward,
        "iptables": iptables_rules(results[-3][1]),
        "ipv6_forwarding": host_forward6,
        "ip6tables": iptables_rules(results[-2][1]),
        "etc_netns": {**{d: "DIR" for d in sorted(dirs)}, **dict(sorted(files.items()))},
    }


def iptables_rules(save: str) -> list[str]:
    """The meaningful lines of ``iptables-save`` output, sorted.

    Keeps rules (``TABLE -A ...``), user-defined chains and built-in chains
    whose policy is not ACCEPT; drops ``#`` comments, counters and the
    headers of tables that exist but are empty (``iptables -t nat`` creates
    the nat table; an empty table is not a rule, KERNEL-NOTES).
    """
    out, table = [], ""
    for line in save.splitlines():
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if policy not in ("ACCEPT",):
                out.append(f"{table} :{name} {policy}")
            continue
        out.append(f"{table} {line}")
    return sorted(out)


def difference(before: object, after: object, path: str = "", *, limit: int | None = 3) -> str:
    """Where two snapshots differ: ``/path: before -> after`` for the first ``limit`` places (None: all)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after), key=str)
        parts = [difference(before.get(k), after.get(k), f"{path}/{k}", limit=None)
                 for k in keys if before.get(k) != after.get(k)]
        return "; ".join(parts[:limit] if limit is not None else parts)
    return f"{path}: {json.dumps(before, default=str)[:400]} -> {json.dumps(after, default=str)[:400]}"
