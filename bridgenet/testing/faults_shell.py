"""Many commands of a fault in ONE shell of the sandbox host, each one's exit code and output kept.

A fault over 5 namespaces reads (or changes) each of them; as processes of
their own through ``nsenter`` that costs ≈5 ms each, inside one ``sh`` ≈1.5
ms each (:func:`bridgenet.state.gather` measured it). A command inside a
namespace whose ``/run/netns`` entry is gone is not started (``[`` is built
into ``sh``) and comes back with ``present`` false: undoing a fault whose
namespace was already deleted is then nothing to do, not an error.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ..state import NETNS_DIR

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

_MARK = "@@bridgenet-fault"


@attrs.frozen
class FaultCommand:
    """One command of a fault: ``argv`` run in ``netns`` (None: the sandbox host), ``input`` on its stdin.

    Attributes:
        netns: the namespace it runs in (``ip netns exec NETNS ...``), None for the sandbox host.
        argv: the program and its arguments, e.g. ``("iptables-restore", "--noflush")``.
        input: the text fed to its standard input (an ``iptables-restore`` script), or None.
    """

    netns: str | None
    argv: tuple[str, ...] = attrs.field(converter=tuple)
    input: str | None = None

    @property
    def full_argv(self) -> tuple[str, ...]:
        """The argv as run from the sandbox host."""
        return ("ip", "netns", "exec", self.netns, *self.argv) if self.netns is not None else self.argv

    def shell(self) -> str:
        """The command as a shell line (a here-document for its input), as a person would type it."""
        line = shlex.join(self.full_argv)
        if self.input is None:
            return line
        return f"{line} <<'EOF'\n{self.input.rstrip(chr(10))}\nEOF"


@attrs.frozen
class Outcome:
    """What one command did: ``rc`` its exit code, ``out`` its output; ``present`` false when its
    namespace did not exist (the command was not started)."""

    rc: int
    out: str
    present: bool = True

    @property
    def ok(self) -> bool:
        return self.present and self.rc == 0


def _line(i: int, c: FaultCommand, err: str) -> str:
    cmd = shlex.join(c.full_argv)
    cmd = f"printf '%s\\n' {shlex.quote(c.input)} | {cmd} {err}" if c.input is not None \
        else f"{cmd} </dev/null {err}"
    if c.netns is not None:
        cmd = f"if [ -e {shlex.quote(NETNS_DIR + '/' + c.netns)} ]; then {cmd}; rc=$?; else rc=gone; fi"
    else:
        cmd = f"{cmd}; rc=$?"
    return f"echo '{_MARK} {i}'; {cmd}; echo; echo \"{_MARK}-end {i} $rc\""


def script(commands: Sequence[FaultCommand], *, merge_stderr: bool) -> str:
    """The ``sh`` script that runs ``commands``, each framed by markers with its exit code.

    The commands of one namespace run in order; the namespaces' run side by
    side (a background subshell each, its output in a file on the sandbox's
    own ``/run`` tmpfs, printed in order once all are done): a kernel that
    commits an nf_tables transaction or tears a chain down mostly waits
    (RCU), so five namespaces cost little more than one. With
    ``merge_stderr`` a command's standard error is part of its output (to
    report why it failed); without, it is discarded (for reads whose output
    is parsed).
    """
    err = "2>&1" if merge_stderr else "2>/dev/null"
    groups: dict[str | None, list[str]] = {}
    for i, c in enumerate(commands):
        groups.setdefault(c.netns, []).append(_line(i, c, err))
    if len(groups) == 1:
        return "\n".join(next(iter(groups.values()))) + "\n"
    lines = ["d=$(mktemp -d /run/bridgenet-fault.XXXXXX) || exit 1"]
    for g, body in enumerate(groups.values()):
        lines.append("( " + "\n".join(body) + f"\n) >\"$d/{g}\" &")
    lines += ["wait", *(f"cat \"$d/{g}\"" for g in range(len(groups))), "rm -rf \"$d\""]
    return "\n".join(lines) + "\n"


def parse(text: str, count: int) -> list[Outcome]:
    """The outcomes of :func:`script`'s ``count`` commands from its output (rc 1 for one that left no trace)."""
    results = [Outcome(1, "")] * count
    for m in re.finditer(rf"^{_MARK} (\d+)\n(.*?)\n?{_MARK}-end \1 (\d+|gone)$", text, re.M | re.S):
        i, rc = int(m.group(1)), m.group(3)
        results[i] = Outcome(1, "", False) if rc == "gone" else Outcome(int(rc), m.group(2))
    return results


def run(sandbox: Sandbox, commands: Sequence[FaultCommand], *, merge_stderr: bool = True) -> list[Outcome]:
    """Run ``commands`` in one ``sh -s`` inside the sandbox host; one :class:`Outcome` each, in order."""
    if not commands:
        return []
    r = sandbox.run(["sh", "-s"], input=script(commands, merge_stderr=merge_stderr), check=False)
    return parse(r.stdout, len(commands))


def read(sandbox: Sandbox, commands: Sequence[FaultCommand]) -> list[Outcome]:
    """:func:`run` for reads: standard error discarded, so the output is the program's alone."""
    return run(sandbox, commands, merge_stderr=False)


def loads(text: str) -> list[dict]:
    """The JSON list an ``ip -json``/``tc -json`` read printed; ``[]`` when it printed none."""
    try:
        return json.loads(text or "[]")
    except ValueError:
        return []
