"""Networks up in a sandbox: :class:`LiveNetwork`, :class:`NetworkFactory`, and plans reused in new sandboxes."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import attrs
import pytest

from .. import apply
from ..model import Address, VethPair
from ..network import Container, Network, bridge_network
from ..plan import Plan
from ..sandbox import Sandbox
from ..tutorial import tutorial
from .janitor import Registry, registry

_PLANS = pytest.StashKey["FreshPlans"]()


@attrs.define(eq=False)
class LiveNetwork:
    """A :class:`~bridgenet.network.Network` that is up inside a sandbox.

    Attributes:
        network: the model.
        sandbox: where it is up.
        report: what ``apply.up`` did.
    """

    network: Network
    sandbox: Sandbox
    report: apply.Report
    is_down: bool = False

    @property
    def name(self) -> str:
        return self.network.name

    def __repr__(self) -> str:
        state = "down" if self.is_down else "up"
        return f"<LiveNetwork {self.name} {state} in {self.sandbox!r}: {', '.join(self.namespaces) or 'no netns'}>"

    @property
    def namespaces(self) -> list[str]:
        """Names of the network's namespaces, in order, e.g. ``["container4", "container5"]``."""
        return [n.name for n in self.network.namespaces]

    def veth(self, netns: str) -> VethPair:
        """The (first) veth pair with an end in ``netns``: one whose peer is there, else one whose
        ``name`` end is there (a bare link that starts in ``netns``, ``VethPair.name_netns``).

        Raises:
            KeyError: no veth pair leads into ``netns``.
        """
        return self._end(netns)[0]

    def _end(self, netns: str) -> tuple[VethPair, bool]:
        """(the veth pair of :meth:`veth`, whether its end inside ``netns`` is the peer (else the name end))."""
        for v in self.network.veths:
            if v.netns == netns:
                return v, True
        for v in self.network.veths:
            if v.name_netns == netns:
                return v, False
        raise KeyError(f"network {self.name} has no veth pair into {netns!r} (namespaces: {self.namespaces})")

    def address(self, netns: str) -> str:
        """The IPv4 address of ``netns`` in this network, without prefix, e.g. ``"10.201.0.5"``: the address
        on :meth:`interface` (a namespace on several links: its first), else any it is given.

        Raises:
            KeyError: ``netns`` has no veth pair, or the network gives it no address.
        """
        return self._address(netns, 4)

    def address6(self, netns: str) -> str:
        """The IPv6 address of ``netns`` in this network, without prefix, e.g. ``"fd00:30::10"`` (as :meth:`address`).

        Raises:
            KeyError: ``netns`` has no veth pair, or the network gives it no IPv6 address.
        """
        return self._address(netns, 6)

    def _address(self, netns: str, version: int) -> str:
        v, peer = self._end(netns)
        mine = v.address if version == 4 else v.address6
        if peer and mine is not None:
            return str(mine.ip)
        end = v.peer if peer else v.name
        addresses = [a for a in self.network.of_type(Address) if a.netns == netns and a.address.version == version]
        for a in sorted(addresses, key=lambda a: a.dev != end):  # the one on this end first
            return str(a.address.ip)
        family = "IPv4" if version == 4 else "IPv6"
        raise KeyError(f"network {self.name} gives {netns!r} no {family} address")

    def interface(self, netns: str) -> str:
        """The name of the link inside ``netns`` (the veth's end there; a namespace on several links:
        its first), e.g. ``"veth5"``.

        Raises:
            KeyError: no veth pair leads into ``netns``.
        """
        v, peer = self._end(netns)
        return v.peer if peer else v.name

    def bridge_port(self, netns: str) -> str:
        """The host end of the veth pair into ``netns`` (a bridge port when it has a master), e.g. ``"brid5"``.

        Raises:
            KeyError: no veth pair leads into ``netns``, or its other end is not in the host (a bare
                link between two namespaces: no bridge port).
        """
        v, peer = self._end(netns)
        if not peer or v.name_netns is not None:
            other = (v.name, v.name_netns) if peer else (v.peer, v.netns)
            raise KeyError(f"network {self.name}: the veth into {netns!r} is a bare link whose other end "
                           f"{other[0]} is in netns {other[1]}, not in the host: no bridge port")
        return v.name

    @property
    def gateway(self) -> str | None:
        """The first address the network puts in the sandbox host (the bridge's), e.g. ``"10.201.0.1"``."""
        for a in self.network.of_type(Address):
            if a.netns is None:
                return str(a.address.ip)
        return None

    def down(self) -> apply.Report:
        """Take the network down (``apply.down``) inside the sandbox."""
        report = apply.down(self.network, self.sandbox.runner(), batch=True)
        self.is_down = True
        return report


lesson = functools.cache(tutorial)
"""The lesson's network, built once (a frozen value: every test can share it)."""


