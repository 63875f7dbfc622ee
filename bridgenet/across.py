"""A network across hosts, for real: plan, bring up, take down and show every host's part together.

:class:`~bridgenet.stretch.Stretch` gives each host its own network; here
each host's part runs through its own runner (``runners`` maps a host's name
to a :class:`~bridgenet.runners.Runner`: :class:`~bridgenet.runners.ShRunner`
for this machine, :class:`~bridgenet.runners.SshRunner` for the others, see
:func:`default_runners`; tests pass the runners of ``bridgenet.testing.hosts``).

* Before any change anywhere: every SSH host is logged into
  (:func:`~bridgenet.runners.check_hosts`, all at once) and every host is
  planned; a conflict on any host raises :class:`ConflictError` naming it.
* Order: the gateway host first (it holds the gateway address, forwarding
  and NAT, so the other hosts' containers have their way out as soon as
  they exist), then the others in the file's order; ``down`` goes the
  other way round (the gateway host last).
* Each host keeps its own state file (``apply.up`` per host, under that
  host's locks), so ``bridgenet down`` or ``clean`` on one host alone works.
* A failure on any host rolls back every host: the failing host's
  ``apply.up`` undoes its own work; each host already done is given back
  exactly what this run added there (:func:`bridgenet.apply.undo_added`:
  everything, if the network was not up there before; only the new
  entries of a converging run). What a converging run removed (a container
  gone from the file) is not re-created. Then
  :class:`~bridgenet.errors.HostsRolledBackError` names the host and the cause.
* SIGINT/SIGTERM during :func:`up_all` do the same (the command in flight
  is stopped and waited for, see ``interrupts.py``); a second signal does
  not abandon the rollback. :func:`down_all`, once started, finishes every
  host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import attrs

from . import apply, interrupts
from .conflicts import check_identity
from .errors import (BridgenetError, ConflictError, HostsRolledBackError, HostUnreachableError, RolledBackError,
                     UnsupportedError, ValidationError)
from .hosts import HostSpec
from .jobs import JOBS
from .ledger import Ledger
from .network import Network
from .plan import Plan
from .runners import Runner, ShRunner, SshRunner, SshTarget, check_hosts
from .state_store import store_for
from .stretch import Stretch

log = logging.getLogger("bridgenet")

OnHost = Callable[[HostSpec], None]
"""Called with each host just before its commands run (the CLI prints its ``# host`` header)."""


@attrs.frozen
class HostPlan:
    """One host's plan: ``host`` (its :class:`HostSpec`) and ``plan`` (:class:`~bridgenet.plan.Plan`)."""

    host: HostSpec
    plan: Plan


@attrs.frozen
class HostReport:
    """What ``up``/``down`` did on one host: ``host`` and ``report`` (:class:`~bridgenet.apply.Report`)."""

    host: HostSpec
    report: apply.Report


class HostsFailedError(BridgenetError):
    """``down_all`` failed on some hosts (the others were taken down).

    Attributes:
        failures: ``(host name, error)`` pairs, in the order tried.
    """

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        self.failures = tuple(failures)
        super().__init__("; ".join(f"host {h}: {e}" for h, e in self.failures))


def order(stretch: Stretch) -> list[tuple[HostSpec, Network]]:
    """The hosts in the order ``up`` runs them: the gateway host first, then the others in file order."""
    pairs = stretch.pairs()
    return sorted(pairs, key=lambda p: p[0].name != stretch.gateway_host)


def target_of(host: HostSpec) -> SshTarget:
    """The :class:`SshTarget` of a host's SSH settings (``ssh``, ``port``, ``identity``, ``ssh_config``,
    ``options``); ValidationError for the local host (:meth:`HostSpec.ssh_target`)."""
    return host.ssh_target()


def default_runners(stretch: Stretch, *, echo: Callable[[str], None] | None = None,
                    session: bool = False) -> dict[str, Runner]:
    """``{host name: runner}``: a :class:`ShRunner` (``echo``, ``session``) for the local host, an
    :class:`SshRunner` (:func:`target_of`, ``echo``) for each other. Close them when done (:func:`close`)."""
    return {h.name: ShRunner(echo=echo, session=session) if h.local else SshRunner(target_of(h), echo=echo)
            for h in stretch.hosts}


def close(runners: Mapping[str, Runner]) -> None:
    """Close every runner that can be (SSH connections, sessions)."""
    for r in runners.values():
        closer = getattr(r, "close", None)
        if closer is not None:
            closer()


def reach(stretch: Stretch, runners: Mapping[str, Runner]) -> None:
    """Check that every host has a runner and every SSH host answers (all at once), before any change.

    Raises:
        ValidationError: a host without a runner, or a runner for no host.
        HostUnreachableError: listing every SSH host that failed, each with ssh's reason.
    """
    names = [h.name for h in stretch.hosts]
    missing = [n for n in names if n not in runners]
    extra = sorted(set(runners) - set(names))
    if missing or extra:
        raise ValidationError(f"network {stretch.name}", "runners", "one runner per host: "
                              + (f"none for {', '.join(missing)}" if missing else f"no host {', '.join(extra)}"),
                              sorted(runners))
    ssh = [n for n in names if isinstance(runners[n], SshRunner)]
    try:
        check_hosts([runners[n] for n in ssh])
    except HostUnreachableError as e:  # named as the file names them: "h2 (root@198.51.100.12)"
        by_dest = {runners[n].target.destination: n for n in ssh}
        raise HostUnreachableError([(f"{by_dest[d]} ({d})" if d in by_dest else d, r) for d, r in e.failures]) \
            from None


def _stateful(stretch: Stretch, runners: Mapping[str, Runner]) -> None:
    """Refuse to change a host whose state file this process cannot keep (a runner with no state store,
    :func:`~bridgenet.state_store.store_for`: ``apply`` would keep its ledger in memory only, and ``down``
    would later find nothing to undo). ShRunner and SshRunner have one; dry-run and recording runners not."""
    lost = [h.name for h in stretch.hosts if store_for(runners[h.name]) is None]
    if lost:
        raise UnsupportedError(f"host(s) {', '.join(lost)}: no state file can be kept there through this "
                               "runner (a dry-run or recording runner); nothing was changed")


def _named(host: HostSpec, err: ConflictError) -> ConflictError:
    out = ConflictError(f"host {host.name}: {err.what}", err.wanted, err.found, err.hint)
    out.host = host.name  # type: ignore[attr-defined]
    return out


def plan_all(stretch: Stretch, runners: Mapping[str, Runner], *, batch: bool = False) -> list[HostPlan]:
    """Every host's plan, in :func:`order`, after :func:`reach`; changes nothing.

    Raises:
        ConflictError: something on a host differs from its network (the message starts ``host NAME:``;
            ``.host`` is the name).
        HostUnreachableError, ValidationError: as :func:`reach`.
    """
    reach(stretch, runners)
    return _plans(stretch, runners, batch)


def _plans(stretch: Stretch, runners: Mapping[str, Runner], batch: bool) -> list[HostPlan]:
    out = []
    for host, net in order(stretch):
        try:
            out.append(HostPlan(host, apply.plan(net, runners[host.name], batch=batch)))
        except ConflictError as err:
            raise _named(host, err) from err
    return out


def up_all(stretch: Stretch, runners: Mapping[str, Runner], *, batch: bool = False, force: bool = False,
           jobs: int = JOBS, on_host: OnHost | None = None) -> list[HostReport]:
    """Bring every host's part up, in :func:`order`; on any failure or signal, roll back every host.

    Every host is reached and planned first (:func:`plan_all`); then each
    host's ``apply.up`` (which plans again under that host's locks, runs
    what is missing and records it in that host's state file).

    Returns:
        One :class:`HostReport` per host, in the order run.

    Raises:
        ConflictError, HostUnreachableError, ValidationError: before any change (:func:`plan_all`).
        UnsupportedError: a runner keeps no state file (a dry-run or recording runner; nothing was changed).
        HostsRolledBackError: a host failed, or SIGINT/SIGTERM arrived; every host was rolled back
            (``.host`` names where, ``.cause`` is why; the CLI exits 128 + the signal's number).
        Interrupted: a signal arrived before any change.
    """
    with interrupts.deferred():
        reach(stretch, runners)
        _stateful(stretch, runners)
        _plans(stretch, runners, batch)
        done: list[HostReport] = []
        current: HostSpec | None = None
        try:
            for host, net in order(stretch):
                current = host
                interrupts.check()
                if on_host is not None:
                    on_host(host)
                done.append(HostReport(host, apply.up(net, runners[host.name], batch=batch, force=force,
                                                      jobs=jobs)))
                current = None
            interrupts.check()
        except BaseException as err:
            where = current if current is not None else done[-1].host
            raise _roll_back(stretch.name, where, err, done, runners) from err
    return done


def _roll_back(name: str, where: HostSpec, err: BaseException, done: Sequence[HostReport],
               runners: Mapping[str, Runner]) -> HostsRolledBackError:
    """Undo what this run added on every host in ``done`` (last first); the failing host undid its own."""
    with interrupts.shielded():
        cause, per_host, leftovers = err, [], []
        if isinstance(err, RolledBackError):
            cause = err.cause
            per_host.append((where.name, err.undone))
            leftovers += [f"{where.name}: {x}" for x in err.leftovers]
        log.warning("bridgenet: host %s: %s; rolling back every host", where.name, apply._short(cause))
        for hr in reversed(done):
            try:
                undone, left = apply.undo_added(name, runners[hr.host.name], hr.report.added)
            except BridgenetError as e:  # e.g. the host became unreachable: say so, go on with the others
                undone, left = [], [str(e)]
            per_host.append((hr.host.name, undone))
            leftovers += [f"{hr.host.name}: {x}" for x in left]
    return HostsRolledBackError(where.name, cause, per_host, leftovers)


def down_all(stretch: Stretch, runners: Mapping[str, Runner], *, force: bool = False,
             on_host: OnHost | None = None) -> list[HostReport]:
    """Take every host's part down (``apply.down``, per its state file), the gateway host last.

    Every host is reached, and each state file checked to be this network's
    (not another file's of that name), before any change. Once started it
    goes through every host (signals wait); a host that fails does not stop
    the others.

    Raises:
        ConflictError: a host has another network of that name up (nothing was changed anywhere).
        HostsFailedError: some hosts failed (the others are down); each failure names its host.
        HostUnreachableError, ValidationError: as :func:`reach`; UnsupportedError: as :func:`up_all`.
    """
    reach(stretch, runners)
    _stateful(stretch, runners)
    pairs = list(reversed(order(stretch)))
    for host, net in pairs:
        try:
            check_identity(net, Ledger.open(store_for(runners[host.name]), net.name),
                           sources_only=True)
        except ConflictError as err:
            raise _named(host, err) from err
    return _every_host(pairs, lambda host, net: apply.down(net, runners[host.name], force=force), on_host)


def _every_host(pairs: Sequence[tuple[HostSpec, Network]], do: Callable[[HostSpec, Network], apply.Report],
                on_host: OnHost | None) -> list[HostReport]:
    """``do`` on every host in turn, signals waiting; a host that fails does not stop the others.

    Raises:
        HostsFailedError: some hosts failed, each named with its error (the others are done).
    """
    out: list[HostReport] = []
    failures: list[tuple[str, BaseException]] = []
    with interrupts.deferred(raise_pending=False), interrupts.shielded():
        for host, net in pairs:
            if on_host is not None:
                on_host(host)
            try:
                out.append(HostReport(host, do(host, net)))
            except BridgenetError as err:
                log.warning("bridgenet: host %s: %s", host.name, apply._short(err))
                failures.append((host.name, err))
    if failures:
        raise HostsFailedError(failures)
    return out


def show_all(stretch: Stretch, runners: Mapping[str, Runner]) -> list[tuple[HostSpec, object]]:
    """``[(host, its NetworkStatus), ...]`` in the file's order (``status.show`` per host); reads only."""
    from .status import show

    reach(stretch, runners)
    return [(host, show([net], runners[host.name])[0]) for host, net in stretch.pairs()]


def clean_all(stretch: Stretch, runners: Mapping[str, Runner], *, force: bool = False,
              on_host: OnHost | None = None) -> list[HostReport]:
    """``apply.clean`` on every host of the file (each through its runner), the gateway host last: every
    network with a state file there, then bridgenet's tagged leftovers (not only this file's network).

    Every host is reached first; once started it goes through every host (as :func:`down_all`).

    Raises:
        HostsFailedError: some hosts failed (the others are clean); each failure names its host.
        HostUnreachableError, ValidationError: as :func:`reach`; UnsupportedError: as :func:`up_all`.
    """
    reach(stretch, runners)
    _stateful(stretch, runners)
    return _every_host(list(reversed(order(stretch))),
                       lambda host, _: apply.clean(runners[host.name], force=force), on_host)
