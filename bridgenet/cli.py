"""The ``bridgenet`` command.

Exit codes: 0 success; 1 a command failed, a conflict was found, a host
could not be reached, or a privilege is missing (the message names the
command and its stderr); 2 a usage error or an invalid network file; 128 +
the signal number when interrupted (130 for SIGINT, 143 for SIGTERM), after
rolling back. ``plan --detailed-exitcode`` exits 2 when something is to do
(on any host) and 1 for an invalid network file.

A file with ``[[hosts]]`` runs on every host (``across.py``): each host's
commands under its ``# host NAME (DEST)`` header, as the dry-run prints them.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from .errors import BridgenetError, CommandError, PrivilegeError, RolledBackError, UnsupportedError, ValidationError
from .interrupts import Interrupted
from .jobs import JOBS, PARALLEL_MIN
from .network import Network
from .cli_common import _across, require_privileges
from .cli_print import _echo, _print_commands, _print_gone
from .cli_views import cmd_diagnose, cmd_graph, cmd_show
from .runners import ShRunner, undo_steps

VERSION = "0.1.0"

def _per_host(args: argparse.Namespace, net, dry_run) -> int:  # noqa: ANN001
    """The dry-run of a network across hosts: each host's transcript under its header, hosts in file order."""
    for i, (host, part) in enumerate(net.pairs()):
        sys.stdout.write(("\n" if i else "") + host.header() + "\n")
        sys.stdout.flush()
        dry_run(args, part)
    return 0


