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


def diff(before, after, path=""):
    """Where two snapshots differ, for assertion messages."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after), key=str):
            if before.get(k) != after.get(k):
                out.append(diff(before.get(k), after.get(k), f"{path}/{k}"))
        return "\n".join(out)
    return f"{path}:\n  before: {before}\n  after:  {after}"
