"""Live state: what exists now on a host and in its namespaces, read from ``ip -json``.

Everything here parses machine output only: ``ip -details -json`` (ip(8)
``-json``), ``/proc/self/mountinfo`` (proc(5)), ``sysctl -n`` and
``iptables -S`` (iptables(8), the rule-spec form ``-A CHAIN ...``); the
parsers of ``ip -json`` and ``iptables -S`` and the values they make
(:class:`Link`, :class:`RouteEntry`) are in ``stateparse.py``.

:func:`read` gathers what a network needs to be planned; :func:`snapshot`
gathers everything, for before/after comparisons in tests.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address

import attrs

from . import names as _names
from .runners import Runner
from .stateparse import (  # noqa: F401  (re-exported: state.Link, state.parse_links, ...)
    Link, RouteEntry, _json_docs, is_route6, parse_chains, parse_links, parse_routes, parse_routes6, parse_rules)

NETNS_DIR = "/run/netns"


@attrs.frozen
class NsState:
    """Links and routes of one network namespace.

    ``routes``: the IPv4 main table; ``routes6``: the IPv6 main table (with
    the kernel's own ``fe80::/64`` routes), read only when asked for
    (:func:`read` with ``v6``), else empty.
    """

    links: dict[str, Link]
    routes: tuple[RouteEntry, ...]
    routes6: tuple[RouteEntry, ...] = ()

    def owners(self) -> dict[IPv4Address, str]:
        """``{address: link}`` for every IPv4 address in the namespace."""
        return {a.ip: link.name for link in self.links.values() for a in link.addresses}

    def owners6(self) -> dict[IPv6Address, str]:
        """``{address: link}`` for every global IPv6 address in the namespace (:attr:`Link.addresses6`)."""
        return {a.ip: link.name for link in self.links.values() for a in link.addresses6}


EMPTY_NS = NsState({}, ())


@attrs.frozen
class LiveState:
    """What a host looks like now.

    Attributes:
        host: the host namespace's links and routes.
        namespaces: state of each named namespace that was read.
        netns_names: every entry of ``/run/netns``.
        stale_netns: entries of ``/run/netns`` that are not a mounted
            namespace (an empty file left behind).
        sysctls: ``{(key, netns): value}`` for the keys read.
        rules: ``{(table, chain, netns): [rule, ...]}``, each rule the
            argv after ``-A CHAIN`` as ``iptables -S`` prints it.
        chains: ``{(table, netns): names}``: every chain (built-in and
            user-defined) of each table that was read; a table missing here
            was not read (or could not be), so nothing is known of its chains.
        extra: (exit code, stdout) of each of the ``extra`` reads given to
            :func:`read`, in order.
        rules6, chains6: the same as ``rules`` and ``chains`` for ip6tables
            (``ip6tables -S``), kept apart; read only when asked for.
        files, dirs: the files (``{path: text}``) and directories under
            ``/etc/netns`` when :func:`read` was asked for them (``names.py``).
        fdb: ``{(dev, netns): {(lladdr, dst), ...}}``: the forwarding entries of each link read
            (``bridge -json fdb show dev DEV``, bridge(8)); a link missing here was not read.
    """

    host: NsState
    namespaces: dict[str, NsState]
    netns_names: frozenset[str]
    stale_netns: frozenset[str]
    sysctls: dict[tuple[str, str | None], str]
    rules: dict[tuple[str, str, str | None], list[tuple[str, ...]]]
    chains: dict[tuple[str, str | None], frozenset[str]] = attrs.field(factory=dict)
    extra: tuple[tuple[int, str], ...] = ()
    rules6: dict[tuple[str, str, str | None], list[tuple[str, ...]]] = attrs.field(factory=dict)
    chains6: dict[tuple[str, str | None], frozenset[str]] = attrs.field(factory=dict)
    files: dict[str, str] = attrs.field(factory=dict)
    dirs: frozenset[str] = frozenset()
    fdb: dict[tuple[str, str | None], frozenset[tuple[str, str]]] = attrs.field(factory=dict)

    def chain_exists(self, table: str, chain: str, netns: str | None = None, family: int = 4) -> bool | None:
        """Whether ``chain`` exists in ``table`` of ``netns`` (ip6tables' with ``family=6``); None: not read."""
        names = (self.chains if family == 4 else self.chains6).get((table, netns))
        return None if names is None else chain in names

    def rules_of(self, family: int) -> dict[tuple[str, str, str | None], list[tuple[str, ...]]]:
        """:attr:`rules` (family 4, iptables) or :attr:`rules6` (family 6, ip6tables)."""
        return self.rules if family == 4 else self.rules6

    def ns(self, netns: str | None) -> NsState:
        """State of ``netns`` (None: the host); empty if it does not exist."""
        if netns is None:
            return self.host
        return self.namespaces.get(netns, EMPTY_NS)

    def netns_exists(self, name: str) -> bool:
        return name in self.netns_names and name not in self.stale_netns


# --- reading: every read is an argv (and its input); many run in one shell ---------------

_MARK = "@@bridgenet-read"

Read = tuple[tuple[str, ...], str | None]
"""One read: (argv, text for its standard input or None)."""


def gather(runner: Runner, reads: list[Read]) -> list[tuple[int, str]]:
    """Run ``reads`` in ONE ``sh`` (through ``runner``) and return each one's (exit code, stdout).

    Each read costs ≈1.5 ms inside the shell instead of ≈5 ms as a process
    of its own through ``sh`` and ``nsenter`` (measured here). The script
    goes to ``sh -s`` on standard input, so its size is not bounded by
    ARG_MAX; every read gets its own input (or /dev/null) so none can read
    the script. A read inside a namespace whose ``/run/netns`` entry does not
    exist is not started and comes back as (1, ""): planning a network of
    100 new containers costs no process per container. Where the runner runs
    nothing (a dry-run), every read comes back as (1, "").
    """
    if not reads:
        return []
    lines = []
    for i, (argv, text) in enumerate(reads):
        cmd = shlex.join(argv)
        cmd = f"printf %s {shlex.quote(text)} | {cmd}" if text is not None else f"{cmd} </dev/null"
        netns = _netns_of(argv)
        if netns is not None:
            # a namespace that does not exist costs no process: ``[`` is built into sh
            cmd = f"if [ -e {shlex.quote(NETNS_DIR + '/' + netns)} ]; then {cmd} 2>/dev/null; rc=$?; else rc=1; fi"
        else:
            cmd = f"{cmd} 2>/dev/null; rc=$?"
        lines.append(f"echo '{_MARK} {i}'; {cmd}; echo; echo \"{_MARK}-end {i} $rc\"")
    out = runner.exec(["sh", "-s"], input="\n".join(lines) + "\n", check=False).stdout
    results: list[tuple[int, str]] = [(1, "")] * len(reads)
    for m in re.finditer(rf"^{_MARK} (\d+)\n(.*?)\n{_MARK}-end \1 (\d+)$", out, re.M | re.S):
        results[int(m.group(1))] = (int(m.group(3)), m.group(2))
    return results


def _netns_of(argv: tuple[str, ...]) -> str | None:
    """The namespace a read runs in: ``ip ... -n NS ...`` or ``ip netns exec NS ...``; None for the host."""
    if argv[:3] == ("ip", "netns", "exec") and len(argv) > 3:
        return argv[3]
    if argv[:1] == ("ip",) and "-n" in argv[:-1]:
        return argv[argv.index("-n") + 1]
    return None


def _show_read(netns: str | None, v6: bool = False) -> Read:
    """``ip -d -json`` ``addr show`` and ``route show`` of ``netns`` (None: the host), as one ``ip -batch``;
    with ``v6``, ``route show table all`` too (its IPv6 routes: no process more)."""
    return ("ip", "-d", "-json", *(("-n", netns) if netns is not None else ()), "-batch", "-"), \
        "addr show\nroute show\nroute show table all\n" if v6 else "addr show\nroute show\n"


def _show_docs(text: str) -> tuple[list[dict], list[dict]]:
    """(links with their addresses, routes) from :func:`_show_read`'s output; empty when ip failed."""
    try:
        docs = _json_docs(text)
    except ValueError:
        return [], []
    return (docs[0], docs[1]) if len(docs) in (2, 3) else ([], [])


def _routes6_doc(text: str) -> list[dict]:
    """The IPv6 main-table routes of a ``v6`` :func:`_show_read`'s output (its third document)."""
    try:
        docs = _json_docs(text)
    except ValueError:
        return []
    return [r for r in docs[2] if isinstance(r, dict) and is_route6(r)] if len(docs) == 3 else []


def _ns_state(text: str, v6: bool = False) -> NsState:
    links, routes = _show_docs(text)
    return NsState(parse_links(links), parse_routes(routes), parse_routes(_routes6_doc(text)) if v6 else ())


def read_ns(runner: Runner, netns: str | None) -> NsState:
    """Read links, addresses and routes of ``netns`` (None: the host)."""
    return _ns_state(gather(runner, [_show_read(netns)])[0][1])


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


_NETNS_READS: list[Read] = [(("ip", "-json", "netns", "list"), None), (("cat", "/proc/self/mountinfo"), None)]


def _netns_from(listing: str, mountinfo: str) -> tuple[frozenset[str], frozenset[str]]:
    names = set()
    if listing.strip():
        for doc in _json_docs(listing):
            for item in doc or []:
                if isinstance(item, dict) and item.get("name"):
                    names.add(item["name"])
    mounted = set()
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right.startswith("nsfs"):
            continue
        point = _unescape_mount(fields[4])
        if point.startswith(NETNS_DIR + "/"):
            mounted.add(point[len(NETNS_DIR) + 1:])
    return frozenset(names), frozenset(names - mounted)


def read_netns(runner: Runner) -> tuple[frozenset[str], frozenset[str]]:
    """Return (all names in ``/run/netns``, the stale ones that are not mounted namespaces).

    ``ip netns add`` bind-mounts the namespace on ``/run/netns/NAME``
    (ip-netns(8)); an entry with no ``nsfs`` mount on it is an empty file
    left behind.
    """
    (_, listing), (_, mountinfo) = gather(runner, _NETNS_READS)
    return _netns_from(listing, mountinfo)


def _in_netns(argv: tuple[str, ...], netns: str | None) -> tuple[str, ...]:
    return ("ip", "netns", "exec", netns, *argv) if netns is not None else argv


def _sysctl_read(key: str, netns: str | None) -> Read:
    return _in_netns(("sysctl", "-n", key), netns), None


def _sysctl_value(result: tuple[int, str]) -> str | None:
    code, text = result
    return text.strip() if code == 0 and text.strip() else None


def read_sysctl(runner: Runner, key: str, netns: str | None = None) -> str | None:
    """``sysctl -n KEY`` in ``netns``; None when it cannot be read."""
    return _sysctl_value(gather(runner, [_sysctl_read(key, netns)])[0])


def _table_read(table: str, netns: str | None, family: int = 4) -> Read:
    """``iptables -w -t TABLE -S`` (``ip6tables`` for family 6): every chain and rule of one table (in ``netns``)."""
    return _in_netns(("iptables" if family == 4 else "ip6tables", "-w", "-t", table, "-S"), netns), None


def _rules_read(table: str, chain: str, netns: str | None) -> Read:
    """``iptables -w -t TABLE -S CHAIN`` (in ``netns``)."""
    return _in_netns(("iptables", "-w", "-t", table, "-S", chain), netns), None


def read_policy(runner: Runner, table: str, chain: str, netns: str | None = None) -> str | None:
    """The policy of a built-in chain (``-P CHAIN POLICY`` in ``iptables -S``), or None if unreadable."""
    code, text = gather(runner, [_rules_read(table, chain, netns)])[0]
    for line in text.splitlines() if code == 0 else ():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "-P" and parts[1] == chain:
            return parts[2]
    return None


def read_rules(runner: Runner, table: str, chain: str, netns: str | None = None) -> list[tuple[str, ...]]:
    """``iptables -t TABLE -S CHAIN`` parsed; empty when iptables is missing or the chain is empty."""
    code, text = gather(runner, [_rules_read(table, chain, netns)])[0]
    return parse_rules(text, chain) if code == 0 else []


def read(runner: Runner, *, netns: Iterable[str] = (), sysctls: Iterable[tuple[str, str | None]] = (),
         rules: Iterable[tuple[str, str, str | None]] = (), extra: Sequence[Read] = (),
         rules6: Iterable[tuple[str, str, str | None]] = (), v6: bool = False, etc: bool = False,
         fdb: Iterable[tuple[str, str | None]] = ()) -> LiveState:
    """Read the host, the named namespaces among ``netns`` that exist, sysctls and iptables chains.

    Args:
        runner: where to read (a sandbox's runner, or a host runner).
        netns: namespace names whose state is wanted (those that don't exist are skipped).
        sysctls: ``(key, netns)`` pairs.
        rules: ``(table, chain, netns)`` triples. Each table named is read
            whole, once per namespace (``iptables -S``), which also tells
            which chains exist there (``LiveState.chains``).
        extra: more reads to run in the same shell; their results are
            ``LiveState.extra`` (e.g. ``hostcheck.READS``).
        rules6: like ``rules``, read with ``ip6tables`` (``LiveState.rules6``, ``chains6``).
        v6: read the IPv6 routes too (``NsState.routes6``; one more line in
            each namespace's ``ip -batch``, no process more). IPv6 addresses
            are always read (``addr show`` lists them).
        etc: also read ``/etc/netns`` (``LiveState.files``/``dirs``).
        fdb: ``(dev, netns)`` pairs whose forwarding entries to read (``LiveState.fdb``; a link that
            does not exist has none).

    Cost: one process through ``runner`` (see :func:`gather`).
    """
    spaces = list(dict.fromkeys(netns))
    sys_keys = list(dict.fromkeys(sysctls))
    chains = list(dict.fromkeys(rules))
    tables = list(dict.fromkeys((t, n) for t, _, n in chains))
    chains6 = list(dict.fromkeys(rules6))
    tables6 = list(dict.fromkeys((t, n) for t, _, n in chains6))
    fdbs = list(dict.fromkeys(fdb))
    reads = [*_NETNS_READS, _show_read(None, v6), *(_show_read(n, v6) for n in spaces),
             *(_sysctl_read(k, n) for k, n in sys_keys), *(_table_read(t, n) for t, n in tables),
             *(_table_read(t, n, 6) for t, n in tables6), *([_names.READ] if etc else []),
             *(_fdb_read(d, n) for d, n in fdbs), *extra]
    results = iter(gather(runner, reads))
    names, stale = _netns_from(next(results)[1], next(results)[1])
    live = names - stale
    host = _ns_state(next(results)[1], v6)
    ns_states = {n: _ns_state(next(results)[1], v6) for n in spaces}
    sys_values = {}
    for key, ns in sys_keys:
        value = _sysctl_value(next(results))
        if value is not None and (ns is None or ns in live):
            sys_values[(key, ns)] = value
    rule_map, chain_map = _tables(results, tables, chains, live)
    rule_map6, chain_map6 = _tables(results, tables6, chains6, live)
    files, dirs = _names.parse_tree(*next(results)) if etc else ({}, frozenset())
    fdb_map = {(d, n): _fdb_entries(next(results)) for d, n in fdbs}
    return LiveState(host, {n: s for n, s in ns_states.items() if n in live}, names, stale, sys_values, rule_map,
                     chain_map, tuple(results), rule_map6, chain_map6, files, dirs, fdb_map)


def _fdb_read(dev: str, netns: str | None) -> Read:
    """``bridge -json fdb show dev DEV`` (bridge(8)), in ``netns``; fails (no entries) when DEV does not exist."""
    return _in_netns(("bridge", "-json", "fdb", "show", "dev", dev), netns), None


def _fdb_entries(result: tuple[int, str]) -> frozenset[tuple[str, str]]:
    """``{(mac, dst)}`` of one ``bridge -json fdb show`` (entries without ``dst`` have ``""``)."""
    code, text = result
    if code != 0 or not text.strip():
        return frozenset()
    return frozenset((e.get("mac", ""), e.get("dst", "")) for doc in _json_docs(text) for e in doc or []
                     if isinstance(e, dict))


def _tables(results: Iterator[tuple[int, str]], tables: list[tuple[str, str | None]],
            chains: list[tuple[str, str, str | None]], live: frozenset[str]) -> tuple[dict, dict]:
    """(rules, chains) of :class:`LiveState` from the next ``len(tables)`` results (``iptables -S`` of each)."""
    table_text: dict[tuple[str, str | None], str | None] = {}
    chain_map: dict[tuple[str, str | None], frozenset[str]] = {}
    for table, ns in tables:
        code, text = next(results)
        if ns is None or ns in live:
            table_text[(table, ns)] = text if code == 0 else None
            if code == 0:
                chain_map[(table, ns)] = parse_chains(text)
    rule_map = {}
    for table, chain, ns in chains:
        if (table, ns) in table_text:
            text = table_text[(table, ns)]
            rule_map[(table, chain, ns)] = parse_rules(text, chain) if text is not None else []
    return rule_map, chain_map


# Snapshots for before/after comparisons live in snapshots.py; importable from here as before, looked up
# when first asked for (snapshots.py imports this module: an import here would make a circle).
_SNAPSHOT_NAMES = ("difference", "iptables_rules", "snapshot")


def __getattr__(name: str) -> object:
    if name in _SNAPSHOT_NAMES:
        from . import snapshots

        return getattr(snapshots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