class _Progress:
    """A live count on stderr for long runs; silent when stderr is not a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 20:
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _dry_up(args: argparse.Namespace, net: Network) -> int:
    steps = net.steps(fast=args.batch) if args.explain else None  # only --explain prints the steps' texts
    up = [c for s in steps for c in s.up] if steps is not None else net.up_commands(fast=args.batch)
    _print_commands(args, up, "up", steps)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    net = _across(args, "up")
    if args.dry_run:
        return _dry_up(args, net) if isinstance(net, Network) else _per_host(args, net, _dry_up)
    if not isinstance(net, Network):
        from .cli_across import up_across

        return up_across(args, net)
    require_privileges("up")
    from . import apply

    # step by step: one process per command, started by one long-lived shell (session.py)
    runner = ShRunner(echo=None if args.batch else _echo(args), session=not args.batch)
    progress = _Progress("up", not args.quiet)
    try:
        # no progress shown: the whole batch runs in one shell
        report = apply.up(net, runner, batch=args.batch, progress=progress if progress.enabled else None,
                          force=args.force, jobs=args.jobs)  # warnings go to the log
    finally:
        progress.close()
        runner.close()
    if args.batch and not args.quiet and report.ran:
        _print_commands(args, list(report.ran), "up")
    _print_gone(report)
    removed = f" ({report.removed} removing what the network no longer has)" if report.removed else ""
    print(f"bridgenet: {net.name} is up: {len(report.ran)} command(s) run{removed}, {report.in_place} already "
          "in place", file=sys.stderr)
    return 0


def _dry_down(args: argparse.Namespace, net: Network) -> int:
    steps = net.steps()
    from .teardown import default_group, grouped, will_group

    raw, group = net.down_commands(steps, group=False), default_group(net.name)
    _print_commands(args, grouped(raw, group), "down", undo_steps(steps, group=group if will_group(raw) else None))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    net = _across(args, "down")
    if args.dry_run:
        return _dry_down(args, net) if isinstance(net, Network) else _per_host(args, net, _dry_down)
    if not isinstance(net, Network):
        from .cli_across import down_across

        return down_across(args, net)
    require_privileges("down")
    from . import apply

    # down always runs as a batch (the links go in one kernel request): what ran is printed after
    report = apply.down(net, ShRunner(), batch=args.batch, force=args.force)
    if not args.quiet and report.ran:
        _print_commands(args, list(report.ran), "down")
    _print_gone(report)
    if not report.networks:
        print(f"bridgenet: {report.note}", file=sys.stderr)
    else:
        print(f"bridgenet: {net.name} is down: {len(report.ran)} command(s) run", file=sys.stderr)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    net = _across(args, "plan")
    if not isinstance(net, Network):
        from .cli_across import plan_across

        return plan_across(args, net)
    require_privileges("plan")
    from . import apply

    planned = apply.plan(net, ShRunner(), batch=args.batch)
    if args.json:
        import json

        sys.stdout.write(json.dumps(planned.to_dict(), indent=2) + "\n")
    else:
        for c in planned.commands:
            print(c.shell())
    for w in planned.warnings:
        print(f"bridgenet: warning: {w}", file=sys.stderr)
    print(f"bridgenet: {planned.summary()}", file=sys.stderr)
    if args.detailed_exitcode and not planned.empty:
        return 2
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if getattr(args, "file", None):
        net = _across(args, "clean")
        if not isinstance(net, Network):
            from .cli_across import clean_across

            return clean_across(args, net)
    require_privileges("clean")
    from . import apply

    report = apply.clean(ShRunner(echo=_echo(args)), force=args.force)
    _print_gone(report)
    nets = ", ".join(report.networks) or "no recorded network"
    print(f"bridgenet: cleaned {nets}; {len(report.ran)} command(s) run", file=sys.stderr)
    return 0


def cmd_tutorial(args: argparse.Namespace) -> int:
    from .tutorial import run_tutorial

    return run_tutorial(dry_run=args.dry_run, publish=args.publish)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port takes a port number from 1 to 65535, not {text!r}")
    return int(text)


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number from 1 to 64, not {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridgenet",
        description=(
            "Container networks built by hand: a bridge, network namespaces, veth pairs, addresses, "
            "default routes, IP forwarding and MASQUERADE, as the exact ip/iptables/sysctl commands. "
            "Without --file, the network is the lesson's (br0, container4, container5)."
        ),
    )
    p.add_argument("--version", action="version", version=f"bridgenet {VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def accept_forward(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--accept-forward", action="store_true",
                        help="also accept the bridge's traffic in the filter table (iptables -A BRIDGENET-FORWARD "
                        "-i/-o BRIDGE -j ACCEPT, in a chain jumped to from the top of FORWARD), for hosts whose "
                        "FORWARD policy is DROP or whose FORWARD chain rejects; networks other than the "
                        "lesson's have these rules already unless accept_forward = false")

    def common(sp: argparse.ArgumentParser, *, printing: bool = True) -> None:
        sp.add_argument("-f", "--file", metavar="NET.toml", help="a network file (default: the lesson's network)")
        accept_forward(sp)
        sp.add_argument("--batch", action="store_true",
                        help="run with the fewest processes (one ip -batch per namespace, iptables-restore)")
        sp.add_argument("-q", "--quiet", action="store_true", help="do not print commands as they run")
        if printing:
            sp.add_argument("-n", "--dry-run", action="store_true",
                            help="print the commands, one per line, and run nothing")
            sp.add_argument("--explain", action="store_true",
                            help="with --dry-run: a # comment before each step saying what it does and why")
            sp.add_argument("--sudo", action="store_true", help="with --dry-run: prefix each command with sudo")

    up = sub.add_parser("up", help="bring the network up (converges: runs only what is missing)",
                        description="Bring the network up on this host. Runs only what is missing, records "
                        "what it creates in /run/bridgenet/NAME.json, and undoes its own work if a command "
                        "fails or it is interrupted. --dry-run prints the full transcript instead.")
    common(up)
    up.add_argument("--force", action="store_true",
                    help="kill processes in a namespace the network no longer has, to remove it (default: refuse)")
    up.add_argument("--jobs", type=_jobs, default=JOBS, metavar="N",
                    help=f"with --batch: configure the namespaces in N shells at once (default {JOBS}; 1: one "
                    f"after the other); networks of fewer than {PARALLEL_MIN} namespaces use one")
    up.set_defaults(func=cmd_up, parser=up)

    down = sub.add_parser("down", help="take down what up created",
                          description="Remove exactly what bridgenet recorded creating for the network: "
                          "objects that existed before stay, ip_forward goes back to its old value.")
    common(down)
    down.add_argument("--force", action="store_true",
                      help="kill processes still running in a namespace to delete (default: refuse)")
    down.set_defaults(func=cmd_down, parser=down)

    plan = sub.add_parser("plan", help="print only the commands up would run now",
                          description="Compare the network with this host's live state and print the "
                          "commands up would run, then a summary on stderr.")
    plan.add_argument("-f", "--file", metavar="NET.toml", help="a network file (default: the lesson's network)")
    plan.add_argument("--batch", action="store_true", help="plan the batch form")
    accept_forward(plan)
    plan.add_argument("--detailed-exitcode", action="store_true",
                      help="exit 0 when nothing is to do, 2 when something is")
    plan.add_argument("--json", action="store_true",
                      help="print one JSON object (the network, summary, warnings, and each command's argv and "
                           "step) instead of the command lines")
    plan.set_defaults(func=cmd_plan, parser=plan)

    clean = sub.add_parser("clean", help="undo everything bridgenet left on this host",
                           description="Take down every network with a state file in /run/bridgenet, "
                           "then remove leftovers tagged bridgenet: (link alias, iptables comment).")
    clean.add_argument("--force", action="store_true", help="kill processes in namespaces to delete")
    clean.add_argument("-f", "--file", metavar="NET.toml",
                       help="a network file of several hosts: clean every host of it (over ssh)")
    clean.add_argument("-q", "--quiet", action="store_true", help="do not print commands as they run")
    clean.set_defaults(func=cmd_clean, parser=clean)

    gr = sub.add_parser("graph", help="draw the network: text for a terminal, dot (Graphviz) or mermaid",
                        description="Draw a diagram of the network from its model (runs nothing, needs no root): "
                        "bridges and their ports, namespaces with their interfaces and addresses, routers, bare "
                        "veths, routes, and NAT to the upstream. NAME: a network that is up on this host (its "
                        "state file says where it came from); no NAME and no -f: the lesson's network.")
    gr.add_argument("name", nargs="?", metavar="NAME", help="a network that is up on this host")
    gr.add_argument("-f", "--file", metavar="NET.toml", help="a network file")
    gr.add_argument("--format", choices=("text", "dot", "mermaid"), default="text",
                    help="text (default, box-drawing characters), dot (Graphviz: dot -Tsvg) or mermaid (a flowchart)")
    gr.add_argument("--ascii", action="store_true", help="with text: plain ASCII (+ - |) only")
    gr.set_defaults(func=cmd_graph, parser=gr)

    sh = sub.add_parser("show", help="what each network is on this host now, beside what up makes; drift marked",
                        description="For each network that is up on this host (a state file in /run/bridgenet), "
                        "or those named, or the network of -f: its bridges and their ports, each namespace's links "
                        "(state, carrier, MTU, addresses) and routes, the sysctls, iptables rules, published ports "
                        "and /etc/netns files it sets, each beside what up makes; then the drift (missing, changed, "
                        "extra) with the command that mends each. Reads only. Exit 0 no drift, 2 drift, 1 an "
                        "unknown NAME or a bad file.")
    sh.add_argument("names", nargs="*", metavar="NAME", help="networks that are up on this host (default: all)")
    sh.add_argument("-f", "--file", metavar="NET.toml", help="a network file, whether up or not")
    sh.add_argument("--json", action="store_true", help="print a JSON array, one object per network")
    sh.set_defaults(func=cmd_show, parser=sh)

    dg = sub.add_parser("diagnose", help="why can't SRC reach DST? name the first broken hop and its fix, then probe",
                        description="Walk the path from SRC to DST as a person would (links, cables, bridge ports, "
                        "STP, MTU, addresses, routes, gateway, ip_forward, rp_filter, iptables FORWARD, MASQUERADE, "
                        "conntrack), name the FIRST thing that breaks it with the command that fixes it, then send a "
                        "probe. Reads only. Exit 0 when DST is reachable, 1 when not, 2 for a usage error.")
    dg.add_argument("source", metavar="SRC", help="a network namespace, or 'host'")
    dg.add_argument("destination", metavar="DST", help="a network namespace, 'host', or an IPv4 address")
    dg.add_argument("--port", type=_port, metavar="N", help="probe TCP port N (with --udp: UDP) instead of pinging")
    dg.add_argument("--udp", action="store_true", help="with --port: a UDP datagram awaiting a reply")
    dg.add_argument("-f", "--file", metavar="NET.toml", help="the intended network: which namespaces, gateways, "
                    "addresses (default: live state alone)")
    dg.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    dg.set_defaults(func=cmd_diagnose, parser=dg)

    tut = sub.add_parser("tutorial", help="run the lesson for real in a throwaway sandbox, checking each claim",
                         description="Run the lesson's commands inside a throwaway sandbox (its own network, "
                         "mount and PID namespaces, with an 'upstream' namespace standing in for the internet) "
                         "and check, at the lesson's points, what it says you would see. Touches nothing on "
                         "this machine. Exit 0 when every check behaves as the lesson says.")
    tut.add_argument("-n", "--dry-run", action="store_true", help="print the narration and checks; run nothing")
    tut.add_argument("--publish", action="store_true",
                     help="after the lesson, publish container5's port 80 on the host as 8080 and check it from "
                          "the upstream and by hairpin")
    tut.set_defaults(func=cmd_tutorial, parser=tut)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = getattr(args, "parser", parser)
    for flag in ("explain", "sudo"):
        if getattr(args, flag, False) and not getattr(args, "dry_run", False):
            sub.error(f"--{flag} goes with --dry-run")
    if getattr(args, "explain", False) and getattr(args, "batch", False):
        sub.error("--explain goes with the step-by-step transcript, not --batch")
    collecting = gc.isenabled()
    if getattr(args, "dry_run", False):
        # A dry-run only prints: its objects die with it (or with this call), and the cyclic
        # collector's passes over them would cost ~25% of printing 1000 containers.
        gc.disable()
    else:
        import logging  # apply's warnings go to the log; a dry-run logs nothing

        logging.basicConfig(format="%(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        return args.func(args)
    except ValidationError as e:
        print(f"bridgenet: invalid network: {e}", file=sys.stderr)
        # plan --detailed-exitcode keeps 2 for "something to do"
        return 1 if getattr(args, "detailed_exitcode", False) else 2
    except UnsupportedError as e:
        print(f"bridgenet {args.command}: {e}", file=sys.stderr)
        return 1 if getattr(args, "detailed_exitcode", False) else 2
    except Interrupted as e:
        print(f"bridgenet: {e}", file=sys.stderr)
        return 128 + e.signum
    except RolledBackError as e:
        print(f"bridgenet: {e}", file=sys.stderr)
        signum = getattr(e.cause, "signum", None)
        if signum:
            return 128 + signum
        return 130 if isinstance(e.cause, KeyboardInterrupt) else 1
    except CommandError as e:
        print(f"bridgenet: {e}", file=sys.stderr)
        return 1
    except PrivilegeError as e:
        print(f"bridgenet: {e}", file=sys.stderr)
        return 1
    except BridgenetError as e:
        print(f"bridgenet: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if collecting:
            gc.enable()
