"""Runners that run nothing: :class:`DryRunRunner` prints, :class:`RecordingRunner` records; and the ``--explain`` comments."""

from __future__ import annotations

import shlex
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import IO

import attrs

from ..commands import Command, Step
from ..errors import CommandError
from .base import Result


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
        from ..teardown import group_step

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
