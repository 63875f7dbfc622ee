"""Bring networks up and down safely: converge, record, roll back, clean up.

* :func:`plan` compares a network with live state (``plan.py``).
* :func:`up` runs only what is missing; it records every step in the state
  file *before* running it (``ledger.py``); when a command fails, or SIGINT
  or SIGTERM arrives, it undoes what it did, in reverse, and raises
  :class:`bridgenet.errors.RolledBackError`.
* :func:`down` undoes exactly what the state file says this network
  created: an object that existed before ``up`` stays, a sysctl goes back to
  the value it had, an iptables rule is removed once per rule added.
* :func:`clean` does that for every network with a state file on the host,
  and removes leftovers tagged ``bridgenet:`` (link alias, iptables comment).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence

import attrs

from .commands import (
    ChainAbsent,
    Command,
    DirAbsent,
    DirPresent,
    FileAbsent,
    FilePresent,
    NetnsAbsent,
    RouteAbsent,
    RuleAbsent,
    SysctlValue,
)
from . import interrupts
from .errors import BridgenetError, CommandError, NamespaceBusyError, RolledBackError
from .leftovers import clean_tagged
from .jobs import JOBS
from .ledger import Entry, Ledger, locked
from .netns_busy import busy_netns
from .state_store import store_for
from .network import Network
from .conflicts import check_identity
from .effects import gone, inverse, satisfied
from .plan import Plan, make_plan, removals
from .runners import Runner
from .teardown import grouped, pick_group
from .state import LiveState, read
from .testhooks import KILL_AFTER_ENV, PAUSE_AFTER_ENV, _die, _kill_after, _maybe_pause  # noqa: F401

log = logging.getLogger("bridgenet")


def _short(cause: BaseException) -> str:
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


Progress = Callable[[int, int], None]


@attrs.frozen
class Report:
    """What ``up``/``down``/``clean`` did.

    Attributes:
        ran: the commands run, in order.
        in_place: how many of the network's commands were already in effect.
        networks: for ``down``/``clean``, the networks taken down.
        note: for a person, when there is something to say (e.g. why
            nothing was removed).
        gone: undo commands not run because what they act on was already
            gone (a reused bridge someone deleted), one line each; those
            steps count as done.
        removed: for ``up``, how many of ``ran`` removed what the network no
            longer has (they come first).
        added: for ``up``, the state file keys this run added (what
            :func:`undo_added` undoes to take back exactly this run).
    """

    ran: tuple[Command, ...] = ()
    in_place: int = 0
    networks: tuple[str, ...] = ()
    note: str = ""
    gone: tuple[str, ...] = ()
    removed: int = 0
    added: tuple[str, ...] = ()


def plan(network: Network, runner: Runner, *, batch: bool = False) -> Plan:
    """What ``up`` would run now (see :func:`bridgenet.plan.make_plan`)."""
    return make_plan(network, runner, fast=batch)


def _entry(ps) -> Entry:  # noqa: ANN001
    return Entry(ps.step.key, ps.step.covered_by, ps.owns, "intent", list(ps.undo))


def up(network: Network, runner: Runner, *, batch: bool = False, progress: Progress | None = None,
       plan: Plan | None = None, force: bool = False, jobs: int = JOBS) -> Report:
    """Bring ``network`` up: run what is missing, record it, roll back on failure.

    Args:
        network: the network.
        runner: where to run (a sandbox's runner, ``ShRunner()`` for this host,
            a dry-run runner to print).
        batch: use the batch runner (few processes; see ``batch.py``).
        progress: called with (done, total) as commands (or batches) finish.
        plan: a plan the caller made and knows to be current (default: make
            one now, under the locks). Its warnings (e.g. a FORWARD policy of
            DROP) go to the ``bridgenet`` logger.
        force: kill processes in a namespace that must go because the
            network no longer has it (else NamespaceBusyError).
        jobs: in batch mode, how many shells configure namespaces at once
            (``jobs.py``).

    What the state file records and the network no longer has (a container
    removed from its file) is removed first: the network is the truth.
    SIGINT/SIGTERM stop the command in flight, wait for it, and roll back
    (see ``interrupts.py``); a second signal does not abandon the rollback.

    Returns:
        Report of the commands run and how many were already in place.

    Raises:
        ConflictError: something on the host differs from the network
            (nothing was changed).
        RolledBackError: a command failed or a signal arrived; what this
            call did has been undone (``leftovers`` lists what could not be).
        LockedError: another bridgenet process is changing this network.
        Interrupted: a signal arrived before any change.
    """
    with interrupts.deferred(), locked(store_for(runner), network.name):
        return _up(network, runner, batch=batch, progress=progress, plan=plan, force=force, jobs=jobs)


def _up(network: Network, runner: Runner, *, batch: bool, progress: Progress | None, plan: Plan | None,
        force: bool, jobs: int) -> Report:
    ledger = Ledger.open(store_for(runner), network.name)
    p = plan if plan is not None else make_plan(network, runner, fast=batch, ledger=ledger)
    for w in p.warnings:
        log.warning("bridgenet: warning: %s", w)
    ledger.identity = network.identity()
    removed: list[Command] = []
    gone: list[str] = []
    if p.orphans:
        with interrupts.shielded():
            removed, gone = _remove_orphans(runner, ledger, p.orphans, force=force)
        interrupts.check()
    todo = [s for s in p.steps if s.run]
    shared = [Entry(s.step.key, None, False, "found", []) for s in p.steps
              if not s.run and s.step.key.startswith(SHARED_PREFIXES) and s.step.key not in ledger.keys()]
    if shared:
        ledger.add(shared)  # so that another network's down leaves them to us (see down)
    if not todo:
        return Report(tuple(removed), p.in_place, gone=tuple(gone), removed=len(removed),
                      added=tuple(e.key for e in shared))
    before = ledger.keys()
    new_keys = [s.step.key for s in todo if s.step.key not in before]
    ran: list[Command] = list(removed)
    kill_after = _kill_after()
    try:
        interrupts.check()
        if batch:
            from .batch import BatchRunner

            ledger.add(_entry(s) for s in todo)
            if kill_after == 0:
                _die()
            cmds = [c for s in todo for c in s.run]
            try:
                BatchRunner(runner, jobs=jobs).execute(cmds, direction="up", progress=progress)
            except CommandError as err:
                failed = _failed_batch_command(err)
                # iptables-restore commits all its lines or none (iptables-restore(8)): none took effect
                void = getattr(err, "commands", ()) if err.argv[:1] in (("iptables-restore",),
                                                                       ("ip6tables-restore",)) else ()
                for s in todo:
                    if s.run and s.step.key in new_keys and (
                            s.run[0] is failed or any(s.run[0] is c for c in void)):
                        # its creating command failed: whatever has that name is not ours
                        ledger.drop([s.step.key])
                raise
            ran.extend(cmds)
            if kill_after:
                _die()
            ledger.mark_done(s.step.key for s in todo)
        else:
            total = sum(len(s.run) for s in todo)
            done = 0
            for s in todo:
                ledger.add([_entry(s)])
                done_here = 0
                try:
                    for c in s.run:
                        interrupts.check()
                        runner.run(c)
                        done_here += 1
                        done += 1
                        ran.append(c)
                        if progress:
                            progress(done, total)
                        if kill_after is not None and done >= kill_after:
                            _die()
                        _maybe_pause(done)
                except CommandError:
                    # The command itself failed (a signal is another matter: the command in
                    # flight may have taken effect, so its entry stays and undo reads state).
                    if s.step.key in new_keys:
                        _trim(ledger, s, done_here, p.state)
                    raise
                ledger.mark_done([s.step.key], save=False)  # written with the next step's intent
            ledger.save()
        interrupts.check()
    except BaseException as cause:
        with interrupts.shielded():
            log.warning("bridgenet: %s; rolling back what this run did", _short(cause))
            keys = set(new_keys)
            mine = [e for e in ledger.entries if e.key in keys]
            try:
                undone, leftovers, _ = _undo(runner, mine, force=True, network=network.name)
            except BridgenetError as lost:  # the host stopped answering (ssh): nothing more to undo from here
                undone, leftovers = [], [f"not rolled back ({_short(lost)}): {', '.join(e.key for e in mine)}; "
                                         "kept in its state file: `down` (or `up`) cleans it once it answers"]
            if not leftovers:
                ledger.drop(new_keys)
        raise RolledBackError(cause, undone, leftovers) from cause
    return Report(tuple(ran), p.in_place, gone=tuple(gone), removed=len(removed),
                  added=(*(e.key for e in shared), *new_keys))


def undo_added(name: str, runner: Runner, keys: Iterable[str]) -> tuple[list[Command], list[str]]:
    """Take back what one ``up`` of network ``name`` added on this host: the entries ``keys``
    (its ``Report.added``), undone in reverse and forgotten; the rest of the state file stays.

    A network that was not up before has only those entries: this is its ``down``. Signals wait
    (as in ``down``). Returns (commands run, what could not be undone; those entries are kept).
    """
    keys = set(keys)
    store = store_for(runner)  # one store: over SSH its lock holds the copy of the state files reads use
    with interrupts.deferred(raise_pending=False), locked(store, name), interrupts.shielded():
        ledger = Ledger.open(store, name)
        _hand_over_shared(runner, ledger, only=keys)
        ran, leftovers, _ = _undo(runner, [e for e in ledger.entries if e.key in keys], force=True, network=name)
        if not leftovers:
            ledger.drop(keys)
    return ran, leftovers


def _remove_orphans(runner: Runner, ledger: Ledger, orphans: Sequence[Entry], *,
                    force: bool) -> tuple[list[Command], list[str]]:
    """Undo what the state file has and the network no longer has; forget it once undone."""
    _hand_over_shared(runner, ledger, only={e.key for e in orphans})
    ran, _, gone = _undo(runner, orphans, force=force, network=ledger.network, strict=True)
    ledger.drop([e.key for e in orphans])
    return ran, gone


SHARED_PREFIXES = ("sysctl ", "chain ", "etc ")
"""Steps several networks may rely on at once (``net.ipv4.ip_forward``, bridgenet's iptables chains,
``/etc/netns``)."""


def _hand_over_shared(runner: Runner, ledger: Ledger, only: set[str] | None = None) -> None:
    """Leave a shared setting alone while another network still relies on it.

    When network A set ``ip_forward=1`` and network B found it set, A's down
    must not put it back to 0 under B: A hands its restore command over to
    B's ledger entry instead, and B's down restores it. Runs under the
    host-wide lock, so no other network comes or goes meanwhile.
    """
    store = store_for(runner)
    for e in ledger.entries:
        if not e.key.startswith(SHARED_PREFIXES) or (only is not None and e.key not in only):
            continue
        for other_name in Ledger.names(store):
            if other_name == ledger.network:
                continue
            other = Ledger.open(store, other_name)
            mine = next((o for o in other.entries if o.key == e.key), None)
            if mine is not None:
                if e.undo and not mine.undo:
                    mine.undo, mine.owns = list(e.undo), e.owns
                    other.save()
                e.undo = []
                break


def _trim(ledger: Ledger, ps, done: int, state: LiveState) -> None:  # noqa: ANN001
    """After a step failed part-way, keep in the ledger only the undo of what did run."""
    if done == 0:
        ledger.drop([ps.step.key])  # nothing ran: whatever exists by that name is not ours
        return
    if ps.owns:
        return  # the object was created: deleting it undoes the rest
    for e in ledger.entries:
        if e.key == ps.step.key:
            e.undo = [u for c in reversed(ps.run[:done]) for u in inverse(c, state)]
    ledger.save()


def _failed_batch_command(err: BaseException) -> Command | None:
    """The command an ``ip -batch`` failed on (its stderr ends "Command failed -:LINE"), if known."""
    cmds = getattr(err, "commands", ())
    m = re.search(r"Command failed -:(\d+)", getattr(err, "stderr", "") or "")
    if not cmds or not m:
        return None
    i = int(m.group(1)) - 1
    return cmds[i] if 0 <= i < len(cmds) else None


def down(network: Network | str, runner: Runner, *, batch: bool = False, force: bool = False) -> Report:
    """Take down what bridgenet created for ``network`` (by object or name), per its state file.

    A network never brought up (no state file) has nothing to take down.
    What an undo step acts on may already be gone (a reused bridge someone
    deleted): that step counts as done and is listed in ``Report.gone``.
    Once started, ``down`` finishes: SIGINT/SIGTERM are reported and wait.
    It always runs as a batch, links deleted in one request (``teardown.py``);
    ``batch`` is accepted for compatibility and changes nothing.

    Raises:
        NamespaceBusyError: a namespace to delete still has processes in it
            (pass ``force=True`` to kill them first); nothing was changed.
        CommandError: a command failed; the state file keeps what is left.
        ConflictError: ``network`` comes from another source (file) than the
            network of that name that is up; nothing was changed.
        LockedError: another bridgenet process is changing this network.
    """
    name = network if isinstance(network, str) else network.name
    store = store_for(runner)
    with interrupts.deferred(raise_pending=False), locked(store, name), interrupts.shielded():
        ledger = Ledger.open(store, name)
        if not isinstance(network, str):  # not another file's network of that name
            check_identity(network, ledger, sources_only=True)
        return _down(name, runner, force=force, ledger=ledger)


def _down(name: str, runner: Runner, *, force: bool, ledger: Ledger | None = None) -> Report:
    ledger = ledger if ledger is not None else Ledger.open(store_for(runner), name)
    if not ledger.entries:
        return Report(note=f"no record of {name} on this host (never brought up by bridgenet, or already "
                           "down); nothing to take down")
    if not any(e.undo for e in ledger.entries):
        ledger.drop([e.key for e in ledger.entries])
        return Report(note=f"bridgenet created nothing of {name} here (everything was in place when it "
                           "came up), so nothing is removed; `bridgenet down --dry-run` prints the commands "
                           "that would remove it by hand")
    _hand_over_shared(runner, ledger)
    ran, _, gone = _undo(runner, ledger.entries, force=force, network=name, strict=True)
    ledger.drop([e.key for e in ledger.entries])
    return Report(tuple(ran), networks=(name,), gone=tuple(gone))


def _undo(runner: Runner, entries: Sequence[Entry], *, force: bool, network: str,
          strict: bool = False) -> tuple[list[Command], list[str], list[str]]:
    """Undo ``entries`` in reverse, skipping what their covering step removes and what is already undone.

    The host's link deletes become one group delete (``teardown.py``) run,
    with the rest, by the batch runner; if that fails part-way, live state
    is read again and what is left runs one command at a time.

    Returns (commands run, descriptions of what could not be undone, what
    was already gone). With ``strict``, a failure raises instead of being
    listed.
    """
    cmds = removals(entries)
    # Links, namespaces and addresses are read first; sysctl writes and iptables deletes are run
    # without reading them (an iptables read costs ≈20 ms): a rule already gone makes the batch
    # fail before anything else ran, and then everything is read and classified below.
    state = _read_for_undo(runner, cmds, optimistic=True)
    todo, gone_now = _classify(cmds, state, optimistic=True)
    busy = busy_netns(runner, [c.effect.name for c in todo if isinstance(c.effect, NetnsAbsent)])
    if busy and not force:
        name, pids = next(iter(busy.items()))
        raise NamespaceBusyError(name, pids)
    for pids in busy.values():
        runner.exec(["kill", "-KILL", *map(str, pids)], check=False)
    ran: list[Command] = []
    leftovers: list[str] = []
    fast = grouped(todo, pick_group(network, state))
    if todo:
        # One shell, and the links in one kernel request (teardown.py): ≈1 ms per container
        # instead of ≈31. Whatever fails there is finished below, one command at a time.
        from .batch import BatchRunner

        try:
            BatchRunner(runner).execute(fast, direction="down")
            return fast, [], gone_now
        except CommandError:
            todo, gone_now = _classify(cmds, _read_for_undo(runner, cmds), optimistic=False)
    for c in todo:
        try:
            runner.run(c)
            ran.append(c)
        except BridgenetError as err:
            # Classify by state, not by error text: maybe it vanished with
            # something removed before it (a veth with its peer).
            now = _read_for_undo(runner, [c])
            if satisfied(c.effect, now):
                continue
            why = gone(c.effect, now)
            if why is not None:
                gone_now.append(f"{c.shell()}: {why}")
                continue
            if strict:
                raise
            leftovers.append(f"{c.shell()}: {err}")
    return ran, leftovers, gone_now


_UNREAD = (SysctlValue, RuleAbsent, ChainAbsent)
"""Effects an optimistic teardown does not read before it runs their commands."""


def _classify(cmds: Sequence[Command], state: LiveState, *, optimistic: bool) -> tuple[list[Command], list[str]]:
    """(the commands still to run, what is already gone) in ``state``; optimistic: ``_UNREAD`` ones all run."""
    todo: list[Command] = []
    gone_now: list[str] = []
    for c in cmds:
        if optimistic and isinstance(c.effect, _UNREAD):
            todo.append(c)
            continue
        why = gone(c.effect, state)
        if why is not None:
            gone_now.append(f"{c.shell()}: {why}")
        elif not satisfied(c.effect, state):
            todo.append(c)
    return todo, gone_now


def _read_for_undo(runner: Runner, cmds: Iterable[Command], *, optimistic: bool = False) -> LiveState:
    netns, sysctls, rules, rules6, etc = [], [], [], [], False
    v6 = False
    for c in cmds:
        e = c.effect
        etc = etc or isinstance(e, _FILES)
        if c.netns:
            netns.append(c.netns)
        n = getattr(e, "netns", None)
        if n:
            netns.append(n)
        if isinstance(e, SysctlValue) and not optimistic:
            sysctls.append((e.key, e.netns))
        if isinstance(e, (RuleAbsent, ChainAbsent)) and not optimistic:
            (rules6 if e.family == 6 else rules).append((e.table, e.chain, e.netns))
        if isinstance(e, RouteAbsent) and e.via.version == 6:
            v6 = True  # IPv6 routes are read only when some command needs them
    return read(runner, netns=netns, sysctls=sysctls, rules=rules, rules6=rules6, v6=v6, etc=etc)


_FILES = (FileAbsent, FilePresent, DirAbsent, DirPresent)
"""Effects on files (``names.py``): their undo reads ``/etc/netns``."""


def clean(runner: Runner, *, force: bool = False, batch: bool = False) -> Report:
    """Undo everything bridgenet left on this host.

    First every network with a state file (as ``down`` would), then
    leftovers found by their tag without a state file: links whose alias is
    ``bridgenet:NAME`` (host end first), namespaces whose ``lo`` carries
    such an alias (bridgenet tags only what it created, so a namespace or
    bridge it merely used is never removed), and iptables rules commented
    ``bridgenet:NAME``. Holds the host-wide lock throughout; once started
    it finishes (signals are reported and wait).

    Raises:
        NamespaceBusyError: as ``down``.
    """
    ran: list[Command] = []
    names = []
    gone_all: list[str] = []
    store = store_for(runner)
    with interrupts.deferred(raise_pending=False), locked(store, None), interrupts.shielded():
        for name in Ledger.names(store):
            r = _down(name, runner, force=force)
            ran.extend(r.ran)
            gone_all.extend(r.gone)
            names.append(name)
        ran.extend(clean_tagged(runner, force=force))
    return Report(tuple(ran), networks=tuple(names), gone=tuple(gone_all))
