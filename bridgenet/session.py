"""One long-lived shell that runs commands one process each: the step-by-step mode at the speed of bash.

Each command started through the ``sh`` package costs ≈16 ms of Python here
(it forks this interpreter and starts threads to read the child's output),
against ≈2.5 ms for bash starting the same program. The step-by-step mode
runs one process per command, the lesson's way; a network of 100 containers
is about 900 of them. :class:`ShellSession` starts ONE ``sh -s`` through the
``sh`` package and writes each command to its standard input; the shell
starts the command (one process, as bash would) and then writes a marker
with its exit status to standard output and to standard error. So each
command is still its own process, with its own exit code, stdout and
stderr, at ≈1.7 ms each (measured here).

The shell runs in a session (process group) of its own, registered with
:mod:`bridgenet.interrupts` while a command is in flight: a SIGINT/SIGTERM
stops the shell and the command, as for any other child; the next command
starts a new shell. The shell ends when its standard input closes
(:meth:`close`, or this process ending).
"""

from __future__ import annotations

import queue
import shlex
import threading
from collections.abc import Sequence

from . import interrupts

_END = "@@bridgenet-end"
"""The marker line the shell writes after each command (``@@bridgenet-end STATUS`` on stdout)."""


class ShellSession:
    """A shell fed commands one at a time (see the module docstring).

    Args:
        prefix: argv that starts the shell's environment, e.g. the
            ``nsenter ...`` entering a sandbox (the shell runs inside it).
    """

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = tuple(prefix)
        self._proc = None
        self._in: queue.Queue[str | None] | None = None
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        self._status: int | None = None
        self._err_done = False
        self._event = threading.Event()
        self._ended = False
        self._exit_code: int | None = None

    # --- callbacks from sh's reader threads ---

    def _on_out(self, line: str) -> None:
        with self._lock:
            if line.startswith(_END + " "):
                self._status = int(line.split()[1])
                self._event.set()
            else:
                self._out.append(line)

    def _on_err(self, line: str) -> None:
        with self._lock:
            if line.rstrip("\n") == _END:
                self._err_done = True
                self._event.set()
            else:
                self._err.append(line)

    def _on_done(self, cmd, success, exit_code) -> None:  # noqa: ANN001
        with self._lock:
            self._ended, self._exit_code = True, exit_code
            self._event.set()

    # ---

    def _start(self) -> None:
        import sh

        self._in = queue.Queue()
        self._ended, self._exit_code = False, None
        argv = (*self.prefix, "sh", "-s")
        self._proc = sh.Command(argv[0])(
            *argv[1:], _in=self._in, _out=self._on_out, _err=self._on_err, _done=self._on_done, _bg=True,
            _bg_exc=False, _new_session=True, _tty_out=False, _out_bufsize=1, _err_bufsize=1, _in_bufsize=0,
            _ok_code=range(256))

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._ended

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        """Run ``argv`` (its own process, stdin from /dev/null); return (exit code, stdout, stderr).

        A command killed by a signal returns ``-SIGNAL`` as its code when the
        shell reports it, or 128 + the signal number when the shell itself
        was stopped (interrupt): the next call starts a new shell.
        """
        if not self.alive:
            self._start()
        assert self._proc is not None and self._in is not None
        with self._lock:
            self._out, self._err, self._status, self._err_done = [], [], None, False
            self._event.clear()
        line = (f"{shlex.join(argv)} </dev/null; printf '\\n{_END} %d\\n' $?; "
                f"printf '\\n{_END}\\n' >&2\n")
        self._in.put(line)
        with interrupts.child(self._proc.pid):
            while True:
                self._event.wait(0.5)
                with self._lock:
                    self._event.clear()
                    if (self._status is not None and self._err_done) or self._ended:
                        break
        with self._lock:
            out, err = "".join(self._out), "".join(self._err)
            status, ended = self._status, self._ended
        if status is None or (ended and not self._err_done):
            code = self._exit_code if self._exit_code is not None else 1
            return (code if code >= 0 else 128 - code), out, err
        # each marker follows a newline of its own; take that newline back off
        return status, out[:-1] if out.endswith("\n") else out, err[:-1] if err.endswith("\n") else err

    def close(self) -> None:
        """End the shell (its standard input closes) and wait for it."""
        if self._proc is not None and self._in is not None and not self._ended:
            self._in.put(None)
            try:
                self._proc.wait()
            except Exception:  # noqa: BLE001 - ending anyway
                pass
        self._proc = None
