"""Conflicts: what on the host differs from a network, found before any change.

:func:`check_conflicts` compares a network with live state (stale
``/run/netns`` files, links of the wrong kind, addresses, subnets and routes
in the way); :func:`check_identity` and :func:`check_not_owned_by_others`
compare it with the state files of the networks already up.
"""


from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Interface, ip_network

from .commands import (
    LinkPresent,
    NetnsPresent,
    Step,
)
from .effects import _ns_ok, satisfied
from .errors import ConflictError, VethFreeingConflict
from .ledger import Ledger
from .model import Address, Route, VethPair
from .network import Network
from .state import LiveState


def check_identity(network: Network, ledger: Ledger, *, sources_only: bool = False) -> None:
    """Refuse a network whose name is up on this host as another network (another file, other bridges).

    ``sources_only`` (``down``): compare only where the two came from, so
    that a file whose bridge was edited can still take its network down.

    Raises:
        ConflictError: naming both sides and how to free the name.
    """
    old = ledger.identity
    if not ledger.entries or not old:
        return
    new = network.identity()
    diffs = []
    if old.get("source") != new.get("source"):
        diffs.append((f"comes from {_source(new.get('source'))}", f"came from {_source(old.get('source'))}"))
    if old.get("bridges") != new.get("bridges") and not sources_only:
        diffs.append((f"has bridge(s) {', '.join(new.get('bridges') or []) or 'none'}",
                      f"had {', '.join(old.get('bridges') or []) or 'none'}"))
    if diffs:
        raise ConflictError(
            f"network {network.name}", "this network, which " + " and ".join(w for w, _ in diffs),
            f"another network named {network.name} up, which " + " and ".join(f for _, f in diffs),
            hint=f"a name identifies one network on a host: take the other down first (`bridgenet down` with "
                 f"its file; the state file /run/bridgenet/{network.name}.json says what it made), or rename "
                 "this one",
        )


def _source(source: str | None) -> str:
    return "a Python program" if source is None else source


def check_not_owned_by_others(steps: Sequence[Step], state: LiveState, others: dict[str, Ledger]) -> None:
    """Refuse to reuse a bridge, link or namespace that another bridgenet network created.

    When network A created ``br1`` and network B found it in place, A's
    ``down`` would delete it under B. bridgenet refuses B instead (no
    reference counting: one owner per object).

    Raises:
        ConflictError: naming the object and the network that made it.
    """
    owners = {e.key: name for name, ledger in others.items() for e in ledger.entries if e.owns}
    if not owners:
        return
    for step in steps:
        first = step.up[0].effect if step.up else None
        if step.key not in owners or not isinstance(first, (LinkPresent, NetnsPresent)):
            continue
        exists = state.netns_exists(first.name) if isinstance(first, NetnsPresent) else satisfied(first, state)
        if exists:
            other = owners[step.key]
            what = "netns" if isinstance(first, NetnsPresent) else "link"
            raise ConflictError(
                f"{what} {first.name}", f"{first.name} for this network",
                f"{first.name} created by the bridgenet network {other}",
                hint=f"two networks never share an object one of them created (its down would remove it under "
                     f"the other): use another name here, or take {other} down first",
            )


# --- conflicts -----------------------------------------------------------------------


def _where(netns: str | None) -> str:
    return f"netns {netns}" if netns else "the host"


def check_conflicts(network: Network, state: LiveState, *, moves_peers: bool | None = None) -> None:
    """Raise ConflictError for the first thing on the host that differs from ``network``.

    Checked: stale ``/run/netns`` entries; links of the wrong kind or with
    the wrong veth peer or master; addresses already used by another link;
    another address already on one of the network's links; a subnet that
    overlaps an address or route already on the host; a route to the same
    destination through another gateway.

    ``moves_peers``: whether veth peers are created in the host and moved
    (then a host link with the peer's name is in the way); default: as the
    network renders them.
    """
    if moves_peers is None:
        moves_peers = network.move_peers
    for ns in network.namespaces:
        if ns.name in state.stale_netns:
            raise ConflictError(
                f"netns {ns.name}", "a network namespace", f"a stale empty file /run/netns/{ns.name} (no namespace "
                "is mounted on it, so `ip netns exec` fails with \"Invalid argument\")",
                hint=f"remove it with `ip netns del {ns.name}` (it only unlinks the stale file), then retry",
            )
    ours_host = {b.name for b in network.bridges} | {v.name for v in network.veths}
    ours_host |= {v.peer for v in network.veths if v.netns is None}
    ours_in: dict[str | None, set[str]] = {None: ours_host}
    for v in network.veths:
        if v.netns is not None:
            ours_in.setdefault(v.netns, set()).add(v.peer)
        if v.name_netns is not None:
            ours_in.setdefault(v.name_netns, set()).add(v.name)
    host = state.host.links
    for b in network.bridges:
        link = host.get(b.name)
        if link is not None and link.kind != "bridge":
            raise ConflictError(f"link {b.name}", "a bridge", f"a link of kind {link.kind or 'unknown'} named {b.name}")
    for v in network.veths:
        _check_veth(v, state, moves_peers)
    _check_addresses(network, state, ours_in)
    from .ports import check_port_conflicts

    check_port_conflicts(network.ordered, network.tag_text, state)
    for r in network.of_type(Route):
        if not _ns_ok(state, r.netns):
            continue
        ns_state = state.ns(r.netns)
        for entry in ns_state.routes6 if r.via.version == 6 else ns_state.routes:
            if entry.dst == r.dst and entry.gateway != str(r.via):
                found = f"via {entry.gateway}" if entry.gateway else f"dev {entry.dev}"
                raise ConflictError(f"route {r.dst} in {_where(r.netns)}", f"{r.dst} via {r.via}", f"{r.dst} {found}")


