"""Helpers shared by the tests (the golden files; the real tests' CLI runs and snapshots)."""

import os
import sys
from pathlib import Path

from bridgenet import state

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    """``text`` equals ``tests/golden/NAME`` exactly (``BRIDGENET_UPDATE_GOLDEN=1`` rewrites it)."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path} (BRIDGENET_UPDATE_GOLDEN=1 rewrites it)"


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
