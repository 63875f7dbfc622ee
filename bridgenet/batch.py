"""Run a command list with as few processes as possible.

A network of N containers is about 9 N commands; run one process each, they
cost 2-6 ms apiece in process start-up alone. :class:`BatchRunner` turns the
list into a *plan*: a short list of :class:`Invocation` values (an argv plus
the text it reads on standard input):

* every ``ip`` command of the host in ONE ``ip -batch -`` (ip(8) ``-batch``);
* every ``ip`` command inside namespace NS in ONE ``ip -n NS -batch -`` per
  namespace, in the order the namespaces first appear (ip(8) takes no
  per-line ``-n`` inside a batch file); from :data:`NSENTER_MIN` namespaces
  on, ``nsenter --net=/run/netns/NS ip -batch -`` instead (same effect, see
  :data:`NSENTER_MIN` for why);
* every host ``sysctl -w KEY=VALUE`` in ONE ``sysctl -w K=V [K=V ...]``
  (sysctl(8));
* every host ``iptables [-t TABLE] -A|-D|-I CHAIN ...``, ``-N CHAIN`` and
  ``-X CHAIN`` in ONE ``iptables-restore --noflush -w`` fed a restore file
  (``*TABLE``, the rules, ``COMMIT``; iptables-restore(8));
* anything else alone, as the command itself: a ``sysctl`` or ``iptables``
  inside a namespace (after the host's), another form of ``sysctl`` or
  ``iptables`` (where it stands among the host's, which then take more than
  one process), another tool (last going up, first going down).

Order. Going ``up``: host ``ip`` batch, namespace batches, a second host
batch that plugs the veths' host ends into their bridges (``master``, ``up``),
sysctl, iptables;
going ``down``: iptables, sysctl, namespace batches, host ``ip`` batch. This
is valid for the commands bridgenet renders: going up, a namespace's
commands need the namespace and the links the host side makes, and nothing
in the host needs what happens inside a namespace; sysctl and NAT need no
link. Going down it is the mirror image. Inside each group the commands keep
their order. (A general command list for which this is not true needs the
step-by-step runner.) Plugging the ports in last is measured to be faster:
with the peers already up, each port comes up with carrier at once, and the
namespaces' batches do not pay for carrier changes on a bridge with many
ports (at 1000 containers, 3.96 s against 5.72 s for the hand-written order).

One plan, two renderings: :meth:`BatchRunner.script` prints the plan as a
shell script with quoted here-documents; :meth:`BatchRunner.execute` runs
it, by default as that same script in one ``sh`` (see ``one_shell``).

Facts this relies on (iproute2 6.1, iptables 1.8.9, see KERNEL-NOTES):
``ip -batch`` stops at its first failing line with exit status 1 and runs
nothing after it; it reads ``#`` anywhere on a line as the start of a
comment and a word that starts with ``'`` or ``"`` as quoted up to the
same quote (lib/utils.c ``getcmdline``/``makeargs``). ``iptables-restore``
reads ``"..."`` with backslash escapes as one argument (xshared.c
``add_param_to_argv``); with the nf_tables backend it commits each run as
one transaction. In a restore file with ``--noflush``, a line ``-N CHAIN``
creates a chain and fails ("Chain already exists") when it exists, and
``-X CHAIN`` deletes one; the declaration form ``:CHAIN - [0:0]`` instead
*flushes* an existing chain (measured here with iptables 1.8.9 nf_tables),
which would wipe other networks' rules in a shared chain: it is never used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import attrs

from .commands import Command, shell_join
from .errors import BatchError, CommandError, ValidationError
from .gcpause import paused
from .jobs import JOBS, partition
from .runners import Runner

DIRECTIONS = ("up", "down")
"""Values of the ``direction`` argument."""

IPTABLES_RESTORE = ("iptables-restore", "--noflush", "-w")
"""The restore command: keep existing rules (``--noflush``), wait for the xtables lock (``-w``)."""

PROGRESS_UPDATES = 20
"""With one shell and a progress callback, the plan runs in about this many chunks."""

SH_C_LIMIT = 120_000
"""Largest script (bytes) run as ``sh -c SCRIPT``; larger ones go to ``sh -s`` on stdin."""

NSENTER_MIN = 256
"""From this many namespaces in one plan on, a namespace's batch runs as
``nsenter --net=/run/netns/NS ip -batch -`` (nsenter(1)) rather than ``ip -n NS -batch -``.

