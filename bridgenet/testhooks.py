"""Fault injection for the tests of ``apply.up``: kill itself, or pause, after N commands (environment variables)."""

from __future__ import annotations

import os
import signal
import sys
import time

from . import interrupts

KILL_AFTER_ENV = "BRIDGENET_TEST_KILL_AFTER"
"""Fault injection for tests: ``up`` kills its own process with SIGKILL after
this many commands (in batch mode: 0 = after recording, before the batch;
any other value = after the batch, before marking it done)."""

PAUSE_AFTER_ENV = "BRIDGENET_TEST_PAUSE_AFTER"
"""Fault injection for tests: ``up`` prints ``bridgenet: paused`` to stderr and
waits (up to 60 s, or until a signal arrives) after this many commands, so a
test can signal it at a known point."""


def _kill_after() -> int | None:
    v = os.environ.get(KILL_AFTER_ENV)
    return int(v) if v not in (None, "") else None


def _die() -> None:  # pragma: no cover - the process ends here
    os.kill(os.getpid(), signal.SIGKILL)


def _maybe_pause(done: int) -> None:
    v = os.environ.get(PAUSE_AFTER_ENV)
    if v not in (None, "") and done == int(v):
        print("bridgenet: paused", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and interrupts.pending() is None:
            time.sleep(0.01)
