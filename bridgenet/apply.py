"""Bring a network up or down on a host (PROVISIONAL: full safe-apply comes with issue 4).

Public calls (signatures are stable):

* ``up(network, runner, *, batch=False, force=False, progress=None) -> Report``
* ``down(network, runner, *, batch=False, force=False) -> Report``
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .commands import Command
from .errors import RolledBackError
from .network import Network
from .runners import Runner


@attrs.frozen
class Report:
    """What ``up``/``down`` did: the commands run, and how many were already in place."""

    ran: tuple[Command, ...] = ()
    in_place: int = 0


def _execute(runner: Runner, commands: list[Command], *, batch: bool, direction: str,
             progress: Callable[[int, int], None] | None = None) -> None:
    if batch:
        from .batch import BatchRunner

        BatchRunner(runner).execute(commands, direction=direction)
        return
    for i, c in enumerate(commands):
        runner.run(c)
        if progress:
            progress(i + 1, len(commands))


def up(network: Network, runner: Runner, *, batch: bool = False, force: bool = False,
       progress: Callable[[int, int], None] | None = None) -> Report:
    """Bring ``network`` up with ``runner``; on failure undo what was done and raise RolledBackError."""
    steps = network.steps(fast=batch)
    cmds = [c for s in steps for c in s.up]
    try:
        _execute(runner, cmds, batch=batch, direction="up", progress=progress)
    except BaseException as e:
        undo = network.down_commands(steps)
        done = []
        for c in undo:
            try:
                runner.run(c)
                done.append(c)
            except Exception:
                pass
        raise RolledBackError(e, done) from e
    return Report(tuple(cmds))


def down(network: Network, runner: Runner, *, batch: bool = False, force: bool = False) -> Report:
    """Take ``network`` down with ``runner``."""
    cmds = network.down_commands()
    _execute(runner, cmds, batch=batch, direction="down")
    return Report(tuple(cmds))