``ip -n`` does more than enter the namespace: it unshares a mount namespace
(copying the whole mount table, which holds one bind mount per named
namespace) and remounts /sys in it (ip(8) ``-netns``; iproute2 lib/namespace.c
``netns_switch``). None of that matters to ``addr``/``link``/``route`` lines,
and its cost grows with the number of namespaces on the host. Measured here
(issue 10, 100 commands each): with 100 namespaces, ``ip -n`` 2.2-2.4 ms and
``nsenter ... ip`` 2.2-2.5 ms per process; with 1000, ``ip -n`` 4.9-5.2 ms and
``nsenter ... ip`` 2.6-2.8 ms. Small networks keep the shorter, teaching form.
"""

NETNS_RUN_DIR = "/run/netns"
"""Where ip-netns(8) keeps a named namespace's file (``NETNS_RUN_DIR/NAME``)."""

_MARK = "@@bridgenet-batch"
"""Start of the line the one-shell script writes to stderr before each process."""

_FAILED = "@@bridgenet-batch-failed"
"""Start of the line a parallel job writes to stderr after a process of it failed."""

_PORT_STEP = "port "
"""Steps that plug a veth's host end into its bridge (``model.VethPair.port_key``)."""

_IPTABLES_OPS = {"-A": "-A", "--append": "-A", "-D": "-D", "--delete": "-D", "-I": "-I", "--insert": "-I"}
_IPTABLES_CHAIN_OPS = {"-N": "-N", "--new-chain": "-N", "-X": "-X", "--delete-chain": "-X"}


@attrs.frozen
class Invocation:
    """One process of a plan.

    Attributes:
        argv: the program and its arguments, e.g. ``("ip", "-n", "c1", "-batch", "-")`` (or
            ``("nsenter", "--net=/run/netns/c1", "ip", "-batch", "-")``, :data:`NSENTER_MIN`).
        input: the text it reads on standard input (a batch or restore file,
            ending in a newline), or None when it reads nothing.
        commands: the bridgenet commands it carries, in order.
        kind: ``"ip"``, ``"ip-netns"``, ``"sysctl"``, ``"iptables"`` (a
            batch), or ``"alone"`` (one command run as itself).
        job: None for a process of the main sequence; for one of the
            parallel jobs (``jobs.py``), the job's number (0, 1, ...).
    """

    argv: tuple[str, ...]
    input: str | None
    commands: tuple[Command, ...]
    kind: str
    job: int | None = None

    @property
    def netns(self) -> str | None:
        """The namespace a ``"ip-netns"`` batch runs in (None for the others)."""
        return self.commands[0].netns if self.kind == "ip-netns" and self.commands else None

    @property
    def lines(self) -> tuple[str, ...]:
        """The input, one entry per line (empty when there is no input)."""
        return tuple(self.input.splitlines()) if self.input is not None else ()


# --- encoding one command as a line of a batch file ----------------------------------


def _unbatchable(command: Command, arg: str, why: str) -> ValidationError:
    return ValidationError(f"Command {command.shell()}", "args", why, arg)


_PLAIN_LINE = re.compile(r"[^#\n\0\t\r\v\f'\"]*").fullmatch
"""Matches a line with no character that makes ``ip_batch_line`` quote a word or refuse it, but space."""


_PLAIN_TEXT = re.compile(r"[^#\0\t\r\v\f'\"]*").fullmatch
"""The same for a batch file of such lines (newlines allowed)."""


