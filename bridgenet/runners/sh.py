"""The real runner: :class:`ShRunner` runs commands through the ``sh`` package, one process group each."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Sequence

from .. import interrupts
from ..commands import Command
from ..errors import CommandError, NotInSandboxError
from .base import REQUIRE_SANDBOX_ENV, Isolated, Result, inside_sandbox, sandbox_required


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
            from ..session import ShellSession

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
