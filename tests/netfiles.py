"""Network files for the real tests, written where a sandbox (and a rootless user) can read them."""

import os
import tempfile


def write(sandbox, name, text, sub="nets"):
    """Write ``text`` to ``NAME`` in a directory private to ``sandbox``; return the path."""
    # per user too: the rootless run must not meet a directory root left under a reused PID
    d = os.path.join(tempfile.gettempdir(), f"bridgenet-test-{os.getuid()}-{sandbox.pid}", sub)
    os.makedirs(d, exist_ok=True)
    for p in (os.path.dirname(d), d):
        os.chmod(p, 0o755)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def bridge_file(name, bridge, third, count, *, netns_prefix=None):
    """A network file: ``count`` containers on ``bridge`` at 10.``third``.0.0/24."""
    prefix = netns_prefix or name
    lines = [f'name = "{name}"', f'bridge = "{bridge}"', f'gateway = "10.{third}.0.1/24"', ""]
    for i in range(count):
        lines += ["[[containers]]", f'netns = "{prefix}{i}"', f'address = "10.{third}.0.{10 + i}"', ""]
    return "\n".join(lines)


def state_files(sandbox):
    """What bridgenet keeps in the sandbox's /run/bridgenet (the sandbox's own mark file aside)."""
    directory = os.path.join(sandbox.runner().fs_root, "run/bridgenet")
    return sorted(f for f in os.listdir(directory) if f != ".sandbox") if os.path.isdir(directory) else []
