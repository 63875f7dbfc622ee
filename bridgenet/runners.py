"""Runners execute command lists: for real (through ``sh``), as a dry-run, or recorded.

Every runner has the same two calls:

* ``run(command)`` runs one :class:`bridgenet.commands.Command`;
* ``exec(argv, input=None, check=True)`` runs any argv (used to read live
  state and to run checks such as ``ping``).

Both return a :class:`Result`; a real failure raises
:class:`bridgenet.errors.CommandError` carrying argv, exit code and stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Protocol

import attrs

from . import interrupts
from .commands import Command, Step
from .errors import CommandError, NotInSandboxError


REQUIRE_SANDBOX_ENV = "BRIDGENET_REQUIRE_SANDBOX"
"""When this environment variable is set (to anything but ``""``/``"0"``), a
real runner refuses to run a command unless it is bound to a live sandbox.
The test suite sets it; so does the pytest plugin."""


@attrs.frozen
class Result:
    """What a command did: its argv, exit code, stdout and stderr (text)."""

    argv: tuple[str, ...]
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Isolated(Protocol):
    """What :class:`ShRunner`'s guard needs of the sandbox it runs in (e.g. a
    :class:`bridgenet.sandbox.Sandbox`): whether its namespaces are still
    there and not this machine's own."""

    def is_isolated(self) -> bool: ...


class Runner(Protocol):
    """What every runner provides."""

    def run(self, command: Command) -> Result: ...

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result: ...


SANDBOX_MARK = "/run/bridgenet/.sandbox"
"""File a sandbox puts on its private ``/run`` tmpfs (source ``bridgenet-run``)."""


def inside_sandbox() -> bool:
    """True when this process runs inside a bridgenet sandbox's mount (and network) namespace.

    A sandbox mounts its own tmpfs, named ``bridgenet-run``, on ``/run`` and
    leaves ``/run/bridgenet/.sandbox`` there; processes enter the sandbox's
    network and mount namespaces together, so seeing that mount means the
    network namespace is the sandbox's too.
    """
    try:
        with open("/proc/self/mountinfo") as f:
            mounted = any(
                line.split()[4] == "/run" and line.split(" - ")[1].split()[1] == "bridgenet-run"
                for line in f
                if " - " in line
            )
    except (OSError, IndexError):
        return False
    return mounted and os.path.exists(SANDBOX_MARK)


def sandbox_required() -> bool:
    """True when the environment demands that real commands run only inside a sandbox."""
    return os.environ.get(REQUIRE_SANDBOX_ENV, "") not in ("", "0")