def _check_veth(v: VethPair, state: LiveState, moves_peers: bool) -> None:
    host = state.host.links
    home = host if v.name_netns is None else (
        state.ns(v.name_netns).links if _ns_ok(state, v.name_netns) else {})  # where the name end lives
    link = home.get(v.name)
    where_peer = _where(v.netns)
    peer_links = state.ns(v.netns).links if _ns_ok(state, v.netns) else {}
    peer = peer_links.get(v.peer)
    if link is None:
        if peer is not None:
            raise ConflictError(f"link {v.peer}", f"to create {v.peer} as the peer of a new veth {v.name}",
                                f"a link {v.peer} already in {where_peer}")
        if v.netns is not None and moves_peers and v.peer in host:
            raise ConflictError(f"link {v.peer}", f"to create the veth peer {v.peer} in the host, then move it",
                                f"a link {v.peer} already in the host")
        return
    if link.kind != "veth":
        raise ConflictError(f"link {v.name}", f"a veth whose peer is {v.peer}",
                            f"a link of kind {link.kind or 'unknown'} named {v.name}")
    # brid4 exists as a veth: its peer must be ours, in the host or in the namespace.
    in_host = host.get(v.peer) if v.name_netns is None else None
    if in_host is not None and in_host.peer == link.name and link.peer == in_host.name:
        pass  # not moved yet (both ends in the host): the plan moves it
    elif peer is not None and peer.peer_index == link.ifindex and link.peer_index == peer.ifindex:
        pass
    elif link.peer_netnsid is not None and peer is None:
        # Its peer is in another namespace, and nothing we read is it: most
        # likely the host end of a veth whose namespace was just deleted,
        # which the kernel frees asynchronously (settled_state waits for it).
        gone = v.netns is not None and not state.netns_exists(v.netns)
        raise VethFreeingConflict(
            f"link {v.name}", f"a veth whose peer is {v.peer} in {where_peer}",
            f"a veth {v.name} whose peer is in another namespace"
            + (f" ({v.netns} does not exist)" if gone else f" (not {v.peer} in {v.netns})" if v.netns else ""),
            hint=(f"after `ip netns del`, the kernel frees the host end of the namespace's veth asynchronously, "
                  f"and not at all while a process still holds the namespace (ip netns del only removes its "
                  f"name); if {v.name} does not go by itself, remove it with `ip link del {v.name}` and retry"),
            link=v.name,
        )
    else:
        raise ConflictError(f"link {v.name}", f"a veth whose peer is {v.peer} in {where_peer}",
                            f"a veth {v.name} whose peer is another link")
    if v.master is not None and link.master not in (None, v.master):
        raise ConflictError(f"link {v.name}", f"a bridge port of {v.master}", f"a bridge port of {link.master}")


def _addr_objects(network: Network) -> list[tuple[str, str | None, object]]:
    out = []
    for o in network.ordered:
        if isinstance(o, Address):
            out.append((o.dev, o.netns, o.address))
        elif isinstance(o, VethPair):
            if o.address is not None:
                out.append((o.peer, o.netns, o.address))
            if o.address6 is not None:
                out.append((o.peer, o.netns, o.address6))
    return out


def _check_addresses(network: Network, state: LiveState, ours_in: dict[str | None, set[str]]) -> None:
    wanted = _addr_objects(network)
    wanted_on: dict[tuple[str | None, str], set] = {}
    for dev, ns, addr in wanted:
        wanted_on.setdefault((ns, dev), set()).add(addr)
    owners: dict[tuple[str | None, bool], dict] = {}  # each namespace's address -> link map, built once
    for dev, ns, addr in wanted:
        v6 = type(addr) is IPv6Interface
        spaces = [ns] + ([None] if ns is not None else [])
        for space in spaces:
            if not _ns_ok(state, space):
                continue
            if (space, v6) not in owners:
                owners[(space, v6)] = state.ns(space).owners6() if v6 else state.ns(space).owners()
            owner = owners[(space, v6)].get(addr.ip)
            if owner is not None and not (space == ns and owner == dev):
                raise ConflictError(f"address {addr.ip}", f"{addr} on {dev} in {_where(ns)}",
                                    f"{addr.ip} already on {owner} in {_where(space)}")
        if not _ns_ok(state, ns):
            continue
        links = state.ns(ns).links
        mine = ours_in.get(ns, set())
        link = links.get(dev)
        if link is not None:
            others = [a for a in (link.addresses6 if v6 else link.addresses)
                      if a not in wanted_on.get((ns, dev), set())]
            if others:
                raise ConflictError(f"link {dev} in {_where(ns)}", f"only {addr}",
                                    f"{dev} carrying {', '.join(map(str, others))}")
        net = addr.network
        for other in links.values():
            if other.name in mine:
                continue
            for a in other.addresses6 if v6 else other.addresses:
                if a.network.overlaps(net):
                    raise ConflictError(f"subnet {net}", f"{net} on {dev} in {_where(ns)}",
                                        f"{a} on {other.name}, an overlapping subnet")
        for r in state.ns(ns).routes6 if v6 else state.ns(ns).routes:
            if r.dst in ("default", "") or r.dev in mine:
                continue
            try:
                rnet = (ip_network(r.dst, strict=False) if v6 else
                        IPv4Network(r.dst if "/" in r.dst else f"{r.dst}/32", strict=False))
            except ValueError:
                continue
            if v6 and rnet.is_link_local:
                continue  # the kernel's fe80::/64 on every link
            if rnet.overlaps(net):
                via = f" via {r.gateway}" if r.gateway else ""
                raise ConflictError(f"subnet {net}", f"{net} on {dev} in {_where(ns)}",
                                    f"a route {r.dst}{via} dev {r.dev}, which overlaps it")
