"""``bridgenet show``: what a network is on the host now, beside what ``up`` makes, with its drift.

:func:`show` reads the live state a network needs (the same one-process
read as ``plan``) and reports, for the host and each of the network's
namespaces, the links the network names (``ip -json`` fields: ``ifname``,
``operstate``, ``flags``, ``mtu``, ``master``, ``addr_info``), their routes,
the bridges with their ports, the sysctls it sets, its iptables rules,
published ports and ``/etc/netns`` files, each marked present or not.

Drift is what differs from what ``up`` would leave, one :class:`Drift` each:

* ``missing``: an object of the network is not there (a namespace, a link,
  an address, a route, a rule, a file); what lives in a missing namespace or
  on a missing link is not listed again;
* ``changed``: the object is there but differs (a link down, another MTU or
  master, a sysctl's value, a file's text, or a conflict ``up`` would refuse);
* ``extra``: in what the network created, something it does not have: a
  link in its namespace, an address on its link, a route (not the kernel's
  own) in its namespace, a port on its bridge, a rule tagged with its name,
  or a state-file entry of a step the network no longer has.

Each drift carries the command that would mend it (``fix``; ``bridgenet up``
mends missing and changed ones all at once). The rendering is in
``status_text.py``; the JSON shape is documented in the README ("bridgenet show").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from .commands import (
    AddrPresent, ChainPresent, Command, DirPresent, FilePresent, LinkAlias, LinkHairpin, LinkInNetns, LinkMaster,
    LinkMtu, LinkPresent, LinkUp, NetnsPresent, RoutePresent, RulePresent, SysctlValue, ip, shell_join,
)
from .effects import satisfied
from .errors import ConflictError, ValidationError
from .ledger import LEDGER_DIR, Ledger
from .state_store import store_for
from .network import Network
from .plan import _created_links, _leave_alone, read_for
from .runners import Runner
from .state import Link, LiveState

HOST = "host"
"""The ``where`` of the host's own namespace (the sandbox's, inside a sandbox)."""

_OBJECTS = (NetnsPresent, LinkPresent)


@attrs.frozen
class Drift:
    """One difference between the host and what ``up`` makes.

    Attributes:
        kind: ``"missing"``, ``"changed"`` or ``"extra"`` (see the module).
        where: ``"host"`` or a namespace name.
        what: the object, e.g. ``"link veth4"``, ``"address 10.0.0.2/24 on eth0"``.
        detail: how it differs, e.g. ``"down (wanted up)"``; empty when ``what`` says it.
        fix: the shell command that mends it, or None (no single command).
    """

    kind: str
    where: str
    what: str
    detail: str = ""
    fix: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "where": self.where, "what": self.what, "detail": self.detail, "fix": self.fix}


@attrs.frozen
class Place:
    """The host or one namespace: the links the network names there (live, or None when missing) and routes.

    ``links``: ``(name, Link or None)`` in the network's order; ``routes``:
    ``ip -json``-shaped dicts of the live routes (the host: only those via
    the network's links; IPv6 ones without the kernel's ``fe80::/64``).
    """

    name: str
    present: bool
    links: tuple[tuple[str, Link | None], ...]
    routes: tuple[dict, ...]


@attrs.frozen
class NetworkStatus:
    """What :func:`show` found for one network.

    Attributes:
        network: its name.
        source: where it came from (``"the lesson"``, a file's path) or None (Python).
        state_file: the path of its state file as the host sees it
            (``/run/bridgenet/NAME.json``), or None when it has none (not up).
        places: the host first, then each of its namespaces.
        bridges: ``(name, ports)``: each bridge of the network and the links
            that are its ports now (live ``master``).
        sysctls: ``(key, netns, live value or None, wanted)``.
        rules: ``(family, table, chain, netns, rule argv, present)``.
        ports: published ports: ``(container, entry text, family, present)``
            (an entry without host address is published once per family).
        files: ``(path, present)`` of its ``/etc/netns`` files.
        drift: every :class:`Drift`, in the network's order, extras last.
        warnings: what ``plan`` warns of (e.g. a FORWARD policy of DROP).
        compared: False when the network could not be read back to compare
            (built in Python, or its file is gone or changed: see ``warnings``);
            only when :func:`show` lists every network.
    """

    network: str
    source: str | None
    state_file: str | None
    places: tuple[Place, ...] = ()
    bridges: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sysctls: tuple[tuple[str, str | None, str | None, str], ...] = ()
    rules: tuple[tuple[int, str, str, str | None, tuple[str, ...], bool], ...] = ()
    ports: tuple[tuple[str, str, int, bool], ...] = ()
    files: tuple[tuple[str, bool], ...] = ()
    drift: tuple[Drift, ...] = ()
    warnings: tuple[str, ...] = ()
    compared: bool = True

    @property
    def drifted(self) -> bool:
        return bool(self.drift)

    def to_dict(self) -> dict:
        """The JSON object ``bridgenet show --json`` prints for the network (``ip -json`` field names)."""
        from .status_text import status_dict

        return status_dict(self)

    def render(self) -> str:
        """The text ``bridgenet show`` prints for the network."""
        from .status_text import render

        return render(self)


def show(networks: Iterable[Network | str] | None = None, runner: Runner | None = None) -> list[NetworkStatus]:
    """The status of ``networks`` on the host ``runner`` acts on (default: this host, through ``sh``).

    Args:
        networks: :class:`Network` objects, or names of networks that are up
            (their state files say which file or the lesson they came from);
            None: every network with a state file, by name.
        runner: where to read (a sandbox's ``runner()``); reads only, one
            process per network.

    Returns:
        One :class:`NetworkStatus` per network, in the order given (by name when None).

    Raises:
        ValidationError: a name given has no state file, or its network was
            built in Python (pass the Network itself) or its file is gone or
            changed. When listing every network (``networks`` None), such a
            network is a status with ``compared=False`` instead.
    """
    from .recorded import load_source, recorded_source

    if runner is None:
        from .runners import ShRunner

        runner = ShRunner()
    listing = networks is None
    if networks is None:
        networks = Ledger.names(store_for(runner))
    store = store_for(runner)
    out = []
    for net in networks:
        if isinstance(net, str):
            source = recorded_source(net, store if store is not None else "/", "show")
            try:
                net = load_source(net, source, "pass the Network to bridgenet.show([network])")
            except ValidationError as e:
                if not listing:
                    raise
                # listing every network: one that cannot be read back is named, not compared
                out.append(NetworkStatus(net, source, f"/{LEDGER_DIR}/{net}.json", compared=False,
                                         warnings=(f"not compared: {e}",)))
                continue
        out.append(network_status(net, runner))
    return out


def network_status(network: Network, runner: Runner, state: LiveState | None = None) -> NetworkStatus:
    """The status of one network (see :func:`show`); ``state``: live state already read (default: read it)."""
    from .plan import _warnings

    ledger = Ledger.open(store_for(runner), network.name)
    has_file = ledger.recorded
    state = state if state is not None else read_for(network, runner)
    steps = network.steps()
    owned = {e.key for e in ledger.entries if e.owns}
    created = _created_links(s for s in steps if s.key in owned)
    effects = [(c, c.effect) for s in steps for c in s.up if not _leave_alone(c.effect, created)]
    drift = list(_conflict(network, state))
    drift += _missing_and_changed(effects, state)
    created_ns = {e.name for s in steps if s.key in owned for c in s.up[:1] if isinstance(e := c.effect, NetnsPresent)}
    drift += _extra(network, effects, state, created_ns)
    keys = {s.key for s in steps}
    drift += [Drift("extra", HOST, f"state-file entry {e.key!r}", "a step the network no longer has",
                    "; ".join(c.shell() for c in e.undo) or None) for e in ledger.entries if e.key not in keys]
    return NetworkStatus(
        network.name, network.source, f"/{LEDGER_DIR}/{network.name}.json" if has_file else None,
        places=tuple(_places(network, effects, state)),
        bridges=tuple((e.name, tuple(n for n, link in state.ns(e.netns).links.items() if link.master == e.name))
                      for _, e in effects if isinstance(e, LinkPresent) and e.kind == "bridge"),
        sysctls=tuple((e.key, e.netns, _sysctl(state, e), e.value) for _, e in effects if isinstance(e, SysctlValue)),
        rules=tuple((e.family, e.table, e.chain, e.netns, e.rule, satisfied(e, state))
                    for _, e in effects if isinstance(e, RulePresent)),
        ports=tuple(_ports(network, steps, state)),
        files=tuple((e.path, satisfied(e, state)) for _, e in effects if isinstance(e, FilePresent)),
        drift=tuple(drift), warnings=tuple(_warnings(network, runner, state)))


def _sysctl(state: LiveState, e: SysctlValue) -> str | None:
    return state.sysctls.get((e.key, e.netns))


def _where(netns: str | None) -> str:
    return HOST if netns is None else netns


def _conflict(network: Network, state: LiveState) -> list[Drift]:
    """What ``up`` would refuse (``conflicts.py``): one ``changed`` drift, with the conflict's own message."""
    from .conflicts import check_conflicts

    try:
        check_conflicts(network, state, moves_peers=network.move_peers)
    except ConflictError as e:
        hint = f"; {e.hint}" if e.hint else ""
        return [Drift("changed", HOST, e.what, f"{e.found} (wanted {e.wanted}): up refuses to run until this "
                      f"is mended{hint}", None)]
    return []


def _missing_and_changed(effects: Sequence[tuple[Command, object]], state: LiveState) -> list[Drift]:
    """Each command of the network not in effect, as a drift; nothing inside a missing namespace or link."""
    gone_ns: set[str] = set()
    gone_links: set[tuple[str | None, str]] = set()
    out = []
    for c, e in effects:
        if e is None or satisfied(e, state):
            continue
        netns = getattr(e, "netns", None)
        if netns in gone_ns or (netns, getattr(e, "name", None) or getattr(e, "dev", None)) in gone_links:
            continue
        if isinstance(e, NetnsPresent):
            gone_ns.add(e.name)
        elif isinstance(e, LinkPresent):
            gone_links.add((e.netns, e.name))
            if e.peer:
                gone_links.add((e.peer_netns, e.peer))
        out.append(_drift(c, e, state))
    return out


def _drift(c: Command, e: object, state: LiveState) -> Drift:
    """The drift of one command ``c`` whose effect ``e`` is not true in ``state``."""
    netns = getattr(e, "netns", None)
    link = state.ns(netns).links.get(getattr(e, "name", None) or getattr(e, "dev", None) or "")
    fix = c.shell()
    if isinstance(e, NetnsPresent):
        return Drift("missing", e.name, f"namespace {e.name}", "", fix)
    if isinstance(e, LinkPresent):
        return Drift("missing", _where(netns), f"link {e.name}", f"a {e.kind}", fix)
    if isinstance(e, LinkInNetns):
        return Drift("changed", e.netns, f"link {e.name}", f"not in namespace {e.netns}", fix)
    if link is None and isinstance(e, (LinkUp, LinkMtu, LinkMaster, LinkAlias, LinkHairpin, AddrPresent)):
        name = getattr(e, "name", None) or getattr(e, "dev", "")
        return Drift("missing", _where(netns), f"link {name}", "", fix)
    if isinstance(e, LinkUp):
        return Drift("changed", _where(netns), f"link {e.name}", "down (wanted up)", fix)
    if isinstance(e, LinkMtu):
        return Drift("changed", _where(netns), f"link {e.name}", f"mtu {link.mtu} (wanted {e.mtu})", fix)
    if isinstance(e, LinkMaster):
        now = f"a port of {link.master}" if link.master else "no bridge port (nomaster)"
        return Drift("changed", _where(netns), f"link {e.name}", f"{now} (wanted a port of {e.master})", fix)
    if isinstance(e, LinkAlias):
        return Drift("changed", _where(netns), f"link {e.name}", f"alias {link.alias!r} (wanted {e.alias!r})", fix)
    if isinstance(e, LinkHairpin):
        return Drift("changed", _where(netns), f"link {e.name}", f"hairpin {'on' if link.hairpin else 'off'} "
                     f"(wanted {'on' if e.on else 'off'})", fix)
    if isinstance(e, AddrPresent):
        return Drift("missing", _where(netns), f"address {e.address} on {e.dev}", "", fix)
    if isinstance(e, RoutePresent):
        return Drift("missing", _where(netns), f"route {e.dst} via {e.via}", "", fix)
    if isinstance(e, SysctlValue):
        return Drift("changed", _where(netns), e.key, f"{_sysctl(state, e)} (wanted {e.value})", fix)
    if isinstance(e, RulePresent):
        tool = "iptables" if e.family == 4 else "ip6tables"
        return Drift("missing", _where(netns), f"{tool} rule {e.table} {e.chain}", shell_join(e.rule), fix)
    if isinstance(e, ChainPresent):
        return Drift("missing", _where(netns), f"chain {e.table} {e.chain}", "", fix)
    if isinstance(e, FilePresent):
        detail = "other text" if e.path in state.files else ""
        return Drift("changed" if detail else "missing", _where(e.owner), f"file {e.path}", detail, fix)
    if isinstance(e, DirPresent):
        return Drift("missing", _where(e.owner), f"directory {e.path}", "", fix)
    return Drift("changed", _where(netns), c.step, "not in effect", fix)


def _extra(network: Network, effects: Sequence[tuple[Command, object]], state: LiveState,
           created_ns: set[str]) -> list[Drift]:
    """Links, addresses, routes, bridge ports and tagged rules that are live in what the network made, and
    that the network does not have."""
    links: dict[str | None, set[str]] = {}
    addrs: set[tuple[str | None, str, object]] = set()
    routes: set[tuple[str | None, str, str]] = set()
    rules: set[tuple[int, str, str, str | None, tuple[str, ...]]] = set()
    for _, e in effects:
        if isinstance(e, LinkPresent):
            links.setdefault(e.netns, set()).add(e.name)
            if e.peer:
                links.setdefault(e.peer_netns, set()).add(e.peer)
        elif isinstance(e, LinkInNetns):
            links.setdefault(e.netns, set()).add(e.name)
        elif isinstance(e, AddrPresent):
            addrs.add((e.netns, e.dev, e.address))
        elif isinstance(e, RoutePresent):
            routes.add((e.netns, e.dst, str(e.via)))
        elif isinstance(e, RulePresent):
            rules.add((e.family, e.table, e.chain, e.netns, e.rule))
    out = []
    bridges = {(e.netns, e.name) for _, e in effects if isinstance(e, LinkPresent) and e.kind == "bridge"}
    for netns, names in links.items():
        if netns is not None and not state.netns_exists(netns):
            continue
        ns = state.ns(netns)
        if netns in created_ns:
            out += [Drift("extra", netns, f"link {name}", "not of the network",
                          ip("link", "del", name, netns=netns).shell())
                    for name in ns.links if name not in names and name != "lo"]
        for name in names:
            link = ns.links.get(name)
            if link is None:
                continue
            out += [Drift("extra", _where(netns), f"address {a} on {name}", "not of the network",
                          ip("addr", "del", str(a), "dev", name, netns=netns).shell())
                    for a in (*link.addresses, *link.addresses6) if (netns, name, a) not in addrs]
            if (netns, name) in bridges:
                out += [Drift("extra", _where(netns), f"port {p} of {name}", "not of the network",
                              ip("link", "set", "dev", p, "nomaster", netns=netns).shell())
                        for p, other in ns.links.items() if other.master == name and p not in names]
        if netns in created_ns:
            for r in (*ns.routes, *ns.routes6):
                if r.protocol in ("kernel", "ra") or r.gateway is None or (netns, r.dst, r.gateway) in routes:
                    continue
                out.append(Drift("extra", netns, f"route {r.dst} via {r.gateway}", "not of the network",
                                 ip("route", "del", r.dst, "via", r.gateway, netns=netns).shell()))
    if network.tag:
        out += _extra_rules(network.name, state, rules)
    return out


def _extra_rules(name: str, state: LiveState, wanted: set) -> list[Drift]:
    """Rules tagged ``bridgenet:NAME`` in the chains read that the network does not have."""
    tag = f"bridgenet:{name}"
    out = []
    for family in (4, 6):
        tool = "iptables" if family == 4 else "ip6tables"
        for (table, chain, netns), rules in state.rules_of(family).items():
            for rule in rules:
                if tag in rule and (family, table, chain, netns, rule) not in wanted:
                    fix = Command(tool, ("-t", table, "-D", chain, *rule), netns=netns).shell()
                    out.append(Drift("extra", _where(netns), f"{tool} rule {table} {chain}", shell_join(rule), fix))
    return out


def _places(network: Network, effects: Sequence[tuple[Command, object]], state: LiveState) -> list[Place]:
    """The host and each namespace of the network, with the links the network names there."""
    order: dict[str | None, dict[str, None]] = {None: {}}
    for _, e in effects:
        if isinstance(e, NetnsPresent):
            order.setdefault(e.name, {})
        elif isinstance(e, LinkPresent):
            order.setdefault(e.netns, {})[e.name] = None
            if e.peer:
                order.setdefault(e.peer_netns, {})[e.peer] = None
        elif isinstance(e, LinkInNetns):
            order.setdefault(e.netns, {})[e.name] = None
            order[None].pop(e.name, None)
        elif isinstance(e, (AddrPresent, LinkUp)) and not (isinstance(e, LinkUp) and e.name == "lo"):
            order.setdefault(e.netns, {})[getattr(e, "name", None) or e.dev] = None
    out = []
    for netns, names in order.items():
        present = netns is None or state.netns_exists(netns)
        ns = state.ns(netns)
        live = [r for r in (*ns.routes, *ns.routes6) if not r.dst.startswith("fe80:")]
        if netns is None:
            live = [r for r in live if r.dev in names]
        routes = tuple({"dst": r.dst, **({"gateway": r.gateway} if r.gateway else {}), "dev": r.dev,
                        **({"protocol": r.protocol} if r.protocol else {})} for r in live)
        out.append(Place(_where(netns), present, tuple((n, ns.links.get(n) if present else None) for n in names),
                         routes))
    return out


def _ports(network: Network, steps: Sequence, state: LiveState) -> list[tuple[str, str, int, bool]]:
    """Each published port: its container, its entry, and whether all its step's commands are in effect."""
    from .ports import PublishedPort

    by_key = {s.key: s for s in steps}
    out = []
    for p in network.of_type(PublishedPort):
        step = by_key.get(p.step_key)
        ok = step is not None and all(satisfied(c.effect, state) for c in step.up)
        out.append((p.container, p.mapping.text, p.family, ok))
    return out