class ShRunner:
    """Runs commands for real through the ``sh`` package (one process per command).

    Args:
        prefix: argv put in front of every command, e.g. the ``nsenter ...``
            that enters a sandbox; empty to run on the current host.
        sandbox: the sandbox the prefix enters, if any (checked by the guard).
        echo: called with each command line before it runs (for ``-v``
            output), or None.
        session: run each command of :meth:`run` through one long-lived
            shell (``session.py``: still one process per command, ≈1.7 ms
            each instead of ≈16 ms through ``sh`` one by one); ``exec``
            keeps one ``sh`` call each. :meth:`close` ends that shell.
        fs_root: where the target host's file system is seen from this
            process (``/proc/PID/root`` for a sandbox); bridgenet keeps its
            state files under ``FS_ROOT/run/bridgenet``.

    Raises (from ``run``/``exec``):
        CommandError: the command exited non-zero or was not found
            (exit code 127).
        NotInSandboxError: ``BRIDGENET_REQUIRE_SANDBOX`` is set and this
            runner is not bound to a live sandbox.
    """

    def __init__(self, prefix: Sequence[str] = (), *, sandbox: Isolated | None = None,
                 echo: Callable[[str], None] | None = None, fs_root: str = "/", session: bool = False) -> None:
        self.prefix = tuple(prefix)
        self.sandbox = sandbox
        self.fs_root = fs_root
        self.echo = echo
        self._programs: dict[str, object] = {}
        self._inside: bool | None = None
        self._session = None
        if session:
            from .session import ShellSession

            self._session = ShellSession(self.prefix)

    def close(self) -> None:
        """End the long-lived shell of ``session=True`` (if any); the runner can still be used."""
        if self._session is not None:
            self._session.close()

    def _guard(self, argv: Sequence[str]) -> None:
        if not sandbox_required():
            return
        if self.sandbox is None:
            if self._inside is None:  # a process does not change namespaces: look once
                self._inside = inside_sandbox()
            if self._inside:
                return
        if self.sandbox is None or not self.sandbox.is_isolated():
            raise NotInSandboxError(
                f"refusing to run {shlex.join(argv)!r}: {REQUIRE_SANDBOX_ENV} is set and this runner "
                "is not bound to a live sandbox (use bridgenet.Sandbox().runner())"
            )

    def _program(self, name: str):
        import sh  # imported here so that dry-runs work where sh is absent

        prog = self._programs.get(name)
        if prog is None:
            prog = sh.Command(name)
            self._programs[name] = prog
        return prog

    def run(self, command: Command) -> Result:
        if self.echo is not None:
            self.echo(command.shell())
        if self._session is None or command.input is not None:
            return self.exec(command.argv, input=command.input)
        argv = command.argv
        self._guard(argv)
        code, out, err = self._session.run(argv)
        if code != 0:
            interrupts.check()
            raise CommandError(argv, code, err, out)
        return Result(argv, code, out, err)

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result:
        import sh

        argv = tuple(argv)
        self._guard(argv)
        if timeout is not None:
            # timeout(1) inside the target rather than sh's _timeout, which
            # polls and costs ~100 ms per call (measured here).
            full = (*self.prefix, "timeout", "-k", "1", f"{timeout:g}", *argv)
        else:
            full = (*self.prefix, *argv)
        try:
            prog = self._program(full[0])
        except sh.CommandNotFound:
            code, out, err = 127, "", f"{full[0]}: command not found"
        else:
            code, out, err = _run_in_group(prog, full[1:], input)
        if code != 0:
            interrupts.check()  # killed because a signal arrived: say so, not "exit -15"
        if timeout is not None and code in (124, 137):
            err = (err + f"\ntimed out after {timeout:g} s").lstrip("\n")
        if check and code != 0:
            raise CommandError(argv, code, err, out)
        return Result(argv, code, out, err)


STOP_WAIT = 2.0
"""Seconds a stopped child gets between SIGTERM and SIGKILL."""


def _run_in_group(prog, args: Sequence[str], input: str | None) -> tuple[int, str, str]:  # noqa: ANN001
    """Run ``prog ARGS`` through ``sh`` in a session (so a process group) of its own; return (code, out, err).

    The child's group is registered with :mod:`bridgenet.interrupts`, so a
    SIGINT/SIGTERM to bridgenet stops the command in flight and every
    process it started (``sh``, ``ip -batch``, ``nsenter`` and what it forks),
    and we wait for them to end before anything else happens: nothing keeps
    changing the host behind a rollback. If this process is interrupted any
    other way while waiting (KeyboardInterrupt outside ``up``), the group
    is stopped too before the exception goes on.
    """
    import sh

    kwargs: dict[str, object] = {"_tty_out": False, "_return_cmd": True, "_ok_code": range(256),
                                 "_bg": True, "_bg_exc": False, "_new_session": True}
    if input is not None:
        kwargs["_in"] = input
    proc = prog(*args, **kwargs)
    pgid = proc.pid
    try:
        with interrupts.child(pgid):
            proc.wait()
        return proc.exit_code, _text(proc.stdout), _text(proc.stderr)
    except sh.ErrorReturnCode as e:  # killed by a signal: exit_code is -SIGNAL, as in subprocess
        return e.exit_code, _text(e.stdout), _text(e.stderr)
    except BaseException:
        _stop_group(pgid)
        with contextlib.suppress(BaseException):
            proc.wait()
        raise


def _stop_group(pgid: int) -> None:
    """SIGTERM the process group ``pgid``, then SIGKILL it if it is still there after :data:`STOP_WAIT`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except OSError:
            return
        time.sleep(0.01)
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def _comment(text: str, width: int = 78) -> list[str]:
    return ["# " + line if line else "#" for line in textwrap.wrap(text, width - 2)] or ["#"]


def step_comment(step: Step, number: int | None = None) -> list[str]:
    """The ``#`` lines ``--explain`` prints before a step: its title, then why."""
    title = step.title[:1].upper() + step.title[1:] + "."
    head = f"{number}. {title}" if number is not None else title
    return [*_comment(head), *_comment(step.why)]


