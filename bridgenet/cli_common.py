"""What every subcommand of the command line needs: the privilege check and the network of ``-f``."""

from __future__ import annotations

import argparse

import attrs

from .errors import PrivilegeError
from .network import Network

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
"""Capability numbers (include/uapi/linux/capability.h)."""


def _caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def require_privileges(action: str) -> None:
    """Stop before running anything when CAP_NET_ADMIN or CAP_SYS_ADMIN is missing.

    ``ip link add`` needs CAP_NET_ADMIN; ``ip netns add`` mounts and
    ``ip -n`` enters a namespace, which need CAP_SYS_ADMIN; reading
    iptables rules needs CAP_NET_ADMIN (capabilities(7)).

    Raises:
        PrivilegeError: with what is missing and what to do instead.
    """
    caps = _caps()
    missing = [name for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"))
               if not caps >> bit & 1]
    if missing:
        raise PrivilegeError(
            f"bridgenet {action} {'reads' if action in ('plan', 'diagnose', 'show') else 'changes'} this host's network and needs "
            f"{' and '.join(missing)} "
            "(run it as root, e.g. with sudo). Nothing was run.\n"
            "To try the lesson without touching this machine: bridgenet tutorial (a throwaway sandbox)"
            + (f"; to only print the commands: bridgenet {action} --dry-run" if action in ("up", "down") else "")
        )


def _network(args: argparse.Namespace, *, hosts: bool = False):  # noqa: ANN202 (a Network; with hosts, a Stretch too)
    """The network of ``-f`` (or the lesson's); ``hosts``: a file with ``[[hosts]]`` gives its Stretch
    (else its one local host's network, or UnsupportedError)."""
    if getattr(args, "file", None):
        from .config import load, load_any

        net = load_any(args.file) if hosts else load(args.file)
    else:
        from .tutorial import tutorial

        net = tutorial()
    if getattr(args, "accept_forward", False):
        from .network import with_accept_forward

        if not isinstance(net, Network):
            return attrs.evolve(net, networks=[with_accept_forward(n) for n in net.networks])
        net = with_accept_forward(net)
    return net


def _across(args: argparse.Namespace, action: str):  # noqa: ANN202 (a Network, or a Stretch of other hosts)
    """The network of ``-f``: a Stretch of several hosts as it is (a dry-run prints it per host), else a Network."""
    net = _network(args, hosts=True)
    if not isinstance(net, Network) and net.local_only and not getattr(args, "dry_run", False):
        net = net.networks[0]
    if not isinstance(net, Network) and not getattr(args, "dry_run", False) and any(h.local for h in net.hosts):
        require_privileges(action)  # the local host's part runs here
    return net