def ip_batch_line(command: Command) -> str:
    """``command``'s arguments as one line of an ``ip -batch`` file (no trailing newline).

    A word with whitespace, or empty, or starting with a quote, is put in
    quotes; ``ip`` has no escapes inside quotes (lib/utils.c ``makeargs``).

    Raises:
        ValidationError: an argument holds ``#`` (``ip`` cuts the line
            there), a newline or NUL, or needs quoting but holds both kinds
            of quote.
    """
    args = command.args
    try:
        line = " ".join(args)
    except TypeError:  # not all text: the loop below says how
        line = None
    # Fast path: no argument needs quoting or is refused (none is empty, none holds a space: the
    # line has exactly the spaces that join the words), so the line is the words as they are.
    if line is not None and _PLAIN_LINE(line) is not None and line.count(" ") == len(args) - 1 \
            and "" not in args:
        return line
    return _quoted_line(command)


def _quoted_line(command: Command) -> str:
    """:func:`ip_batch_line`, word by word."""
    words = []
    for a in command.args:
        if "#" in a or "\n" in a or "\0" in a:
            raise _unbatchable(command, a, "an ip -batch line cannot carry '#' (a comment), a newline or NUL")
        if a and a[0] not in "'\"" and not any(ch in a for ch in " \t\r\v\f"):
            words.append(a)
        elif "'" not in a:
            words.append(f"'{a}'")
        elif '"' not in a:
            words.append(f'"{a}"')
        else:
            raise _unbatchable(command, a, "an ip -batch word cannot hold both ' and \" when it needs quoting")
    return " ".join(words)


def _restore_word(command: Command, a: str) -> str:
    if "\n" in a or "\0" in a:
        raise _unbatchable(command, a, "an iptables-restore line cannot carry a newline or NUL")
    if a and not any(ch in a for ch in ' \t\r\v\f"\\'):
        return a
    return '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'


def iptables_restore_rule(command: Command) -> tuple[str, str] | None:
    """``(table, line)`` for ``iptables [-t TABLE] -A|-D|-I CHAIN ...`` or ``-N|-X CHAIN``, else None.

    ``iptables -t nat -A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE`` gives
    ``("nat", "-A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE")``; the table
    defaults to ``filter`` (iptables(8)). Only the forms above translate
    (``-t`` first if present); None means "run it as itself".

    Raises:
        ValidationError: an argument holds a newline or NUL.
    """
    if command.tool != "iptables":
        return None
    args = list(command.args)
    table = "filter"
    if len(args) >= 2 and args[0] in ("-t", "--table"):
        table = args[1]
        args = args[2:]
    if len(args) == 2 and args[0] in _IPTABLES_CHAIN_OPS and not args[1].startswith("-"):
        return table, f"{_IPTABLES_CHAIN_OPS[args[0]]} {_restore_word(command, args[1])}"
    if len(args) < 2 or args[0] not in _IPTABLES_OPS or args[1].startswith("-"):
        return None
    if any(a in ("-t", "--table", "-w", "--wait", "-W", "--wait-interval") for a in args[2:]):
        return None
    words = [_IPTABLES_OPS[args[0]], *(_restore_word(command, a) for a in args[1:])]
    return table, " ".join(words)


def _sysctl_settings(command: Command) -> list[str] | None:
    """The ``KEY=VALUE`` words of ``sysctl -w KEY=VALUE [...]``, else None (sysctl(8))."""
    if command.tool != "sysctl" or len(command.args) < 2 or command.args[0] != "-w":
        return None
    settings = list(command.args[1:])
    if not all("=" in s and not s.startswith("-") for s in settings):
        return None
    return settings


# --- planning -------------------------------------------------------------------------


def _alone(c: Command) -> Invocation:
    return Invocation(c.argv, None, (c,), "alone")


