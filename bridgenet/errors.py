"""Every error bridgenet raises on purpose.

All of them derive from :class:`BridgenetError`, so ``except
bridgenet.BridgenetError`` catches exactly bridgenet's own failures.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class BridgenetError(Exception):
    """Root of every error raised by bridgenet."""


class ValidationError(BridgenetError, ValueError):
    """A value breaks one of the model's rules; raised before any command runs.

    Attributes:
        obj: what was being checked, e.g. ``"VethPair brid4"``.
        field: the field that breaks the rule, e.g. ``"name"``.
        rule: the rule, in words, e.g. ``"an interface name is at most 15 bytes"``.
        value: the offending value.
    """

    def __init__(self, obj: str, field: str, rule: str, value: object = None) -> None:
        self.obj = obj
        self.field = field
        self.rule = rule
        self.value = value
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{obj}: {field}: {rule}{shown}")


class CommandError(BridgenetError):
    """A command exited non-zero (or could not be started).

    Attributes:
        argv: the command as run, a tuple of strings.
        exit_code: its exit status (127 when the program was not found).
        stderr: what it wrote to standard error, decoded as UTF-8.
        stdout: what it wrote to standard output.
    """

    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str, stdout: str = "") -> None:
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout
        detail = stderr.strip() or "(no stderr)"
        super().__init__(f"command failed (exit {exit_code}): {shlex.join(self.argv)}\n  {detail}")


class RolledBackError(BridgenetError):
    """Bringing a network up failed or was interrupted; what was done is undone.

    Attributes:
        cause: the error (or signal) that stopped the work.
        undone: the commands run to roll back, in order.
        leftovers: descriptions of what could not be rolled back (empty when
            the host is back where it was).
    """

    def __init__(self, cause: BaseException, undone: Sequence[object], leftovers: Sequence[str] = ()) -> None:
        self.cause = cause
        self.undone = tuple(undone)
        self.leftovers = tuple(leftovers)
        msg = f"{cause}\nrolled back {len(self.undone)} command(s)"
        if self.leftovers:
            msg += "; could NOT undo: " + "; ".join(self.leftovers)
        else:
            msg += "; the host is back where it was"
        super().__init__(msg)


class ConflictError(BridgenetError):
    """Something on the host differs from what the network asks for.

    Raised by planning, before any change. ``wanted`` and ``found`` describe
    the two sides.
    """

    def __init__(self, what: str, wanted: str, found: str, hint: str = "") -> None:
        self.what = what
        self.wanted = wanted
        self.found = found
        self.hint = hint
        msg = f"{what}: the network wants {wanted}, but the host has {found}"
        if hint:
            msg += f"\n  {hint}"
        super().__init__(msg)


class VethFreeingConflict(ConflictError):
    """A host link has a veth's name, and its peer is not where the network puts it.

    Most often it is the host end of a veth whose namespace was just deleted
    (``ip netns del``): the kernel destroys the end inside the namespace and
    then, asynchronously, its peer in the host (measured here: up to ≈0.4 s);
    a namespace still held by a process keeps it for as long as the process
    lives. Planning waits for it to go (:func:`bridgenet.plan.settled_state`)
    and raises this when it is still there at the deadline.

    Attributes:
        link: the host link's name, e.g. ``"brid4"``.
    """

    def __init__(self, what: str, wanted: str, found: str, hint: str = "", link: str = "") -> None:
        super().__init__(what, wanted, found, hint)
        self.link = link


class NamespaceBusyError(BridgenetError):
    """A namespace to delete still has processes in it (their PIDs in ``pids``)."""

    def __init__(self, netns: str, pids: Sequence[int]) -> None:
        self.netns = netns
        self.pids = tuple(pids)
        super().__init__(
            f"netns {netns} still has processes in it (PIDs {', '.join(map(str, self.pids))}); "
            "stop them, or pass force=True (--force) to kill them first"
        )


class LockedError(BridgenetError):
    """Another bridgenet process is changing the same network on the same host right now."""


class UnsupportedError(BridgenetError):
    """What was asked is valid but not supported (yet): e.g. ``graph`` of a network across hosts, or
    changing hosts through a runner that keeps no state file; nothing was run.

    The command line exits 2 for it, as for a usage error (1 with ``plan --detailed-exitcode``).
    """


class PrivilegeError(BridgenetError):
    """The caller lacks a capability the operation needs (e.g. CAP_NET_ADMIN)."""


class SandboxError(BridgenetError):
    """A sandbox could not be created, entered or used."""


class NotInSandboxError(SandboxError):
    """A real command was about to run outside a sandbox while one is required."""


class BatchError(CommandError):
    """A process of a batch plan (``ip -batch -``, ``iptables-restore``, ``sysctl -w``...) failed.

    Raised by :class:`bridgenet.batch.BatchRunner`. ``argv``, ``exit_code``,
    ``stderr`` and ``stdout`` are those of the failing process. ``ip -batch``
    stops at its first failing line (its stderr then ends with ``Command
    failed -:LINE``) and runs nothing after it, but the lines before it have
    taken effect; with the nf_tables backend an ``iptables-restore`` applies
    all or nothing. Re-read live state to know what is in place.

    Attributes:
        lines: the input fed to the process on stdin, one entry per line
            (empty when it read none).
        commands: the bridgenet commands the process carried, in order.
    """

    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str, stdout: str = "",
                 lines: Sequence[str] = (), commands: Sequence[object] = ()) -> None:
        super().__init__(argv, exit_code, stderr, stdout)
        self.lines = tuple(lines)
        self.commands = tuple(commands)


class FaultError(BridgenetError):
    """A fault (:mod:`bridgenet.testing.faults`) could not be put in place or undone.

    Raised after what the failed attempt had changed is undone again.
    """


class NetemUnavailableError(FaultError):
    """The kernel has no ``netem`` qdisc (``sch_netem`` module missing): delay, jitter,
    reordering, duplication and corruption cannot be made.

    Classified from live state, not from tc's message alone: after the failure
    the link still exists with its default root qdisc, and even a bare ``tc
    qdisc add dev LINK root netem`` (valid on every kernel that has netem,
    tc-netem(8)) fails there.

    Attributes:
        netns: the namespace the fault was for.
        link: the link tc was asked to put netem on.
        stderr: what tc said.
    """

    def __init__(self, netns: str, link: str, stderr: str) -> None:
        self.netns = netns
        self.link = link
        self.stderr = stderr
        super().__init__(
            f"tc netem is not available on this kernel: the sch_netem kernel module is missing "
            f"(tc qdisc add dev {link} root netem, in {netns}, failed: {stderr.strip() or 'no message'}); "
            "load it on the machine (modprobe sch_netem) or use a kernel built with CONFIG_NET_SCH_NETEM. "
            "Packet loss without netem: faults.loss()")


class HostUnreachableError(BridgenetError):
    """OpenSSH could not run a command on one or more hosts: unreachable, key refused, host key unknown.

    ``ssh`` exits 255 when it fails itself (ssh(1), EXIT STATUS), as opposed
    to the remote command's own exit status; its stderr says why.

    Attributes:
        failures: ``(destination, reason)`` pairs, one per host that failed,
            ``reason`` being ``ssh``'s stderr (stripped).
    """

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = tuple((str(d), str(r)) for d, r in failures)
        hosts = "host" if len(self.failures) == 1 else "hosts"
        lines = [f"cannot reach {len(self.failures)} {hosts} over ssh (nothing was changed there):"]
        lines += [f"  {d}: {r.strip() or '(ssh said nothing)'}" for d, r in self.failures]
        super().__init__("\n".join(lines))

    @property
    def hosts(self) -> tuple[str, ...]:
        """The destinations that failed, in order."""
        return tuple(d for d, _ in self.failures)


class ConnectionLostError(HostUnreachableError):
    """``ssh`` failed itself (exit 255) while running a command on a host it had reached: the connection
    dropped (sshd or its session killed, the network gone) part-way through bridgenet's work.

    Unlike a failed login, something may have changed there: whether this command ran is unknown
    (ssh(1), EXIT STATUS: 255 is ssh's own error, not the command's).

    Attributes:
        failures: as :class:`HostUnreachableError` (one pair).
        argv: the command that was in flight.
    """

    def __init__(self, destination: str, argv: Sequence[str], reason: str) -> None:
        self.failures = ((str(destination), str(reason)),)
        self.argv = tuple(str(a) for a in argv)
        Exception.__init__(self, f"lost the ssh connection to {destination} while running "
                                 f"{shlex.join(self.argv)} (ssh exited 255; whether it ran there is unknown): "
                                 f"{reason.strip() or '(ssh said nothing)'}")


class HostsRolledBackError(RolledBackError):
    """Bringing a network up across hosts failed on one host (or a signal arrived); every host is rolled back.

    Attributes:
        host: the name of the host where it failed (or was interrupted).
        cause: that host's error (the signal's :class:`~bridgenet.interrupts.Interrupted`, a
            :class:`CommandError`, ...), unwrapped from its own rollback.
        undone: every host's rollback commands, the failing host's first.
        per_host: ``(host name, commands run to roll it back)`` for every host touched, in rollback order.
        leftovers: what could not be undone, each prefixed ``HOST: ``.
    """

    def __init__(self, host: str, cause: BaseException, per_host: Sequence[tuple[str, Sequence[object]]],
                 leftovers: Sequence[str] = ()) -> None:
        self.host = host
        self.per_host = tuple((h, tuple(u)) for h, u in per_host)
        self.cause = cause
        self.undone = tuple(c for _, u in self.per_host for c in u)
        self.leftovers = tuple(leftovers)
        done = ", ".join(f"{h}: {len(u)} command(s)" for h, u in self.per_host) or "nothing had changed"
        msg = f"host {host}: {cause}\nrolled back every host ({done})"
        msg += ("; could NOT undo: " + "; ".join(self.leftovers)) if self.leftovers else "; every host is back where it was"
        Exception.__init__(self, msg)  # not RolledBackError's own message