class FreshPlans:
    """Plans made in a brand-new sandbox, reused in the next brand-new sandbox of the same kind.

    Planning reads live state (two processes through ``nsenter``: links,
    addresses, routes, sysctls, iptables rules, host warnings). A sandbox
    that nothing has run in yet (:attr:`bridgenet.sandbox.Sandbox.pristine`)
    is in the same state as every other one made with the same arguments
    (``upstream``, user namespace), so the plan made in the first one is the
    plan for all of them: the same commands, the same undo (``ip_forward``
    back to 0, the kernel's default in a new network namespace). Any other
    sandbox is planned for as ``apply.up`` always plans.

    Args:
        spares: the session's sandboxes (the fixtures pass
            :func:`~bridgenet.testing.janitor.registry`). With it, once two
            tests in a row have brought the same network up first thing in
            their own sandboxes, it is brought up (by threads) in sandboxes
            prepared for the next tests
            (:meth:`~bridgenet.testing.janitor.Registry.prepare`), and a
            pristine sandbox asking for it takes one of them over: the same
            plan, so the same commands, state file and report.
    """

    def __init__(self, spares: Registry | None = None) -> None:
        self._plans: dict[tuple[object, ...], Plan] = {}
        self.spares = spares

    def __repr__(self) -> str:
        return f"<FreshPlans: {len(self._plans)} plan(s)>"

    def up(self, network: Network, sandbox: Sandbox) -> apply.Report:
        """``apply.up(network, sandbox.runner(), batch=True)``, with the stored plan when ``sandbox`` is pristine.

        Raises: as :func:`bridgenet.apply.up`.
        """
        if not sandbox.pristine:
            return apply.up(network, sandbox.runner(), batch=True)
        key = (network, network.source, sandbox.upstream, sandbox.userns)
        plan = self._plans.get(key)
        spares = self.spares if self.spares is not None and self.spares.per_test(sandbox) else None
        taken, report = (False, None) if spares is None or plan is None else spares.take_prepared(key, sandbox)
        if not taken:
            runner = sandbox.runner()
            if plan is None:
                plan = self._plans[key] = apply.plan(network, runner, batch=True)
            report = apply.up(network, runner, batch=True, plan=plan)
        if spares is not None and not plan.warnings:  # (warnings logged by a thread would reach no test)
            spares.prepare(key, functools.partial(_up_in, network, plan), after=sandbox)
        return report  # type: ignore[return-value]


def _up_in(network: Network, plan: Plan, sandbox: Sandbox) -> apply.Report:
    return apply.up(network, sandbox.runner(), batch=True, plan=plan)


class NetworkFactory:
    """Builds networks inside one sandbox (the ``bridgenet_network`` fixture).

    ``bridgenet_network(net)`` brings any :class:`~bridgenet.network.Network`
    up with ``bridgenet.apply.up(net, sandbox.runner(), batch=True)``;
    ``bridgenet_network.tutorial()`` the lesson's; ``bridgenet_network.bridge(
    name, containers, **kwargs)`` a :func:`~bridgenet.network.bridge_network`.

    Args:
        sandbox: where the networks go up.
        plans: plans to reuse while ``sandbox`` is pristine (the fixtures
            pass the session's :func:`fresh_plans`); None: plan every time.

    Raises (from each call):
        RolledBackError: bringing the network up failed; what was done is undone.
        ValidationError: the network breaks a rule of the model.
    """

    def __init__(self, sandbox: Sandbox, *, plans: FreshPlans | None = None) -> None:
        self.sandbox = sandbox
        self.plans = plans
        self.built: list[LiveNetwork] = []

    def __repr__(self) -> str:
        return f"<NetworkFactory in {self.sandbox!r}: built {', '.join(n.name for n in self.built) or 'nothing'}>"

    def __call__(self, network: Network) -> LiveNetwork:
        if not isinstance(network, Network):
            raise TypeError(f"bridgenet_network() takes a bridgenet.Network, got {type(network).__name__}")
        if self.plans is not None:
            report = self.plans.up(network, self.sandbox)
        else:
            report = apply.up(network, self.sandbox.runner(), batch=True)
        live = LiveNetwork(network, self.sandbox, report)
        self.built.append(live)
        return live

    def tutorial(self) -> LiveNetwork:
        """The lesson's network: br0 10.201.0.1/24, container4 (10.201.0.4), container5 (10.201.0.5), NAT."""
        return self(lesson())

    def bridge(self, name: str, containers: Sequence[Container], **kwargs: object) -> LiveNetwork:
        """``bridge_network(name, containers, **kwargs)``, brought up."""
        return self(bridge_network(name, containers, **kwargs))  # type: ignore[arg-type]

    def down_all(self) -> None:
        """Take down every network this factory built and that is still up, last first."""
        for live in reversed(self.built):
            if not live.is_down:
                live.down()


def fresh_plans(config: pytest.Config) -> FreshPlans:
    """The :class:`FreshPlans` of ``config`` (made on first use)."""
    plans = config.stash.get(_PLANS, None)
    if plans is None:
        plans = config.stash[_PLANS] = FreshPlans(registry(config))
    return plans