def _plain_lines(cmds: list[Command]) -> list[str] | None:
    """``[ip_batch_line(c) for c in cmds]`` when no word needs quoting or is refused, else None.

    Then each line is the words joined by spaces, and one look at all the
    lines tells: no character of those, exactly one newline per command and
    one space between words, no empty word.
    """
    try:
        args = [c.args for c in cmds]
        lines = [" ".join(a) for a in args]
    except TypeError:  # not all text: the per-command path says how
        return None
    text = "\n".join(lines) + "\n"
    # the counts leave no room for a newline or a space inside a word, or for a command without one;
    # an empty word then shows as a line starting or ending with a space, two spaces, or an empty line
    if _PLAIN_TEXT(text) is not None and text.count("\n") == len(args) \
            and text.count(" ") == sum(map(len, args)) - len(args) and not _has_empty_word(text):
        return lines
    return None


def _has_empty_word(text: str) -> bool:
    """Whether lines of words joined by single spaces (each line ending in a newline) hold an empty word:
    a line that is empty, starts or ends with a space, or has two spaces in a row."""
    return text.startswith((" ", "\n")) or "\n\n" in text or "\n " in text or " \n" in text or "  " in text


def _batch_text(cmds: list[Command], lines: list[str] | None = None) -> str:
    """The ``ip -batch`` file of ``cmds``: :func:`ip_batch_line` of each, each ending in a newline.

    ``lines``: those lines if already known to be plain (:func:`_plain_lines`).
    """
    if lines is None:
        lines = _plain_lines(cmds)
    if lines is not None:
        return "\n".join(lines) + "\n"
    return "".join([ip_batch_line(c) + "\n" for c in cmds])


def _ip_phase(cmds: list[Command], netns: str | None, lines: list[str] | None = None,
              job: int | None = None, *, nsenter: bool = False) -> Invocation:
    text = _batch_text(cmds, lines)
    if netns is None:
        return Invocation(("ip", "-batch", "-"), text, tuple(cmds), "ip", job)
    if nsenter:
        argv: tuple[str, ...] = ("nsenter", f"--net={NETNS_RUN_DIR}/{netns}", "ip", "-batch", "-")
    else:
        argv = ("ip", "-n", netns, "-batch", "-")
    return Invocation(argv, text, tuple(cmds), "ip-netns", job)


def _plain_parts(groups: list[list[Command]]) -> list[list[str] | None]:
    """For each group of ``ip`` commands, its lines when all of the plan's are plain (one look at all
    of them, :func:`_plain_lines`), else None for each (then each group is written on its own)."""
    lines = _plain_lines([c for g in groups for c in g])
    if lines is None:
        return [None] * len(groups)
    parts: list[list[str] | None] = []
    at = 0
    for g in groups:
        parts.append(lines[at:at + len(g)])
        at += len(g)
    return parts


def _merged_phase(cmds: list[Command], translate: Callable[[Command], object | None],
                  merge: Callable[[list[tuple[Command, object]]], Invocation]) -> list[Invocation]:
    """Merge the host's commands that ``translate`` accepts into one process each run of them.

    A host command ``translate`` refuses (None) runs as itself and closes the
    run, so the host's order is kept; a command inside a namespace runs alone
    after them (another namespace is independent of the host's settings).
    """
    out: list[Invocation] = []
    inside: list[Invocation] = []
    run: list[tuple[Command, object]] = []
    for c in cmds:
        if c.netns is not None:
            inside.append(_alone(c))
            continue
        item = translate(c)
        if item is None:
            if run:
                out.append(merge(run))
                run = []
            out.append(_alone(c))
        else:
            run.append((c, item))
    if run:
        out.append(merge(run))
    return out + inside


def _sysctl_merge(run: list[tuple[Command, object]]) -> Invocation:
    words = [w for _, settings in run for w in settings]  # type: ignore[attr-defined]
    return Invocation(("sysctl", "-w", *words), None, tuple(c for c, _ in run), "sysctl")


