"""Which commands of a network may run at the same time: namespaces split into parallel jobs.

Configuring a namespace takes one process of its own (``ip -n NS -batch -``,
ip(8): a batch file has no per-line ``-n``), and a network of N containers
takes N of them: at 100 containers that is most of the time ``up`` takes.
Those processes are independent of each other, so :func:`partition` splits
the namespaces into ``jobs`` groups that two shells (or more) run at once;
with the host-side commands that belong to a group's namespaces (creating
them, their veths' host ends, plugging those into their bridge) in the
group's job too. What belongs to no namespace (the bridges, their addresses)
runs before the jobs; sysctls and iptables after them.

A namespace belongs with another when one host command touches both (a
veth whose two ends are in two namespaces): they go to the same job, so
that a job never needs what another job makes. Jobs are filled greedily by
command count, largest group first, ties in order of first appearance: the
same commands always give the same jobs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .commands import (
    AddrPresent,
    Command,
    LinkAlias,
    LinkInNetns,
    LinkMaster,
    LinkPresent,
    LinkUp,
    NetnsAbsent,
    NetnsPresent,
)

JOBS = 2
"""Parallel jobs ``up --batch`` uses by default. Measured on a 2-core machine at 100 containers: two jobs
take ≈0.65 of one job's time, a third gains nothing more; more cores may use more (``--jobs``)."""

PARALLEL_MIN = 8
"""Fewest namespaces worth splitting: each job costs a subshell (≈1 ms); the lesson's two stay in one."""


def _links_and_spaces(c: Command) -> tuple[set[str], set[str]]:
    """(host links a host command names, namespaces it names)."""
    e = c.effect
    links: set[str] = set()
    spaces: set[str] = set()
    if isinstance(e, (NetnsPresent, NetnsAbsent)):
        spaces.add(e.name)
        return links, spaces
    if isinstance(e, LinkInNetns):
        links.add(e.name)
        spaces.add(e.netns)
        return links, spaces
    netns = getattr(e, "netns", None)
    if netns is not None:
        spaces.add(netns)
    else:
        for field in ("name", "dev"):
            v = getattr(e, field, None)
            if v is not None:
                links.add(v)
    if isinstance(e, LinkPresent):
        if e.peer_netns is not None:
            spaces.add(e.peer_netns)
        elif e.peer is not None:
            links.add(e.peer)
    return links, spaces


