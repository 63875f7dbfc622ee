"""Signals while bridgenet changes a host: deferred, never in the middle of a step.

A Python signal handler that raises would interrupt ``waitpid`` and leave the
command in flight running (seen: SIGTERM to ``up --batch`` 0.2 s into 50
containers, and the batch went on creating veths after the rollback had
read the state). Instead, while :func:`deferred` is active:

* the first SIGINT or SIGTERM is recorded and every child registered with
  :func:`child` (the process group of the command in flight, see
  ``runners.ShRunner``) gets SIGTERM; the runner waits for it to end and
  then raises :class:`Interrupted`, and ``up`` checks :func:`check` between
  commands;
* inside :func:`shielded` (a rollback, ``down``, ``clean``, the removals of
  a converging ``up``) a signal is recorded and reported but stops nothing;
  the first one is raised by the next :func:`check` once the shielded block
  is over: a second Ctrl-C does not abandon a rollback.

Only SIGKILL stops bridgenet at an arbitrary point; the state file is
written before each change, so ``bridgenet down`` or ``clean`` from a new
process finishes the job.

Handlers can be installed only in the main thread (signal(2) semantics of
Python's :mod:`signal`); elsewhere :func:`deferred` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from .errors import BridgenetError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BridgenetError):
    """A signal (SIGINT or SIGTERM) arrived while bridgenet was changing the host.

    Attributes:
        signum: the first signal's number (the CLI exits 128 + ``signum``).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class _State:
    def __init__(self) -> None:
        self.depth = 0
        self.signum: int | None = None
        self.children: set[int] = set()
        self.rolling_back = False
        self.old: dict[int, object] = {}


_state = _State()


def _handler(signum: int, frame: object) -> None:
    s = _state
    if s.depth == 0:  # pragma: no cover - a handler outlived its block
        raise Interrupted(signum)
    if s.signum is None:
        s.signum = signum  # raised at the next check() outside a shielded block
        if not s.rolling_back:
            for pgid in list(s.children):
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGTERM)
            return
    with contextlib.suppress(OSError, ValueError):
        os.write(sys.stderr.fileno(), f"bridgenet: {signal.Signals(signum).name} received; finishing what is under "
                 "way first (kill -9 would leave it to `bridgenet down` or `clean`)\n".encode())


@contextlib.contextmanager
def deferred(*, raise_pending: bool = True) -> Iterator[None]:
    """Defer SIGINT/SIGTERM for the ``with`` block (nestable; main thread only).

    On leaving the outermost block the previous handlers come back; with
    ``raise_pending``, a signal recorded but not yet raised is raised then as
    :class:`Interrupted` (unless the block is leaving with an exception
    already).
    """
    s = _state
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if s.depth == 0:
        s.signum, s.rolling_back = None, False
        s.old = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    s.depth += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        s.depth -= 1
        if s.depth == 0:
            for sig, h in s.old.items():
                signal.signal(sig, h)  # type: ignore[arg-type]
            pending, s.signum = s.signum, None
            s.rolling_back = False
            if ok and pending is not None and raise_pending:
                raise Interrupted(pending)


def pending() -> int | None:
    """The signal recorded and not yet raised, or None."""
    return _state.signum


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (and we are not rolling back)."""
    s = _state
    if s.signum is not None and not s.rolling_back:
        raise Interrupted(s.signum)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """While undoing (a rollback, `down`, `clean`): signals are counted, never raised, children finish."""
    s = _state
    was = s.rolling_back
    s.rolling_back = True
    try:
        yield
    finally:
        s.rolling_back = was


@contextlib.contextmanager
def child(pgid: int) -> Iterator[None]:
    """Register the process group ``pgid`` as in flight: a first signal stops it (SIGTERM)."""
    s = _state
    s.children.add(pgid)
    try:
        if s.signum is not None and not s.rolling_back:  # arrived before it started
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGTERM)
        yield
    finally:
        s.children.discard(pgid)
