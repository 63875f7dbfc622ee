"""A network across hosts brought up for a test: :class:`LiveStretch` (``factories.stretch``).

The hosts are :class:`~bridgenet.testing.hosts.Hosts` (namespaces in a
sandbox, one per host, on an underlay bridge); the network is a
:class:`~bridgenet.stretch.Stretch` whose hosts are named like them
(``h1``, ``h2``, ...). ``up`` is :func:`bridgenet.across.up_all` with each
host's nsenter runner (its own ``/run/bridgenet``); teardown is
:func:`bridgenet.across.down_all`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from .. import across
from ..runners import Result, ShRunner
from ..stretch import Stretch
from .hosts import Host, Hosts


class LiveStretch:
    """A :class:`Stretch` that is up on :class:`Hosts` (bridgenet's own ``up_all``).

    Attributes:
        stretch: the network.
        hosts: the :class:`Hosts` it runs on.
        reports: ``up_all``'s :class:`~bridgenet.across.HostReport` list, in the order run.
    """

    def __init__(self, stretch: Stretch, hosts: Hosts) -> None:
        self.stretch, self.hosts = stretch, hosts
        self.reports = across.up_all(stretch, self.runners())

    def host(self, name: str) -> Host:
        """The host named ``name`` (``h1``...); KeyError naming the hosts when there is none."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r}; hosts: {', '.join(h.name for h in self.hosts)}")

    def runner(self, name: str) -> ShRunner:
        """The host's nsenter runner (what ``up_all`` ran through)."""
        return self.host(name).runner()

    def runners(self) -> dict[str, ShRunner]:
        """``{host name: its nsenter runner}`` for every host of the network."""
        return {h.name: self.host(h.name).runner() for h in self.stretch.hosts}

    def host_of(self, netns: str) -> Host:
        """The host where container ``netns`` lives (its ``/run/netns/NETNS``); KeyError when none."""
        for h in self.hosts:
            if os.path.exists(f"{h.fs_root}/run/netns/{netns}"):
                return h
        raise KeyError(f"no container {netns!r} on any host")

    def run(self, netns: str, argv: Sequence[str], *, check: bool = False) -> Result:
        """Run ``argv`` in container ``netns`` on its host (``ip netns exec``); ``check``: raise
        CommandError on a non-zero exit."""
        return self.host_of(netns).run(["ip", "netns", "exec", netns, *argv], check=check)

    def address(self, netns: str) -> str:
        """Container ``netns``'s IPv4 address (its first global one, from ``ip -json -4 addr``)."""
        r = self.run(netns, ["ip", "-json", "-4", "addr", "show", "scope", "global"], check=True)
        for link in json.loads(r.stdout):
            for a in link.get("addr_info", []):
                return a["local"]
        raise KeyError(f"container {netns!r} has no IPv4 address")

    def ping(self, src: str, dst: str) -> Result:
        """One ping from container ``src`` to ``dst`` (a container's name or an address); 2 s wait."""
        to = dst if dst[:1].isdigit() else self.address(dst)
        return self.run(src, ["ping", "-c", "1", "-W", "2", to])

    def down(self) -> None:
        """Take the network down on every host (``down_all``)."""
        across.down_all(self.stretch, self.runners())