class _Groups:
    """Union-find over namespace names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, names: Sequence[str]) -> None:
        roots = [self.find(n) for n in names]
        for r in roots[1:]:
            if r != roots[0]:
                self.parent[r] = roots[0]


def partition(commands: Sequence[Command], jobs: int) -> tuple[dict[str, int], dict[int, int]] | None:
    """Split ``commands`` (going up) into at most ``jobs`` parallel jobs, or None when not worth it.

    Args:
        commands: a network's commands in order (``Network.up_commands(fast=True)``).
        jobs: the most jobs wanted (1: none).

    Returns:
        ``(job of each namespace, job of each host command)``: the latter keyed
        by the command's position in ``commands``, for host ``ip`` commands
        that belong to a namespace's job; every other host command belongs to
        none (it runs before the jobs). None when there are fewer than
        :data:`PARALLEL_MIN` namespaces, or ``jobs`` < 2.
    """
    if jobs < 2:
        return None
    split = _partition_apart(commands, jobs)
    return _partition(commands, jobs) if split is _TIED else split


_TIED = object()

_ONE_LINK = (LinkUp, LinkMaster, LinkAlias, AddrPresent)
"""Effects (of exactly these classes) that, in the host, name one link (``name``; an address's ``dev``)."""
"""What :func:`_partition_apart` says when a host command ties two namespaces together."""


def _partition_apart(commands: Sequence[Command], jobs: int) -> tuple[dict[str, int], dict[int, int]] | None | object:
    """:func:`partition` when no host command ties two namespaces together (the usual case), else ``_TIED``.

    Then every namespace is a group of its own and each host link belongs to
    at most one namespace, so the union-find and its sets are not needed:
    the same answer as :func:`_partition`, in a fraction of the time.
    """
    weight: dict[str, int] = {}  # its keys in first appearance, as _partition's groups
    named: list[tuple[int, Collection[str], str | None]] = []
    for i, c in enumerate(commands):
        ns = c.netns
        if ns is not None:
            weight[ns] = weight.get(ns, 0) + 1
            continue
        if c.tool != "ip":
            continue
        e = c.effect
        t = type(e)
        if t in _ONE_LINK and e.netns is None:  # what _links_and_spaces gives them, without its sets
            name = e.dev if t is AddrPresent else e.name
            named.append((i, (name,) if name is not None else (), None))
            continue
        if t is LinkPresent and e.netns is None and e.peer_netns is not None:
            weight[e.peer_netns] = weight.get(e.peer_netns, 0) + 1
            named.append((i, (e.name,) if e.name is not None else (), e.peer_netns))
            continue
        links, spaces = _links_and_spaces(c)
        if len(spaces) > 1:
            return _TIED
        space = None
        for space in spaces:
            weight[space] = weight.get(space, 0) + 1
        named.append((i, links, space))
    if len(weight) < PARALLEL_MIN:
        return None
    link_netns: dict[str, str] = {}
    owner = link_netns.get

    def namespace_of(links: Collection[str], space: str | None) -> str | None | object:
        """A command's namespace: its own, or that of a link it names (None: none); two of them: _TIED."""
        for n in links:
            other = owner(n)
            if other is not None and other != space:
                if space is not None:
                    return _TIED
                space = other
        return space

    # _partition's two passes. A command that found its namespace in the first pass left every link
    # it names belonging to it, and a link never changes hands: the second pass and the jobs below
    # find the same again. So only those that found none look again, and the others keep theirs.
    found: list[str | None] = []
    again: list[int] = []
    for k, (_i, links, space) in enumerate(named):
        t = namespace_of(links, space) if links else space
        if t is _TIED:
            return _TIED
        if t is None and links:
            again.append(k)
        elif links:
            for n in links:
                link_netns.setdefault(n, t)  # type: ignore[arg-type]
        found.append(t)  # type: ignore[arg-type]
    for k in again:
        _i, links, space = named[k]
        t = namespace_of(links, space)
        if t is _TIED:
            return _TIED
        if t is not None:
            for n in links:
                link_netns.setdefault(n, t)  # type: ignore[arg-type]
    load = [0] * jobs
    job_of: dict[str, int] = {}
    for ns in sorted(weight, key=lambda n: -weight[n]):
        j = load.index(min(load))
        load[j] += weight[ns]
        job_of[ns] = j
    for k in again:
        _i, links, space = named[k]
        t = namespace_of(links, space)
        if t is _TIED:
            return _TIED
        found[k] = t  # type: ignore[call-overload]
    host_job: dict[int, int] = {}
    for (i, _links, _space), t in zip(named, found):
        if t is not None:
            host_job[i] = job_of[t]
    return job_of, host_job


def _partition(commands: Sequence[Command], jobs: int) -> tuple[dict[str, int], dict[int, int]] | None:
    """:func:`partition`, for any commands (union-find over the namespaces that host commands tie)."""
    groups = _Groups()
    link_netns: dict[str, str] = {}
    named: list[tuple[int, set[str], set[str]]] = []
    weight: dict[str, int] = {}
    for i, c in enumerate(commands):
        if c.netns is not None:
            groups.find(c.netns)
            weight[c.netns] = weight.get(c.netns, 0) + 1
            continue
        if c.tool != "ip":
            continue
        links, spaces = _links_and_spaces(c)
        named.append((i, links, spaces))
        for s in spaces:
            groups.find(s)
            weight[s] = weight.get(s, 0) + 1
    if len(groups.parent) < PARALLEL_MIN:
        return None
    # A host link belongs to the namespace its peer (or itself) is placed in; a command naming
    # links of two namespaces joins them. Two passes: a veth's peer may be moved after it is made.
    for _ in range(2):
        for _i, links, spaces in named:
            tied = set(spaces) | {link_netns[n] for n in links if n in link_netns}
            if not tied:
                continue
            groups.union(sorted(tied))
            root = next(iter(tied))
            for n in links:
                link_netns.setdefault(n, root)
    members: dict[str, list[str]] = {}
    for ns in groups.parent:  # insertion order: first appearance
        members.setdefault(groups.find(ns), []).append(ns)
    ordered = sorted(members.values(), key=lambda m: -sum(weight.get(n, 0) for n in m))
    load = [0] * jobs
    job_of: dict[str, int] = {}
    for m in ordered:
        j = min(range(jobs), key=lambda k: (load[k], k))
        load[j] += sum(weight.get(n, 0) for n in m) or 1
        for n in m:
            job_of[n] = j
    host_job: dict[int, int] = {}
    for i, links, spaces in named:
        tied = set(spaces) | {link_netns[n] for n in links if n in link_netns}
        if tied:
            host_job[i] = job_of[next(iter(tied))]
    return job_of, host_job
