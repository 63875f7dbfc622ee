"""Run a command list with as few processes as possible: the plan rendered as shell, and run.

:func:`bridgenet.batchplan.plan` turns a command list into a short list of
processes (see that module for the grouping and order rules, and
``batchlines.py`` for how one command becomes a batch line);
:func:`render_shell` prints it as a POSIX shell script with quoted
here-documents (what ``--dry-run --batch`` shows), and :class:`BatchRunner`
runs it, by default as that same script in one ``sh``. The plan's names
are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .batchlines import ip_batch_line, iptables_restore_rule
from .batchplan import DIRECTIONS, IPTABLES_RESTORE, NETNS_RUN_DIR, NSENTER_MIN, Invocation, plan
from .commands import Command, heredoc_word, quiet, shell_join, with_heredoc
from .errors import BatchError, CommandError
from .jobs import JOBS
from .runners import Runner

__all__ = ["DIRECTIONS", "IPTABLES_RESTORE", "NETNS_RUN_DIR", "NSENTER_MIN", "PROGRESS_UPDATES", "SH_C_LIMIT",
           "BatchRunner", "Invocation", "ip_batch_line", "iptables_restore_rule", "plan", "render_shell"]

PROGRESS_UPDATES = 20
"""With one shell and a progress callback, the plan runs in about this many chunks."""

SH_C_LIMIT = 120_000
"""Largest script (bytes) run as ``sh -c SCRIPT``; larger ones go to ``sh -s`` on stdin."""

_MARK = "@@bridgenet-batch"
"""Start of the line the one-shell script writes to stderr before each process."""

_FAILED = "@@bridgenet-batch-failed"
"""Start of the line a parallel job writes to stderr after a process of it failed."""



# --- rendering as shell -----------------------------------------------------------------


def _render_one(inv: Invocation, i: int, *, marks: bool, sudo: bool) -> str:
    out = f"echo '{_MARK} {i}' >&2\n" if marks else ""
    line = shell_join(("sudo", *inv.argv) if sudo else inv.argv) + quiet(inv.argv)
    if inv.input is None and marks:
        line += " </dev/null"
    if marks and inv.job is not None:
        # in a job, set -e would end the job without saying which process failed
        eof = heredoc_word(inv.input) if inv.input is not None else ""
        heredoc = f" <<'{eof}'" if inv.input is not None else ""
        line += f"{heredoc} || {{ rc=$?; echo \"{_FAILED} {i} $rc\" >&2; exit $rc; }}"
        return out + line + "\n" + (f"{inv.input}{eof}\n" if inv.input is not None else "")
    if inv.input is None:
        return out + line + "\n"
    return out + with_heredoc(line, inv.input) + "\n"


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
