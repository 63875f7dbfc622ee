"""Faults to inject inside a sandbox, remembered so that they can be undone: :class:`Faults`.

The pytest fixture ``bridgenet_faults`` is a :class:`Faults`. What it offers:

* ``partition("n1")``: isolate one namespace: the host end of every veth pair
  into it goes down (its cable pulled out of the switch, see
  :mod:`~bridgenet.testing.faults_links`); ``heal("n1")`` plugs it back;
* ``partition(["n1", "n2"], ["n3", "n4", "n5"])``: no traffic between the
  groups, each group intact, namespaces in no group unaffected, the sandbox
  host still reaching every node; ``drop("a", "b")``: what ``a`` sends to
  ``b`` is dropped, ``b`` to ``a`` passes; ``grudge({"a": ["b"], ...})``:
  each node drops what comes from the nodes listed; ``loss("b", 30)``: 30 %
  of what ``b`` receives is dropped (from ``peers=`` only, when given).
  All are iptables rules in the receiving namespaces, tagged and counted
  (:mod:`~bridgenet.testing.faults_rules`), and work on any kernel;
* ``netem("a", delay=, jitter=, reorder=, duplicate=, corrupt=, loss=)`` and
  ``delay("a", "100ms")``: ``tc netem`` on ``a``'s links, where the kernel has
  it (:mod:`~bridgenet.testing.netem`);
* ``rate_limit(netns, rate=...)``: a tc tbf on each end of its veth pairs.

Each fault but the link-level ones (``partition(netns)``, ``link_down``,
``rate_limit``) is returned as a :class:`~bridgenet.testing.faults_rules.Fault`
value; ``f.dropped()`` reads its counters; ``heal(f)`` undoes it, in any
order; ``heal_all()`` (alias ``restore()``) undoes all. Undoing reads live
state first: a namespace or link that vanished meanwhile (its network taken
down before the fault) is skipped, not an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import CommandError, FaultError, NetemUnavailableError, ValidationError
from . import faults_rules as rules
from . import faults_shell as shell
from . import netem as nm
from .faults_apply import count_rules, heal_rules, make_rules
from .faults_links import (
    DIRECTIONS,
    VethEnds,
    add_rate_limit,
    del_rate_limit,
    link_down,
    link_state,
    link_up,
    qdisc_stats,
    tbf_args,
    veth_ends,
)
from .faults_rules import CHAIN, TAG_PREFIX, Drop, Fault
from .faults_shell import FaultCommand, loads

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

__all__ = [
    "CHAIN", "DIRECTIONS", "TAG_PREFIX", "ActiveList", "Fault", "FaultCommand", "Faults", "VethEnds",
    "add_rate_limit", "del_rate_limit", "link_down", "link_state", "link_up", "qdisc_stats", "tbf_args",
    "veth_ends",
]


class ActiveList(list):
    """What is in effect, one line each; ``faults.active`` and ``faults.active()`` both give it."""

    def __call__(self) -> list[str]:
        return list(self)


def _where(netns: str | None) -> str:
    return f" in {netns}" if netns else ""


class Faults:
    """Faults injected into one sandbox, remembered so that they can be undone.

    Links are named the way ``ip`` does: a link name plus the namespace it
    lives in (None: the sandbox host).

    Args:
        sandbox: the sandbox to act in.
        on_unavailable: called with the :class:`~bridgenet.errors.NetemUnavailableError`
            before it is raised (the fixture skips the test there unless
            ``--bridgenet-no-skip``).
    """

    def __init__(self, sandbox: Sandbox, *,
                 on_unavailable: Callable[[NetemUnavailableError], None] | None = None) -> None:
        self.sandbox = sandbox
        self._down: dict[tuple[str | None, str], int | None] = {}
        self._limited: dict[tuple[str | None, str], int | None] = {}
        self._faults: dict[str, Fault] = {}
        self._final: dict[str, int] = {}  # tag: packets its rules had dropped when they were removed
        self._seen: dict[str, int] = {}  # tag: the most its rules were read to have dropped
        self._on_unavailable = on_unavailable

    def __repr__(self) -> str:
        return f"<Faults in {self.sandbox!r}: {', '.join(self.active) or 'none active'}>"

    # --- links ---

    def link_down(self, link: str, *, netns: str | None = None) -> None:
        """Set ``link`` (in ``netns``, None: the sandbox host) administratively down."""
        index = link_state(self.sandbox, link, netns=netns).get("ifindex")
        link_down(self.sandbox, link, netns=netns)
        self._down[(netns, link)] = index

    def link_up(self, link: str, *, netns: str | None = None) -> None:
        """Set ``link`` up again (whether or not this object set it down)."""
        link_up(self.sandbox, link, netns=netns)
        self._down.pop((netns, link), None)

    # --- partitions ---

    def partition(self, *groups: str | Iterable[str]) -> list[str] | Fault:
        """Isolate one namespace, or cut groups of namespaces off from each other.

        ``partition("n1")``: set down the host end of every veth pair into
        ``n1`` (its bridge port, e.g. ``brid5`` for ``container5``); returns
        those host ends, e.g. ``["brid5"]``; undone by ``heal("n1")``.

        ``partition(["n1", "n2"], ["n3", "n4", "n5"])``: every node drops
        what comes from the nodes of the other groups (iptables, see
        :mod:`~bridgenet.testing.faults_rules`): no traffic between groups,
        each group intact, a namespace named in no group unaffected, the
        sandbox host still reaching every node. Returns the :class:`Fault`.

        Raises:
            ValidationError: fewer than two groups, an empty or overlapping
                group, or a namespace the sandbox does not have (before any change).
            ValidationError: ``partition(netns)`` of a namespace without a veth pair into it.
        """
        if len(groups) == 1 and isinstance(groups[0], str):
            return self._isolate(groups[0])
        grudge = rules.partition_grudge(groups)
        text = " | ".join("[" + " ".join(g) + "]" for g in groups)  # type: ignore[arg-type]
        return self._rules("partition", {n: Drop(p) for n, p in grudge.items()}, f"partition {text}")

    def _isolate(self, netns: str) -> list[str]:
        ends = veth_ends(self.sandbox, netns)
        if not ends:
            raise ValidationError("faults.partition", "netns", "a namespace joined to the sandbox host by a veth pair "
                                  "(nothing to cut; the group form partition([a], [b]) works on any namespace)", netns)
        for e in ends:
            self.link_down(e.host)
        return [e.host for e in ends]

    def heal(self, what: str | Fault) -> list[str] | None:
        """Undo one fault.

        ``heal(fault)``: remove its rules (or qdiscs) that are still there;
        the chain goes with its last rule. ``heal("n1")``: undo
        ``partition("n1")``: set the host end of every veth pair into ``n1``
        up; returns those host ends.

        Raises:
            FaultError: a command that should undo it failed (not: its namespace is gone).
        """
        if isinstance(what, str):
            ends = veth_ends(self.sandbox, what)
            for e in ends:
                self.link_up(e.host)
            return [e.host for e in ends]
        if not isinstance(what, Fault):
            raise TypeError(f"heal() takes a Fault or a namespace name (got {what!r})")
        failed = (nm.heal_netem(self.sandbox, [what]) if what.kind == "netem"
                  else heal_rules(self.sandbox, [what], self._final))
        self._faults.pop(what.id, None)
        if failed:
            raise FaultError(f"could not undo {what}: " + "; ".join(failed))
        return None

    @contextmanager
    def partitioned(self, netns: str) -> Iterator[list[str]]:
        """``with faults.partitioned("container5"): ...``: cut off for the block, healed after."""
        cut = self._isolate(netns)
        try:
            yield cut
        finally:
            self.heal(netns)

    # --- drops and loss (iptables) ---

    def drop(self, src: str, dst: str) -> Fault:
        """One way: packets from ``src`` to ``dst`` are dropped (in ``dst``'s INPUT); ``dst`` to ``src`` pass.

        Raises:
            ValidationError: ``src`` is ``dst``, or a namespace the sandbox does not have.
        """
        rules.check_name("faults.drop", "src", src)
        rules.check_name("faults.drop", "dst", dst)
        if src == dst:
            raise ValidationError("faults.drop", "dst", "a namespace cannot drop packets from itself", dst)
        return self._rules("drop", {dst: Drop((src,))}, f"drop {src} -> {dst}")

    def grudge(self, grudge: Mapping[str, Iterable[str]]) -> Fault:
        """Jepsen's grudge: ``{"a": ["b", "c"], "b": ["a"]}``: each node drops what comes from the nodes listed.

        Raises:
            ValidationError: not such a mapping, a node listing itself, or an unknown namespace.
        """
        checked = rules.check_grudge(grudge)
        text = ", ".join(f"{n} drops from {' '.join(p)}" for n, p in checked.items())
        return self._rules("grudge", {n: Drop(p) for n, p in checked.items()}, f"grudge: {text}")

    def loss(self, netns: str, percent: float, peers: Iterable[str] | None = None) -> Fault:
        """Drop ``percent`` % (0..100) of the packets ``netns`` receives, at random, each on its own
        (``-m statistic --mode random --probability P``, iptables-extensions(8)); with ``peers``, only
        of those from these namespaces; without, of all but those on ``lo``.

        Raises:
            ValidationError: ``percent`` not a number from 0 to 100, bad ``peers``, an unknown namespace.
        """
        rules.check_name("faults.loss", "netns", netns)
        p = rules.probability(percent)
        chosen = None if peers is None else rules._names("faults.loss", "peers", peers)
        if chosen and netns in chosen:
            raise ValidationError("faults.loss", "peers", "a namespace cannot lose packets from itself", list(chosen))
        text = f"loss {float(p) * 100:g}% into {netns}" + (f" from {' '.join(chosen)}" if chosen else "")
        return self._rules("loss", {netns: Drop(chosen, p)}, text)

    def _count(self, fault: Fault) -> int:
        # counters only grow while the rules live: the most ever read survives a heal or a namespace gone
        seen = self._seen.get(fault.tag, 0)
        now = self._final[fault.tag] if fault.tag in self._final else count_rules(self.sandbox, fault)
        self._seen[fault.tag] = max(seen, now)
        return self._seen[fault.tag]

    def _rules(self, kind: str, drops: dict[str, Drop], description: str) -> Fault:
        fault = make_rules(self.sandbox, kind, drops, description, self._count)
        self._faults[fault.id] = fault
        return fault

    # --- netem ---

    def netem(self, netns: str, *, delay: str | float | None = None, jitter: str | float | None = None,
              reorder: object = None, duplicate: object = None, corrupt: object = None,
              loss: object = None) -> Fault:
        """``tc qdisc add dev LINK root netem ...`` on every link of ``netns`` but ``lo`` (tc-netem(8)).

        Args:
            delay, jitter: tc times (``"100ms"``) or numbers of seconds.
            reorder, duplicate, corrupt, loss: percentages 0..100 (numbers, or strings like ``"25%"``).

        Raises:
            ValidationError: a bad value (naming its field) or an unknown namespace, before any change.
            NetemUnavailableError: the kernel has no netem (``sch_netem``); nothing is left changed.
            FaultError: a link already has a root qdisc of its own (a rate limit), or tc failed otherwise.
        """
        args = nm.netem_args(delay=delay, jitter=jitter, reorder=reorder, duplicate=duplicate,
                             corrupt=corrupt, loss=loss)
        fault = nm.make_netem(self.sandbox, netns, args, self._on_unavailable)
        self._faults[fault.id] = fault
        return fault

    def delay(self, netns: str, delay: str | float, jitter: str | float | None = None) -> Fault:
        """``netem(netns, delay=delay, jitter=jitter)``: every packet ``netns`` sends waits ``delay``."""
        return self.netem(netns, delay=delay, jitter=jitter)

    # --- rate limits ---

    def rate_limit_link(self, link: str, *, rate: str | int, burst: str | int = "32kb",
                        latency: str | float = "100ms", netns: str | None = None) -> None:
        """Shape what ``link`` sends with a tbf root qdisc (see :func:`add_rate_limit`).

        A link already limited through this object gets its old limit removed first.
        """
        tbf_args(rate, burst, latency)  # check before changing anything
        if (netns, link) in self._limited:
            self.clear_rate_limit_link(link, netns=netns)
        index = link_state(self.sandbox, link, netns=netns).get("ifindex")
        add_rate_limit(self.sandbox, link, rate=rate, burst=burst, latency=latency, netns=netns)
        self._limited[(netns, link)] = index

    def clear_rate_limit_link(self, link: str, *, netns: str | None = None) -> None:
        """Remove the root qdisc of ``link`` (back to the default)."""
        del_rate_limit(self.sandbox, link, netns=netns)
        self._limited.pop((netns, link), None)

    def rate_limit(self, netns: str, *, rate: str | int, burst: str | int = "32kb",
                   latency: str | float = "100ms", direction: str = "both") -> list[tuple[str, str | None]]:
        """Limit the traffic of ``netns`` on every veth pair into it.

        Args:
            rate, burst, latency: see :func:`tbf_args` (units of tc(8)).
            direction: ``"in"`` shapes what enters ``netns`` (a tbf on the
                host end), ``"out"`` what leaves it (a tbf on the end inside),
                ``"both"`` both.

        Returns:
            the shaped links as ``(link, netns)`` pairs, netns None for the host.

        Raises:
            ValidationError: bad direction or tc value, unknown ``netns``, or no veth into it.
        """
        if direction not in DIRECTIONS:
            raise ValidationError("faults.rate_limit", "direction", f"one of {', '.join(DIRECTIONS)}", direction)
        tbf_args(rate, burst, latency)
        ends = veth_ends(self.sandbox, netns)
        if not ends:
            raise ValidationError("faults.rate_limit", "netns", "a namespace joined to the sandbox host by a veth pair "
                                  "(nothing to limit)", netns)
        shaped: list[tuple[str, str | None]] = []
        for e in ends:
            if direction in ("both", "in"):
                shaped.append((e.host, None))
            if direction in ("both", "out"):
                shaped.append((e.peer, e.netns))
        for link, where in shaped:
            self.rate_limit_link(link, rate=rate, burst=burst, latency=latency, netns=where)
        return shaped

    def clear_rate_limit(self, netns: str) -> None:
        """Remove the rate limits this object put on the veth pairs into ``netns``."""
        for e in veth_ends(self.sandbox, netns):
            for link, where in ((e.host, None), (e.peer, e.netns)):
                if (where, link) in self._limited:
                    self.clear_rate_limit_link(link, netns=where)

    @contextmanager
    def rate_limited(self, netns: str, **kwargs: object) -> Iterator[list[tuple[str, str | None]]]:
        """``with faults.rate_limited("container5", rate="1mbit"): ...``: limited for the block."""
        shaped = self.rate_limit(netns, **kwargs)  # type: ignore[arg-type]
        try:
            yield shaped
        finally:
            self.clear_rate_limit(netns)

    # --- all of it ---

    @property
    def active(self) -> ActiveList:
        """What is in place now, one line each, e.g. ``"link brid5 down"``,
        ``"partition [n1 n2] | [n3] (bridgenet-fault:4711-1)"``; also callable: ``faults.active()``."""
        out = [f"link {link}{_where(ns)} down" for ns, link in self._down]
        out += [f"tbf on {link}{_where(ns)}" for ns, link in self._limited]
        out += [str(f) for f in self._faults.values()]
        return ActiveList(out)

    @property
    def in_effect(self) -> tuple[Fault, ...]:
        """The :class:`Fault` values in effect (not healed yet), oldest first."""
        return tuple(self._faults.values())

    def heal_all(self) -> list[str]:
        """Undo every fault still in place: rules and netem, rate limits, then links, most recent first.

        Reads live state first: what vanished meanwhile (a namespace deleted,
        a link gone or replaced by another of the same name) is skipped, not
        reported.

        Returns:
            what could not be undone, one line each (empty when all is back).
        """
        faults = list(reversed(self._faults.values()))
        failed = heal_rules(self.sandbox, [f for f in faults if f.kind != "netem"], self._final)
        failed += nm.heal_netem(self.sandbox, [f for f in faults if f.kind == "netem"])
        self._faults.clear()
        failed += self._restore_links()
        return failed

    restore = heal_all

    def _restore_links(self) -> list[str]:
        spaces = list(dict.fromkeys(ns for ns, _ in [*self._limited, *self._down]))
        outs = shell.read(self.sandbox, [c for ns in spaces for c in (
            FaultCommand(ns, ("ip", "-json", "link", "show")), FaultCommand(ns, ("tc", "-json", "qdisc", "show")))])
        links = {ns: {x["ifname"]: x["ifindex"] for x in loads(outs[2 * i].out)}
                 for i, ns in enumerate(spaces) if outs[2 * i].ok}
        roots = {ns: nm.root_qdiscs(loads(outs[2 * i + 1].out)) for i, ns in enumerate(spaces)
                 if outs[2 * i + 1].ok}
        failed: list[str] = []

        def there(ns: str | None, link: str, index: int | None) -> bool:
            return link in links.get(ns, {}) and index in (None, links[ns][link])

        for (ns, link), index in reversed(list(self._limited.items())):
            self._limited.pop((ns, link), None)
            if there(ns, link, index) and roots.get(ns, {}).get(link, {}).get("kind") == "tbf":
                try:
                    del_rate_limit(self.sandbox, link, netns=ns)
                except CommandError as e:
                    failed.append(f"tbf on {link}{_where(ns)}: {e.stderr.strip()}")
        for (ns, link), index in reversed(list(self._down.items())):
            self._down.pop((ns, link), None)
            if there(ns, link, index):
                try:
                    link_up(self.sandbox, link, netns=ns)
                except CommandError as e:
                    failed.append(f"link {link}{_where(ns)} down: {e.stderr.strip()}")
        return failed
