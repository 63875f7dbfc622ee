"""Plan: compare a network with live state and decide what to run, and how to undo it.

For every command of every step, its effect (``commands.py``) is checked
against :class:`bridgenet.state.LiveState`: already true (in place), to run,
or a conflict (something exists but differs), which raises
:class:`bridgenet.errors.ConflictError` before any change. For what will
run, the plan also works out the undo: deleting the object when the step
creates it, else the inverse of each command (``set down`` for ``set up``,
``addr del`` for ``addr add``, the previous value for a sysctl, ``-D`` for
``-A``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs

from .commands import (
    Command,
    DirPresent,
    Effect,
    FilePresent,
    LinkAlias,
    LinkInNetns,
    LinkPresent,
    LinkUp,
    NetnsPresent,
    Step,
    ip,
)
from .conflicts import check_conflicts, check_identity, check_not_owned_by_others
from .effects import inverse, satisfied
from .errors import VethFreeingConflict
from .ledger import Entry, Ledger
from .state_store import store_for
from .firewall import FORWARD_CHAIN, ISOLATION_CHAIN, FilterChain, Isolation
from .model import EtcNetns, ForwardRule, NatRule
from .network import Network
from .runners import Runner
from .state import LiveState, read


@attrs.frozen
class PlannedStep:
    """One step of a plan.

    Attributes:
        step: the network's step.
        run: the commands of the step that are not in place yet, in order.
        owns: True when the step creates its object (so undoing it deletes
            the object, and with it whatever it covers).
        undo: the commands that undo ``run``, in the order to run them.
    """

    step: Step
    run: tuple[Command, ...]
    owns: bool
    undo: tuple[Command, ...]

    @property
    def in_place(self) -> int:
        return len(self.step.up) - len(self.run)


@attrs.frozen
class Plan:
    """What ``up`` would run against the state it was made from.

    Attributes:
        network: the network planned.
        steps: every step of the network, with what of it is to run.
        state: the live state the plan was made from.
        warnings: things that are no conflict but will keep the network
            from working (e.g. a FORWARD policy of DROP).
        orphans: state-file entries of this network that the network no
            longer has (a container removed from the file): ``up`` removes
            them first, as their ``undo`` says.
        removals: the commands that remove the orphans, in order.
    """

    network: Network
    steps: tuple[PlannedStep, ...]
    state: LiveState
    warnings: tuple[str, ...] = ()
    orphans: tuple[Entry, ...] = ()
    removals: tuple[Command, ...] = ()

    @property
    def commands(self) -> list[Command]:
        """Commands to run, in order: the removals, then what is missing."""
        return [*self.removals, *(c for s in self.steps for c in s.run)]

    @property
    def in_place(self) -> int:
        """How many of the network's commands are already in effect."""
        return sum(s.in_place for s in self.steps)

    @property
    def empty(self) -> bool:
        return not self.removals and not self.orphans and not any(s.run for s in self.steps)

    def to_dict(self) -> dict:
        """One JSON-ready object: what ``bridgenet plan --json`` prints (README, "bridgenet plan --json").

        Shape: ``{"network": NAME, "empty": bool, "summary": {"to_remove": int,
        "to_run": int, "in_place": int}, "warnings": [str], "commands": [{"argv":
        [str], "step": str, "netns": str | null, "input": str | null, "shell":
        str, "removal": bool}]}``. ``commands`` are in the order ``up`` runs
        them: the removals of what the network no longer has (``removal``:
        true), then what is missing; ``argv`` is the full argv (``ip netns exec
        NS ...`` inside a namespace), ``shell`` the line a dry-run prints.
        """
        def entry(c: Command, removal: bool) -> dict:
            return {"argv": list(c.argv), "step": c.step, "netns": c.netns, "input": c.input,
                    "shell": c.shell(), "removal": removal}

        return {
            "network": self.network.name,
            "empty": self.empty,
            "summary": {"to_remove": len(self.removals), "to_run": sum(len(s.run) for s in self.steps),
                        "in_place": self.in_place},
            "warnings": list(self.warnings),
            "commands": [*(entry(c, True) for c in self.removals),
                         *(entry(c, False) for s in self.steps for c in s.run)],
        }

    def summary(self) -> str:
        """E.g. ``"3 to run, 20 already in place"`` (``"2 to remove, "`` first when there are orphans)."""
        runs = sum(len(s.run) for s in self.steps)
        head = f"{len(self.removals)} to remove, " if self.removals else ""
        return f"{head}{runs} to run, {self.in_place} already in place"