def _restore(run: list[tuple[Command, object]]) -> Invocation:
    tables: dict[str, list[str]] = {}
    for _, (table, line) in run:  # type: ignore[misc]
        tables.setdefault(table, []).append(line)
    text = "".join(f"*{t}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n" for t, lines in tables.items())
    return Invocation(IPTABLES_RESTORE, text, tuple(c for c, _ in run), "iptables")


def plan(commands: Sequence[Command], *, direction: str = "up", jobs: int = JOBS) -> tuple[Invocation, ...]:
    """The processes that run ``commands``, in order (see the module docstring for the rule).

    Args:
        commands: bridgenet commands, e.g. ``network.up_commands(fast=True)``
            or ``network.down_commands()``.
        direction: ``"up"`` or ``"down"``; sets the order of the groups.
        jobs: going up, split the namespaces' processes into this many jobs
            that run at the same time (``jobs.py``, default :data:`~bridgenet.jobs.JOBS`; 1: none). Their
            invocations carry ``job`` and come together after the host's.

    Returns:
        the plan, a tuple of :class:`Invocation`; empty for no commands.

    Raises:
        ValueError: ``direction`` is neither ``"up"`` nor ``"down"``.
        ValidationError: a command cannot be written as a batch line.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction is 'up' or 'down', not {direction!r}")
    with paused():
        split = partition(commands, jobs) if direction == "up" else None
        if split is not None:
            return _plan_in_jobs(commands, *split)
        return _plan(commands, direction)


def _plan(commands: Sequence[Command], direction: str) -> tuple[Invocation, ...]:
    host: list[Command] = []
    plug: list[Command] = []
    inside: dict[str, list[Command]] = {}
    sysctls: list[Command] = []
    rules: list[Command] = []
    other: list[Command] = []
    for c in commands:
        tool = c.tool
        if tool == "ip":
            if c.netns is None:
                (plug if direction == "up" and c.step.startswith(_PORT_STEP) else host).append(c)
            else:
                ns_cmds = inside.get(c.netns)
                if ns_cmds is None:
                    ns_cmds = inside[c.netns] = []
                ns_cmds.append(c)
        elif tool == "sysctl":
            sysctls.append(c)
        elif tool == "iptables":
            rules.append(c)
        else:
            other.append(c)
    # all ip lines looked at once: when they are all plain, each batch file is its lines joined
    part = iter(_plain_parts([g for g in (host, plug, *inside.values()) if g]))
    p_host = [_ip_phase(host, None, next(part))] if host else []
    p_plug = [_ip_phase(plug, None, next(part))] if plug else []
    nsenter = len(inside) >= NSENTER_MIN
    p_inside = [_ip_phase(cmds, ns, next(part), nsenter=nsenter) for ns, cmds in inside.items()]
    p_sysctl = _merged_phase(sysctls, _sysctl_settings, _sysctl_merge)
    p_rules = _merged_phase(rules, iptables_restore_rule, _restore)
    p_other = [_alone(c) for c in other]
    if direction == "up":
        return (*p_host, *p_inside, *p_plug, *p_sysctl, *p_rules, *p_other)
    return (*p_other, *p_rules, *p_sysctl, *p_inside, *p_host)


def _plan_in_jobs(commands: Sequence[Command], job_of: dict[str, int], host_job: dict[int, int]
                  ) -> tuple[Invocation, ...]:
    """The up plan with the namespaces' work in parallel jobs (see ``jobs.py``).

    Order: the host's ``ip`` commands of no job; then each job (its host
    commands, its namespaces' batches, its bridge ports); then sysctl,
    iptables and other tools as in :func:`plan`.
    """
    host: list[Command] = []
    n_jobs = max(job_of.values()) + 1
    job_host: list[list[Command]] = [[] for _ in range(n_jobs)]
    job_plug: list[list[Command]] = [[] for _ in range(n_jobs)]
    job_inside: list[dict[str, list[Command]]] = [{} for _ in range(n_jobs)]
    sysctls: list[Command] = []
    rules: list[Command] = []
    other: list[Command] = []
    for i, c in enumerate(commands):
        if c.tool == "ip":
            ns = c.netns
            if ns is not None:
                cmds_of = job_inside[job_of[ns]]
                cmds = cmds_of.get(ns)
                if cmds is None:
                    cmds = cmds_of[ns] = []
                cmds.append(c)
            elif i in host_job:
                j = host_job[i]
                (job_plug[j] if c.step.startswith(_PORT_STEP) else job_host[j]).append(c)
            else:
                host.append(c)
        elif c.tool == "sysctl":
            sysctls.append(c)
        elif c.tool == "iptables":
            rules.append(c)
        else:
            other.append(c)
    # all ip lines looked at once, in the order the processes come (which is the order errors come in)
    groups = [host] if host else []
    for j in range(n_jobs):
        groups += ([job_host[j]] if job_host[j] else []) + list(job_inside[j].values()) + (
            [job_plug[j]] if job_plug[j] else [])
    part = iter(_plain_parts(groups))
    nsenter = sum(len(d) for d in job_inside) >= NSENTER_MIN
    out = [_ip_phase(host, None, next(part))] if host else []
    for j in range(n_jobs):
        out += ([_ip_phase(job_host[j], None, next(part), j)] if job_host[j] else []) + [
            _ip_phase(cmds, ns, next(part), j, nsenter=nsenter) for ns, cmds in job_inside[j].items()] + (
            [_ip_phase(job_plug[j], None, next(part), j)] if job_plug[j] else [])
    return (*out, *_merged_phase(sysctls, _sysctl_settings, _sysctl_merge),
            *_merged_phase(rules, iptables_restore_rule, _restore), *(_alone(c) for c in other))


# --- rendering as shell -----------------------------------------------------------------


def _delimiter(text: str) -> str:
    if "EOF" not in text:  # then no line is EOF, EOF1, ...
        return "EOF"
    lines = set(text.splitlines())
    word, n = "EOF", 0
    while word in lines:
        n += 1
        word = f"EOF{n}"
    return word


def _render_one(inv: Invocation, i: int, *, marks: bool, sudo: bool) -> str:
    out = f"echo '{_MARK} {i}' >&2\n" if marks else ""
    line = shell_join(("sudo", *inv.argv) if sudo else inv.argv)
    if inv.input is None and marks:
        line += " </dev/null"
    if marks and inv.job is not None:
        # in a job, set -e would end the job without saying which process failed
        eof = _delimiter(inv.input) if inv.input is not None else ""
        heredoc = f" <<'{eof}'" if inv.input is not None else ""
        line += f"{heredoc} || {{ rc=$?; echo \"{_FAILED} {i} $rc\" >&2; exit $rc; }}"
        return out + line + "\n" + (f"{inv.input}{eof}\n" if inv.input is not None else "")
    if inv.input is None:
        return out + line + "\n"
    eof = _delimiter(inv.input)
    return out + f"{line} <<'{eof}'\n{inv.input}{eof}\n"


def render_shell(invocations: Sequence[Invocation], *, marks: bool = False, start: int = 0,
                 sudo: bool = False) -> str:
    """The plan as POSIX shell text: ``set -e``, then each process, input as a quoted here-document.

    Invocations of parallel jobs (``Invocation.job``) become one subshell per
    job started in the background (``( ... ) &``), then a ``wait`` for each;
    the script fails if any job failed.

    Args:
        marks: for execution: before each process write ``@@bridgenet-batch I``
            to stderr (I counts from ``start``), after a failing process in a
            job ``@@bridgenet-batch-failed I CODE``, and give processes
            without input ``</dev/null`` so none can read the script itself.
        sudo: put ``sudo`` in front of each process (for printing).
    """
    out = ["set -e\n"]
    invs = list(invocations)
    k = 0
    while k < len(invs):
        if invs[k].job is None:
            out.append(_render_one(invs[k], start + k, marks=marks, sudo=sudo))
            k += 1
            continue
        section: dict[int, list[str]] = {}  # each job's processes, rendered, in order
        while k < len(invs) and invs[k].job is not None:
            inv = invs[k]
            rendered = section.get(inv.job)  # type: ignore[arg-type]
            if rendered is None:
                rendered = section[inv.job] = []  # type: ignore[index]
            rendered.append(_render_one(inv, start + k, marks=marks, sudo=sudo))
            k += 1
        jobs = sorted(section)
        out.append(f"# {len(jobs)} jobs at once, each in a subshell of its own; then wait for every one\n")
        for j in jobs:
            out.append("(\n")
            out.extend(section[j])
            out.append(f") &\njob{j + 1}=$!\n")
        out.append("failed=\n")
        out.extend(f'wait "$job{j + 1}" || failed=1\n' for j in jobs)
        out.append('[ -z "$failed" ] || exit 1\n')
    return "".join(out)


def _after_last_mark(stderr: str) -> tuple[int | None, str]:
    """``(index of the process that failed, what it wrote to stderr)``, as far as the marks tell.

    A failure mark (from a job) names the process; its stderr is what came
    after that process's own mark, other marks left out (processes that
    succeed write nothing there). Without one, the failed process is the
    last marked.
    """
    lines = stderr.splitlines(keepends=True)
    failed: int | None = None
    end = len(lines)
    for n, line in enumerate(lines):
        if line.startswith(_FAILED + " "):
            try:
                failed = int(line[len(_FAILED) + 1:].split()[0])
            except (ValueError, IndexError):
                continue
            end = n
            break
    index: int | None = None
    tail: list[str] = []
    for line in lines[:end]:
        if line.startswith(_MARK + " "):
            try:
                i = int(line[len(_MARK) + 1:].strip())
            except ValueError:
                tail.append(line)
                continue
            if failed is None or i == failed:
                index, tail = i, []
        elif not line.startswith(_FAILED + " "):
            tail.append(line)
    if failed is not None:
        index = failed
    return index, "".join(tail)


# --- running --------------------------------------------------------------------------


class BatchRunner:
    """Runs command lists through a runner with the fewest processes.

    Args:
        runner: a runner (``ShRunner``, ``Sandbox.runner()``,
            ``DryRunRunner``, ``RecordingRunner``); this class only calls its
            ``exec(argv, input=..., check=...)`` and ``run(command)``.
        one_shell: True (default): run the plan as one ``sh -c SCRIPT``
            (``sh -s`` with the script on stdin beyond ``SH_C_LIMIT``
            bytes) where SCRIPT is :meth:`script` plus marks, so the runner
            starts ONE process (``ip`` and the rest are then started by that
            shell, ≈1.5 ms each instead of ≈5 ms through ``sh`` and
            ``nsenter``; measured by ``scripts/bench``). False: one
            ``runner.exec`` per process of the plan (``runner.run`` for a
            command that runs alone), jobs one after the other.
        jobs: going up, how many parallel jobs configure the namespaces
            (``jobs.py``; 1: none). Default :data:`bridgenet.jobs.JOBS`.

    Example::

        with Sandbox() as sb:
            BatchRunner(sb.runner()).execute(net.up_commands(fast=True))
    """

    def __init__(self, runner: Runner, *, one_shell: bool = True, jobs: int = JOBS) -> None:
        self.runner = runner
        self.one_shell = one_shell
        self.jobs = jobs

    def plan(self, commands: Sequence[Command], *, direction: str = "up") -> tuple[Invocation, ...]:
        """See :func:`plan`."""
        return plan(commands, direction=direction, jobs=self.jobs)

    def script(self, commands: Sequence[Command], *, direction: str = "up", sudo: bool = False) -> str:
        """The dry-run: what :meth:`execute` runs, as copy-pasteable shell (``set -e`` first).

        Raises:
            ValueError, ValidationError: as :func:`plan`.
        """
        return render_shell(plan(commands, direction=direction, jobs=self.jobs), sudo=sudo)

    def execute(self, commands: Sequence[Command], *, direction: str = "up",
                progress: Callable[[int, int], None] | None = None) -> None:
        """Run ``commands`` as the plan says; stop at the first process that fails.

        Args:
            commands: bridgenet commands (for ``up``, render with
                ``fast=True``: it creates each veth peer inside its namespace).
            direction: ``"up"`` or ``"down"``.
            progress: called as ``progress(done, total)`` with counts of
                processes of the plan: ``(0, total)`` first, then after each
                process (``one_shell=False``) or chunk of about
                ``total / PROGRESS_UPDATES`` processes (``one_shell=True``).

        Raises:
            BatchError: a process failed: ``argv`` is that process,
                ``exit_code``/``stderr`` its own, ``lines`` its input and
                ``commands`` the commands it carried. The processes before
                it have run; of its own lines, those before the failing one
                may have taken effect (``ip -batch``): re-read live state.
            ValueError, ValidationError: as :func:`plan`, before anything runs.
        """
        invocations = plan(commands, direction=direction, jobs=self.jobs)
        total = len(invocations)
        if progress is not None:
            progress(0, total)
        if not invocations:
            return
        if not self.one_shell:
            for i, inv in enumerate(invocations):
                self._run_one(inv)
                if progress is not None:
                    progress(i + 1, total)
            return
        size = total if progress is None else max(1, math.ceil(total / PROGRESS_UPDATES))
        start = 0
        while start < total:
            end = min(total, start + size)
            while end < total and invocations[end].job is not None and invocations[end - 1].job is not None:
                end += 1  # the jobs run together, in one shell
            self._run_shell(invocations[start:end], start)
            start = end
            if progress is not None:
                progress(start, total)

    def _run_one(self, inv: Invocation) -> None:
        try:
            if inv.kind == "alone":
                self.runner.run(inv.commands[0])
            else:
                self.runner.exec(inv.argv, input=inv.input, check=True)
        except BatchError:
            raise
        except CommandError as e:
            raise BatchError(inv.argv, e.exit_code, e.stderr, e.stdout, inv.lines, inv.commands) from None

    def _run_shell(self, chunk: Sequence[Invocation], start: int) -> None:
        text = render_shell(chunk, marks=True, start=start)
        # A script that fits in one argument (the kernel's MAX_ARG_STRLEN is
        # 128 KiB) goes as ``sh -c SCRIPT``; a larger one on stdin to
        # ``sh -s``, which the sh package feeds in 1 KiB pieces (≈8 ms more
        # for 100 containers, measured here).
        small = len(text.encode()) <= SH_C_LIMIT
        argv, shown, stdin = (("sh", "-c", text), ("sh", "-c", "SCRIPT"), None) if small else (
            ("sh", "-s"), ("sh", "-s"), text)
        try:
            r = self.runner.exec(argv, input=stdin, check=False)
        except CommandError as e:  # not started, killed, timed out
            code, stderr, stdout = e.exit_code, e.stderr, e.stdout
        else:
            if r.ok:
                return
            code, stderr, stdout = r.exit_code, r.stderr, r.stdout
        index, tail = _after_last_mark(stderr)
        if index is None or not start <= index < start + len(chunk):
            # the shell itself failed; ``lines`` holds SCRIPT
            raise BatchError(shown, code, stderr, stdout, tuple(text.splitlines()),
                             tuple(c for inv in chunk for c in inv.commands))
        inv = chunk[index - start]
        raise BatchError(inv.argv, code, tail, stdout, inv.lines, inv.commands)
