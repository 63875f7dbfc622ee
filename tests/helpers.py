"""Helpers shared by the real tests."""

import sys

from bridgenet import state


def bridgenet_cli(sandbox, *argv, env=None, check=False, timeout=120):
    """Run the bridgenet CLI as a new process inside ``sandbox`` (the sandbox plays the host)."""
    cmd = [sys.executable, "-m", "bridgenet", *argv]
    if env:
        cmd = ["env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    return sandbox.run(cmd, check=check, timeout=timeout)


def snap(sandbox):
    """The sandbox's ``state.snapshot`` (links, addresses, routes, netns, ip_forward, iptables)."""
    return state.snapshot(sandbox.runner())


def diff(before, after):
    """Where two snapshots differ, for assertion messages."""
    return state.difference(before, after, limit=None).replace("; /", "\n/")
