"""What the CLI prints of commands run or to run (shared by ``cli.py`` and ``cli_across.py``)."""

from __future__ import annotations

import argparse
import sys

from .runners import DryRunRunner, run_all


def _echo(args: argparse.Namespace):  # noqa: ANN202
    if args.quiet:
        return None
    return lambda line: print(line, flush=True)


def _print_commands(args: argparse.Namespace, commands: list, direction: str, steps: list | None = None) -> None:
    """Print ``commands`` as the dry-run prints them: one per line, or with ``--batch`` as the batch script."""
    if args.batch:
        from .batch import plan, render_shell

        jobs = getattr(args, "jobs", 1)
        sys.stdout.write(render_shell(plan(commands, direction=direction, jobs=jobs), sudo=getattr(args, "sudo", False)))
        return
    if not args.explain:  # what DryRunRunner prints, in one write
        sys.stdout.write("".join([c.shell(sudo=args.sudo) + "\n" for c in commands]))
        return
    run_all(DryRunRunner(sudo=args.sudo, explain=args.explain, steps=steps or ()), commands)


def _print_gone(report) -> None:  # noqa: ANN001
    for line in report.gone:
        print(f"bridgenet: already gone, nothing to undo: {line}", file=sys.stderr)
