"""The subcommands that look at a network and change nothing: ``graph``, ``show``, ``diagnose``."""

from __future__ import annotations

import argparse
import sys

from .cli_common import _across, _network, require_privileges
from .errors import ValidationError
from .network import Network


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw the network from its model: a file, a network up on this host (its state file), or the lesson's."""
    from .diagram import graph
    from .recorded import network_named

    if args.file and args.name:
        args.parser.error("give a network file (-f) or the NAME of a network that is up, not both")
    if args.ascii and args.format != "text":
        args.parser.error("--ascii goes with --format text")
    net = network_named(args.name) if args.name else _network(args)
    sys.stdout.write(graph(net, args.format, ascii=args.ascii))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Each network's live state beside what up makes: exit 0 no drift, 2 drift, 1 an unknown NAME or bad file."""
    import json

    from .status import show

    if args.file and args.names:
        args.parser.error("give a network file (-f) or NAMEs of networks that are up, not both")
    net = _across(args, "show") if args.file else None
    if net is not None and not isinstance(net, Network):
        from .cli_across import show_across

        return show_across(args, net)
    require_privileges("show")
    try:
        statuses = show([net] if args.file else (args.names or None))
    except ValidationError as e:
        print(f"bridgenet show: {e}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps([s.to_dict() for s in statuses], indent=2) + "\n")
    elif not statuses:
        print("bridgenet: no network is up on this host (no state file in /run/bridgenet)", file=sys.stderr)
    else:
        sys.stdout.write("\n".join(s.render() for s in statuses))
    return 2 if any(s.drifted for s in statuses) else 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Name the first thing that breaks SRC -> DST, then probe: exit 0 reachable, 1 not, 2 usage."""
    from .diagnose import diagnose
    from .diagnose_args import check_args, check_network

    if args.udp and args.port is None:
        args.parser.error("--udp needs --port N")
    net = None
    if args.file:
        from .config import load

        net = load(args.file)
    try:  # usage errors before the privilege check: they need no root to be told
        check_args(args.source, args.destination, args.port, args.udp)
        if net is not None:
            check_network(net, args.source, args.destination)
    except ValidationError as e:
        print(f"bridgenet diagnose: {e}", file=sys.stderr)
        return 2
    require_privileges("diagnose")
    try:
        result = diagnose(args.source, args.destination, port=args.port, udp=args.udp, network=net)
    except ValidationError as e:
        print(f"bridgenet diagnose: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(result.to_json() + "\n" if args.json else result.render())
    return 0 if result.reachable else 1