def wanted_reads(network: Network) -> dict:
    """What :func:`bridgenet.state.read` must read to plan ``network``."""
    netns = [n.name for n in network.namespaces]
    sysctls = [(s.key, s.netns) for s in network.sysctls()]
    by_family: dict[int, list] = {4: [], 6: []}
    for r in network.of_type(NatRule):
        by_family[r.family].append(("nat", "POSTROUTING", r.netns))
    for r in network.of_type(ForwardRule):
        by_family[r.family].append(("filter", FORWARD_CHAIN, r.netns))
    for r in network.of_type(Isolation):
        by_family[r.family] += [("filter", chain, r.netns) for chain in (FORWARD_CHAIN, ISOLATION_CHAIN)]
    for c in network.of_type(FilterChain):
        by_family[c.family].append(("filter", c.chain, c.netns))  # the table is read whole: chain existence too
        if c.jump_from:
            by_family[c.family].append(("filter", c.jump_from, c.netns))
    for o in network.ordered:  # published ports (ports.py): the family's own tables
        if hasattr(o, "reads"):
            by_family[getattr(o, "family", 4)] += o.reads()
    rules = by_family[4]
    etc = bool(network.of_type(EtcNetns))
    from .vxlan import Vxlan

    fdb = [(v.name, v.netns) for v in network.of_type(Vxlan)]
    out = {"netns": netns, "sysctls": sysctls, "rules": rules, "etc": etc, **({"fdb": fdb} if fdb else {})}
    if network.has_ipv6:  # an IPv4-only network reads nothing more
        out.update(rules6=by_family[6], v6=True)
    return out


def read_for(network: Network, runner: Runner) -> LiveState:
    """Read the live state ``network`` needs for planning, and what its warnings need (one shell)."""
    from .hostcheck import reads_for

    return read(runner, **wanted_reads(network), extra=reads_for(network))


SETTLE_SECONDS = 3.0
"""How long planning waits for the host end of a deleted namespace's veth to go (see settled_state)."""


def settled_state(network: Network, runner: Runner, *, moves_peers: bool | None = None,
                  deadline: float | None = None, interval: float = 0.005) -> LiveState:
    """Read the live state ``network`` needs, once the veths being freed are gone.

    Deleting a namespace destroys the veth end inside it and then,
    asynchronously, its peer in the host (KERNEL-NOTES; measured here: up to
    ≈0.4 s after ``ip netns del``), so right after a teardown by hand a host
    end such as ``brid4`` can still be there with its peer nowhere. While the
    only conflict :func:`check_conflicts` finds is such a veth, the state is
    read again every ``interval`` seconds, for at most ``deadline`` seconds.
    Any other conflict is raised at once.

    Returns:
        the last state read (conflict-free, or with conflicts of other kinds
        left for the caller's check).

    Raises:
        VethFreeingConflict: the veth is still there at the deadline (a
            process holding the deleted namespace keeps it alive; the message
            says to ``ip link del`` it).
        ConflictError: any other conflict.
    """
    deadline = SETTLE_SECONDS if deadline is None else deadline
    end = time.monotonic() + deadline
    while True:
        state = read_for(network, runner)
        try:
            check_conflicts(network, state, moves_peers=moves_peers)
            return state
        except VethFreeingConflict as e:
            if time.monotonic() >= end:
                raise VethFreeingConflict(e.what, e.wanted, f"{e.found}, still there after {deadline:g} s",
                                          e.hint, e.link) from None
        time.sleep(interval)


