"""The sandbox's holder: the shell that sets up its mounts, and the small facts ``sandbox.py`` reads about processes.

The holder (PID 1 of the sandbox, see ``sandbox.py``) mounts, before
anything runs inside:

* a tmpfs on ``/run`` (so ``/run/netns``, ``/run/bridgenet`` and the xtables
  lock are the sandbox's own), and sysfs on ``/sys``;
* an overlay on ``/etc`` (overlayfs(5): ``lowerdir=/etc``, upper and work
  directories on that tmpfs), so that what is written to ``/etc`` inside the
  sandbox, ``/etc/netns/NETNS/...`` above all (``names.py``), lands on the
  sandbox's tmpfs and never in the machine's ``/etc``. Works rootless too
  (overlayfs in a user namespace, Linux >= 5.11; tested here as root and as
  an unprivileged user). A sandbox whose overlay cannot be mounted is not
  made (``set -e``): nothing ever writes through to the machine's ``/etc``;
* its own ``/etc/resolv.conf`` in that overlay, :data:`RESOLV`: the
  sandbox's namespaces have no route to the machine's resolver (with an
  upstream, queries went to the upstream namespace, which drops them: every
  lookup hung ≈10 s, Python's ``http.server`` among them, through
  ``getfqdn()``). With ``nameserver 127.0.0.1`` a query gets an ICMP port
  unreachable from ``lo`` at once: unknown names fail in milliseconds
  (measured here: 1-4 ms for ``getent hosts nosuchname``).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil

ETC_UPPER = "/run/.bridgenet-etc"
"""On the sandbox's tmpfs: ``upper`` and ``work`` of its ``/etc`` overlay (what was written to ``/etc``)."""

RESOLV = "# the sandbox's own resolver configuration (bridgenet): no name server, unknown names fail at once\n" \
         "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
"""``/etc/resolv.conf`` inside a sandbox."""

_HOLDER = r"""
set -e
mount -n -t tmpfs -o mode=0755 bridgenet-run /run
mount -n -t sysfs sysfs /sys
mkdir -m 0755 %(etc)s %(etc)s/upper %(etc)s/work
printf '%%s' %(resolv)s >%(etc)s/upper/resolv.conf
mount -n -t overlay bridgenet-etc -o lowerdir=/etc,upperdir=%(etc)s/upper,workdir=%(etc)s/work /etc
%(network)s
echo ready
exec %(wait)s
"""
# -n (no mtab): without it, mount(8) creates /run/mount/utab on the machine's /run
# before the private tmpfs hides it (seen here). /proc is mounted by unshare itself
# (--mount-proc), and /run/netns, /run/bridgenet and its marker are made from this
# process through /proc/HOLDER/root: each process fewer in the holder saves ≈1 ms.
# The upper directory is the overlay's root, so /etc inside is owned by the
# sandbox's root (mapped, when rootless), and writable by it.


def holder_script(network: str, *, keep: bool) -> str:
    """The holder's ``sh -c`` script: the mounts above, then ``network`` (shell lines), ``ready``, and wait.

    ``keep``: wait forever (``sleep infinity``) instead of until stdin closes.
    """
    return _HOLDER % {"etc": ETC_UPPER, "resolv": shlex.quote(RESOLV), "network": network,
                      "wait": "sleep infinity" if keep else "cat >/dev/null"}


def _which(tool: str) -> str | None:
    """``shutil.which(tool)``, looked up once per value of ``PATH``."""
    return _which_in(tool, os.environ.get("PATH"))


@functools.lru_cache(maxsize=64)
def _which_in(tool: str, path: str | None) -> str | None:
    return shutil.which(tool, path=path)


def _netns_inode(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """PIDs of the children of ``pid`` (``/proc/PID/task/PID/children``; empty when gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(k) for k in f.read().split()]
    except (OSError, ValueError):
        return []


def _userns_hint() -> str:
    facts = []
    for path in ("/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone",
                 "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        try:
            with open(path) as f:
                facts.append(f"{path} = {f.read().strip()}")
        except OSError:
            pass
    return "; ".join(facts)
