"""Which named network namespaces processes still hold (``down`` refuses to delete those unless forced)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .runners import Runner


def busy_netns(runner: Runner, names: Sequence[str]) -> dict[str, list[int]]:
    """``{name: PIDs}`` for the namespaces among ``names`` that processes still use.

    One ``lsns -t net`` (lsns(8)) finds the namespaces that have processes
    and the ``/run/netns`` file each is mounted on; ``ip netns pids`` (ip-netns(8))
    then lists the PIDs of just those. Where ``lsns`` is missing, every name
    is asked with ``ip netns pids``.
    """
    if not names:
        return {}
    wanted = set(names)
    r = runner.exec(["lsns", "--json", "-t", "net", "-o", "NSFS"], check=False)
    if r.ok and r.stdout.strip():
        used = set()
        for item in json.loads(r.stdout).get("namespaces", []):
            for path in (item.get("nsfs") or "").splitlines():
                if path.startswith("/run/netns/"):
                    used.add(path[len("/run/netns/"):])
        wanted &= used
    busy = {}
    for name in sorted(wanted):
        pids = [int(p) for p in runner.exec(["ip", "netns", "pids", name], check=False).stdout.split() if p.isdigit()]
        if pids:
            busy[name] = pids
    return busy
