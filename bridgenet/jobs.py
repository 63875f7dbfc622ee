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

from collections.abc import Sequence

from .commands import Command, LinkInNetns, LinkPresent, NetnsAbsent, NetnsPresent

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