def undo_steps(steps: Iterable[Step], *, group: int | None = None) -> list[Step]:
    """Steps retitled for the down transcript (``--explain`` with ``down``): what each removal does.

    ``group``: the links are deleted as one link group (``teardown.py``);
    their steps say so, and the group's own step is added.
    """
    out = []
    into = " into the group of links to delete" if group is not None else ""
    for s in steps:
        if not s.down:
            out.append(s)
            continue
        c = s.down[0]
        args = c.args
        if c.tool in ("iptables", "ip6tables"):
            title = f"delete the rule{'s' if len(s.down) > 1 else ''} that up added"
            why = "-D deletes the first rule that matches exactly: the one up added."
        elif c.tool == "sysctl":
            key = args[-1].split("=", 1)[0]
            title = f"put {key} back"
            why = "Back to the value it had before up when bridgenet recorded it, else to the kernel default."
        elif args[:2] == ("netns", "del"):
            title = f"delete the namespace {args[2]}"
            why = "Deleting the namespace removes what is left in it: lo, its routes."
        elif args[:2] == ("link", "del") and "veth pair" in s.title:
            title = f"put the veth {args[2]}{into}" if into else f"delete the veth {args[2]} and with it its peer"
            why = ("Deleting a veth's host end removes its peer at once, before its namespace goes, so "
                   "both names are free right away (deleting only the namespace frees the host end later).")
        elif args[:2] == ("link", "del"):
            title = f"put the link {args[2]}{into}" if into else f"delete the link {args[2]}"
            why = "Deleting a bridge removes its address and its connected route, and unplugs its ports."
        else:
            title, why = f"undo: {s.title}", "Undo the step."
        out.append(attrs.evolve(s, title=title, why=why))
    if group is not None:
        from .teardown import group_step

        out.append(group_step(group))
    return out


class DryRunRunner:
    """Prints each command shell-quoted on its own line and runs nothing.

    Works on a machine without ``ip``. ``exec`` (state reads, checks) prints
    nothing and returns an empty success, so a dry-run plans against an
    empty host.

    Args:
        out: where to print (default ``sys.stdout``).
        sudo: put ``sudo`` in front of every printed command.
        explain: print ``#`` comment lines before each step (needs ``steps``).
        steps: the steps the commands belong to, to look up titles.
    """

    def __init__(self, out: IO[str] | None = None, *, sudo: bool = False, explain: bool = False,
                 steps: Iterable[Step] = ()) -> None:
        self.out = out if out is not None else sys.stdout
        self.sudo = sudo
        self.explain = explain
        self.steps = {s.key: s for s in steps}
        self.fs_root: str | None = None  # nothing is recorded on disk
        self._last_step: str | None = None
        self._numbers: dict[str, int] = {}

    def run(self, command: Command) -> Result:
        if self.explain and command.step != self._last_step and command.step in self.steps:
            n = self._numbers.setdefault(command.step, len(self._numbers) + 1)
            if n > 1:
                print(file=self.out)
            print("\n".join(step_comment(self.steps[command.step], n)), file=self.out)
        self._last_step = command.step
        print(command.shell(sudo=self.sudo), file=self.out)
        return Result(command.argv)

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result:
        return Result(tuple(argv))


class RecordingRunner:
    """Records commands instead of running them; for tests of the logic around runners.

    Args:
        fail: map from a command line (as ``Command.shell()`` prints it) to
            ``(exit_code, stderr)``; that command raises ``CommandError``.
        responses: map from an ``exec`` argv line to its stdout.
    """

    def __init__(self, fail: dict[str, tuple[int, str]] | None = None,
                 responses: dict[str, str] | None = None) -> None:
        self.fs_root: str | None = None
        self.commands: list[Command] = []
        self.execs: list[tuple[str, ...]] = []
        self.fail = dict(fail or {})
        self.responses = dict(responses or {})

    @property
    def lines(self) -> list[str]:
        """The recorded commands as shell lines."""
        return [c.shell() for c in self.commands]

    def run(self, command: Command) -> Result:
        self.commands.append(command)
        line = command.shell()
        if line in self.fail:
            code, err = self.fail[line]
            raise CommandError(command.argv, code, err)
        return Result(command.argv)

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result:
        argv = tuple(argv)
        self.execs.append(argv)
        return Result(argv, 0, self.responses.get(shlex.join(argv), ""))


def run_all(runner: Runner, commands: Iterable[Command]) -> list[Result]:
    """Run ``commands`` in order with ``runner``; stop at the first failure (it raises)."""
    return [runner.run(c) for c in commands]
