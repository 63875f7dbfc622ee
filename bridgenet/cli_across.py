"""The CLI's ``up``, ``down``, ``plan``, ``show`` and ``clean`` of a network across hosts (``across.py``)."""

from __future__ import annotations

import argparse
import sys

from .cli_print import _echo, _print_commands, _print_gone


def header(args: argparse.Namespace, first: list):  # noqa: ANN202
    """``on_host`` for ``across``: print the host's ``# host`` header (a blank line before all but the first)."""
    def show(host) -> None:  # noqa: ANN001
        if not args.quiet:
            sys.stdout.write(("\n" if first else "") + host.header() + "\n")
            sys.stdout.flush()
        first.append(host)
    return show


def up_across(args: argparse.Namespace, s) -> int:  # noqa: ANN001
    from . import across

    runners = across.default_runners(s, echo=None if args.batch else _echo(args), session=not args.batch)
    try:
        reports = across.up_all(s, runners, batch=args.batch, force=args.force, jobs=args.jobs,
                                on_host=None if args.batch else header(args, []))
    finally:
        across.close(runners)
    shown: list = []
    for hr in reports:
        if args.batch and not args.quiet and hr.report.ran:
            header(args, shown)(hr.host)
            _print_commands(args, list(hr.report.ran), "up")
        _print_gone(hr.report)
        print(f"bridgenet: {s.name} is up on {hr.host.name}: {len(hr.report.ran)} command(s) run, "
              f"{hr.report.in_place} already in place", file=sys.stderr)
    return 0


def down_across(args: argparse.Namespace, s) -> int:  # noqa: ANN001
    from . import across

    reports = _on_hosts(s, lambda runners: across.down_all(s, runners, force=args.force))
    for hr in _printed(args, reports, lambda ran: _print_commands(args, ran, "down")):
        what = f"is down on {hr.host.name}: {len(hr.report.ran)} command(s) run" if hr.report.networks else \
            f"on {hr.host.name}: {hr.report.note}"
        print(f"bridgenet: {s.name} {what}", file=sys.stderr)
    return 0


def _on_hosts(s, call):  # noqa: ANN001, ANN202
    """``call(runners)`` with every host's default runner, closed afterwards (their ssh connections end)."""
    from . import across

    runners = across.default_runners(s)
    try:
        return call(runners)
    finally:
        across.close(runners)


def _printed(args: argparse.Namespace, reports, show_ran):  # noqa: ANN001, ANN202
    """Each host's report after its header and the commands it ran (``show_ran``), then what was gone."""
    shown: list = []
    for hr in reports:
        if not args.quiet and hr.report.ran:
            header(args, shown)(hr.host)
            show_ran(list(hr.report.ran))
        _print_gone(hr.report)
        yield hr


def plan_across(args: argparse.Namespace, s) -> int:  # noqa: ANN001
    from . import across

    plans = _on_hosts(s, lambda runners: across.plan_all(s, runners, batch=args.batch))
    if args.json:
        import json

        sys.stdout.write(json.dumps([{"host": hp.host.name, **hp.plan.to_dict()} for hp in plans], indent=2) + "\n")
    for i, hp in enumerate(plans):
        if not args.json:
            sys.stdout.write(("\n" if i else "") + hp.host.header() + "\n")
            sys.stdout.write("".join(c.shell() + "\n" for c in hp.plan.commands))
        for w in hp.plan.warnings:
            print(f"bridgenet: warning: {hp.host.name}: {w}", file=sys.stderr)
        print(f"bridgenet: {hp.host.name}: {hp.plan.summary()}", file=sys.stderr)
    removals = sum(len(hp.plan.removals) for hp in plans)
    runs = sum(len(hp.plan.commands) for hp in plans) - removals
    print(f"bridgenet: total: {f'{removals} to remove, ' if removals else ''}{runs} to run, "
          f"{sum(hp.plan.in_place for hp in plans)} already in place on {len(plans)} hosts", file=sys.stderr)
    return 2 if args.detailed_exitcode and not all(hp.plan.empty for hp in plans) else 0


def show_across(args: argparse.Namespace, s) -> int:  # noqa: ANN001
    import json

    from . import across

    statuses = _on_hosts(s, lambda runners: across.show_all(s, runners))
    if args.json:
        sys.stdout.write(json.dumps([{"host": h.name, "status": st.to_dict()} for h, st in statuses], indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(f"{h.header()}\n{st.render()}" for h, st in statuses))
    return 2 if any(st.drifted for _, st in statuses) else 0


def clean_across(args: argparse.Namespace, s) -> int:  # noqa: ANN001
    """``clean -f FILE``: ``apply.clean`` on every host of the file (``across.clean_all``), one line per host."""
    from . import across

    reports = _on_hosts(s, lambda runners: across.clean_all(s, runners, force=args.force))
    for hr in _printed(args, reports, lambda ran: sys.stdout.write("".join(c.shell() + "\n" for c in ran))):
        print(f"bridgenet: {hr.host.name}: cleaned {', '.join(hr.report.networks) or 'no recorded network'}; "
              f"{len(hr.report.ran)} command(s) run", file=sys.stderr)
    return 0
