"""The plan of a batch run: which processes run a command list, in what order.

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
  (``*TABLE``, the rules, ``COMMIT``; iptables-restore(8)), and every host
  ``ip6tables`` one in ONE ``ip6tables-restore --noflush -w`` after it;
* anything else alone, as the command itself: a ``sysctl`` or ``iptables``
  inside a namespace (after the host's), another form of ``sysctl`` or
  ``iptables`` (where it stands among the host's, which then take more than
  one process), another tool (last going up, first going down; a command
  with ``input``, such as ``tee FILE`` of ``names.py``, reads it on stdin);
  the host's file commands of ``names.py`` merged into a few (:func:`_others`).

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

The plan is rendered and run by ``batch.py``.

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

from collections.abc import Callable, Sequence

import attrs

from .batchlines import _PLAIN_TEXT, _sysctl_settings, ip6tables_restore_rule, ip_batch_line, iptables_restore_rule
from .commands import Command
from .gcpause import paused
from .jobs import JOBS, partition

DIRECTIONS = ("up", "down")
"""Values of the ``direction`` argument."""

IPTABLES_RESTORE = ("iptables-restore", "--noflush", "-w")
"""The restore command: keep existing rules (``--noflush``), wait for the xtables lock (``-w``)."""

IP6TABLES_RESTORE = ("ip6tables-restore", "--noflush", "-w")
"""The same for the IPv6 tables (ip6tables-restore(8))."""

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


_PORT_STEP = "port "
"""Steps that plug a veth's host end into its bridge (``model.VethPair.port_key``)."""



@attrs.frozen
class Invocation:
    """One process of a plan.

    Attributes:
        argv: the program and its arguments, e.g. ``("ip", "-n", "c1", "-batch", "-")`` (or
            ``("nsenter", "--net=/run/netns/c1", "ip", "-batch", "-")``, :data:`NSENTER_MIN`).
        input: the text it reads on standard input (a batch or restore file,
            ending in a newline), or None when it reads nothing.
        commands: the bridgenet commands it carries, in order.
        kind: ``"ip"``, ``"ip-netns"``, ``"sysctl"``, ``"iptables"``,
            ``"ip6tables"`` (a batch), ``"files"`` (file commands merged, :func:`_others`), or ``"alone"``
            (one command run as itself).
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



# --- planning -------------------------------------------------------------------------


def _alone(c: Command) -> Invocation:
    return Invocation(c.argv, c.input, (c,), "alone")


_FILE_TOOLS = {"mkdir": (), "rm": ("-f",), "rmdir": ("--ignore-fail-on-non-empty",), "tee": ()}
"""The file commands of ``names.py`` (in the host): their options, the same in every command of a kind."""


def _others(other: Sequence[Command]) -> list[Invocation]:
    """The commands of no batch: each alone, except the host's file commands (``names.py``), merged.

    A network of N containers writes 2 N name files: one process each would
    double a topology network's ``up`` at N = 100 (0.35 -> 0.70 s, measured
    here). Merged: ONE ``mkdir D...`` (the directories in their order, so
    ``/etc/netns`` first), ONE ``tee F...`` per distinct text (every
    namespace's ``hosts`` is the same text; tee(1) writes its input to every
    file), ONE ``rm -f F...`` and ONE ``rmdir --ignore-fail-on-non-empty
    D...`` (in their order: the namespaces' directories before
    ``/etc/netns``), in that order, after the other commands.
    """
    out: list[Invocation] = []
    files: dict[str, list[Command]] = {tool: [] for tool in _FILE_TOOLS}
    texts: dict[str, list[Command]] = {}
    for c in other:
        opts = _FILE_TOOLS.get(c.tool)
        if c.netns is not None or opts is None or c.args[:len(opts)] != opts or len(c.args) != len(opts) + 1:
            out.append(_alone(c))
        elif c.tool == "tee":
            texts.setdefault(c.input or "", []).append(c)
        else:
            files[c.tool].append(c)
    for tool, cmds in (("mkdir", files["mkdir"]), *(("tee", t) for t in texts.values()),
                       ("rm", files["rm"]), ("rmdir", files["rmdir"])):
        if cmds:
            argv = (tool, *_FILE_TOOLS[tool], *(c.args[-1] for c in cmds))
            out.append(Invocation(argv, cmds[0].input, tuple(cmds), "files"))
    return out


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


def _restore(run: list[tuple[Command, object]], argv: tuple[str, ...] = IPTABLES_RESTORE,
             kind: str = "iptables") -> Invocation:
    tables: dict[str, list[str]] = {}
    for _, (table, line) in run:  # type: ignore[misc]
        tables.setdefault(table, []).append(line)
    text = "".join(f"*{t}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n" for t, lines in tables.items())
    return Invocation(argv, text, tuple(c for c, _ in run), kind)


def _restore6(run: list[tuple[Command, object]]) -> Invocation:
    return _restore(run, IP6TABLES_RESTORE, "ip6tables")


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
    rules6: list[Command] = []
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
        elif tool == "ip6tables":
            rules6.append(c)
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
    p_rules += _merged_phase(rules6, ip6tables_restore_rule, _restore6)
    p_other = _others(other)
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
    rules6: list[Command] = []
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
        elif c.tool == "ip6tables":
            rules6.append(c)
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
            *_merged_phase(rules, iptables_restore_rule, _restore),
            *_merged_phase(rules6, ip6tables_restore_rule, _restore6), *_others(other))