def make_plan(network: Network, runner: Runner, *, fast: bool = False, state: LiveState | None = None,
              ledger: Ledger | None = None) -> Plan:
    """Plan bringing ``network`` up on the host ``runner`` acts on.

    Args:
        fast: plan the batch form (veth peers created in their namespace).
        state: live state already read (default: read it now).
        ledger: the network's state file (default: read it from the host).

    Only what the plan creates (or what this network created before, per
    its state file) is tagged: an object that existed already keeps its
    alias, so ``clean`` can never take it for ours.

    Raises:
        ConflictError: something exists but differs from what the network
            asks for, another network of that name is up, or an object this
            network would reuse was made by another bridgenet network;
            nothing has been changed.
    """
    if ledger is None:
        ledger = Ledger.open(store_for(runner), network.name)
    check_identity(network, ledger)
    store = store_for(runner)
    others = {n: Ledger.open(store, n) for n in Ledger.names(store) if n != network.name}
    state = state if state is not None else settled_state(network, runner,
                                                          moves_peers=network.move_peers and not fast)
    check_conflicts(network, state, moves_peers=network.move_peers and not fast)
    steps = network.steps(fast=fast)
    check_not_owned_by_others(steps, state, others)
    ours = {e.key for e in ledger.entries if e.owns}
    planned = []
    for step in steps:
        run = tuple(c for c in step.up if not satisfied(c.effect, state))
        run = _move_stranded_peer(step, run, state)
        owns = bool(run) and run[0] is step.up[0] and isinstance(step.up[0].effect, (LinkPresent, NetnsPresent))
        planned.append((step, run, owns))
    created = _created_links((step for step, _, owns in planned if owns or step.key in ours))
    out = []
    for step, run, owns in planned:
        run = tuple(c for c in run if not _leave_alone(c.effect, created))
        undo = step.down if owns else tuple(u for c in reversed(run) for u in inverse(c, state))
        out.append(PlannedStep(step, run, owns, undo))
    keys = {s.key for s in steps}
    orphans = tuple(e for e in ledger.entries if e.key not in keys)
    return Plan(network, tuple(out), state, tuple(_warnings(network, runner, state)), orphans,
                tuple(removals(orphans)))


def _created_links(steps) -> set[tuple[str | None, str]]:  # noqa: ANN001
    """``(netns, link)`` of every link the given (owned) steps create: both ends of a veth, a namespace's lo."""
    out: set[tuple[str | None, str]] = set()
    for step in steps:
        e = step.up[0].effect if step.up else None
        if isinstance(e, LinkPresent):
            out.add((e.netns, e.name))
            if e.peer:
                out.add((e.peer_netns, e.peer))
            out.update((c.effect.netns, c.effect.name) for c in step.up if isinstance(c.effect, LinkInNetns))
        elif isinstance(e, NetnsPresent):
            out.add((e.name, "lo"))
    return out


def _leave_alone(effect: Effect | None, created: set[tuple[str | None, str]]) -> bool:
    """A change bridgenet makes only to what it created: a tag (alias), and ``lo`` up in a namespace.

    A reused bridge keeps its alias; a user's namespace keeps its ``lo`` as it
    was (containers reach each other without it), so nothing of a reused
    object changes that ``down`` would have to put back. Likewise the
    ``/etc/netns/NETNS`` files (``names.py``) are written only for a namespace
    bridgenet created: a reused namespace keeps its ``/etc`` as it was.
    """
    if isinstance(effect, (FilePresent, DirPresent)) and effect.owner is not None:
        return (effect.owner, "lo") not in created
    if isinstance(effect, LinkAlias):
        return (effect.netns, effect.name) not in created
    if isinstance(effect, LinkUp) and effect.name == "lo" and effect.netns is not None:
        return (effect.netns, "lo") not in created
    return False


def removals(entries: Sequence[Entry]) -> list[Command]:
    """The undo commands of state-file ``entries``, in reverse, skipping what a covering entry removes."""
    owned = {e.key for e in entries if e.owns}
    return [c for e in reversed(entries) if not (e.covered_by is not None and e.covered_by in owned)
            for c in e.undo]


def _warnings(network: Network, runner: Runner, state: LiveState | None = None) -> list[str]:
    """Things that are not conflicts but will keep the network from working (see ``hostcheck.py``).

    FORWARD policy DROP or a DROP/REJECT rule in FORWARD that comes before
    the network's rules, STP on a bridge it reuses, iptables-legacy and
    iptables-nft tables both in use. One process through ``runner``;
    ``state`` is not needed (the checks read what they need themselves).
    """
    from .hostcheck import warnings

    return [*network.advice, *warnings(network, runner, state.extra if state is not None else None)]


def _move_stranded_peer(step: Step, run: tuple[Command, ...], state: LiveState) -> tuple[Command, ...]:
    """A veth made the lesson's way and not moved yet, planned in the form that creates peers in place:
    the veth is in place, but its peer still sits in the host; move it."""
    first = step.up[0].effect if step.up else None
    if not (isinstance(first, LinkPresent) and first.kind == "veth" and first.peer_netns and first.peer):
        return run
    if step.up[0] in run or any(isinstance(c.effect, LinkInNetns) for c in step.up):
        return run
    if first.peer in state.host.links and not (
        state.netns_exists(first.peer_netns) and first.peer in state.ns(first.peer_netns).links
    ):
        move = ip("link", "set", first.peer, "netns", first.peer_netns, step=step.key,
                  effect=LinkInNetns(first.peer, first.peer_netns))
        return (move, *run)
    return run
