"""A network: an ordered set of model objects, checked as a whole.

:class:`Network` checks the rules that involve several objects (names and
addresses unique, addresses inside their bridge's subnet, gateways on-link),
orders the objects so that everything comes after what it depends on, and
renders the two command lists: ``up_commands()`` and ``down_commands()``.
"""

from __future__ import annotations

import functools

from collections.abc import Iterable, Iterator, Sequence

import attrs

from . import rules
from .commands import Command, Step
from .crosscheck import Checker
from .gcpause import paused as _gc_paused
from .model import (
    Address,
    Bridge,
    ForwardRule,
    Namespace,
    NetworkObject,
    RenderContext,
    Route,
    Sysctl,
    VethPair,
)
from .ordering import coverage, dependency_order, with_chains


def _objects(value: Iterable[NetworkObject]) -> object:
    """attrs converter: an iterable of objects to a tuple; anything else is left for the checker to name."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return value
    return tuple(value)


@attrs.frozen
class Network:
    """A container network: bridges, namespaces, veth pairs, addresses, routes, sysctls, NAT.

    Attributes:
        name: names the network (state file, iptables comment tag); 1-64 of
            ``A-Za-z0-9_.-``.
        objects: the model objects, in the order their commands should run
            where the order is free; dependencies are moved first.
        tag: tag what the kernel lets us tag with ``bridgenet:NAME`` (link
            alias, iptables comment) so leftovers can be found without the
            state file. The lesson's network is untagged so that its
            transcript stays the lesson's.
        move_peers: create each veth's peer in the host and then move it
            into its namespace, as the lesson does (``ip link set veth4 netns
            container4``, ≈16 ms each). By default the peer is created in
            its namespace at once (``... peer name veth4 netns container4``,
            ≈0.5 ms), which also leaves the host's own names (``eth0``)
            free for peers.
        source: where the network was defined: the network file's absolute
            path, ``"the lesson"`` for :func:`bridgenet.tutorial`, None for
            a Python program. With the bridges it is the network's identity
            on a host (:meth:`identity`): ``up`` refuses a network whose name
            is up there with another identity.
        advice: warnings about the network as built (e.g. a route through a
            namespace that does not forward); ``plan`` and ``up`` show them
            with the host's warnings.

    Raises:
        ValidationError: when a rule involving several objects is broken;
            the message names the object, the field and the rule.
    """

    name: str = attrs.field(validator=rules.network_name)
    objects: tuple[NetworkObject, ...] = attrs.field(converter=_objects)
    tag: bool = attrs.field(default=False, validator=rules.boolean)
    move_peers: bool = attrs.field(default=False, validator=rules.boolean)
    source: str | None = attrs.field(default=None, eq=False, kw_only=True)
    advice: tuple[str, ...] = attrs.field(default=(), eq=False, kw_only=True, converter=tuple)
    _order: tuple[NetworkObject, ...] = attrs.field(init=False, repr=False, eq=False, default=())
    _covers: dict[str, str] = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        with _gc_paused():
            checker = Checker(self)
            checker.check()
            inventory = checker.inventory  # the objects looked at once, for the order and the coverage too
            objs = with_chains(self.objects, inventory)
            object.__setattr__(self, "_order", dependency_order(objs, inventory if objs is self.objects else None))
            object.__setattr__(self, "_covers", coverage(self.objects, inventory))

    # --- views -------------------------------------------------------------

    def identity(self) -> dict:
        """``{"source": ..., "bridges": [...]}``: what makes this network itself, recorded in its state file."""
        return {"source": self.source, "bridges": sorted(b.name for b in self.bridges)}

    @property
    def tag_text(self) -> str | None:
        """``"bridgenet:NAME"`` when the network is tagged, else None."""
        return f"bridgenet:{self.name}" if self.tag else None

    @property
    def ordered(self) -> tuple[NetworkObject, ...]:
        """The objects in the order their commands run."""
        return self._order

    def of_type(self, cls: type) -> list:
        """The objects of one class, in order."""
        return [o for o in self._order if isinstance(o, cls)]

    @property
    def namespaces(self) -> list[Namespace]:
        return self.of_type(Namespace)

    @property
    def bridges(self) -> list[Bridge]:
        return self.of_type(Bridge)

    @property
    def veths(self) -> list[VethPair]:
        return self.of_type(VethPair)

    def context(self, *, fast: bool = False) -> RenderContext:
        """The :class:`RenderContext` this network renders with."""
        lo: dict[str, str] = {}
        ends: dict[str, str] = {}  # namespaces whose lo a veth's name end brings up (reached by no peer before)
        for o in self._order:
            if isinstance(o, VethPair):
                if o.name_netns is not None and o.name_netns not in lo:
                    ends.setdefault(o.name_netns, o.name)
                if o.netns is not None and o.netns not in ends:
                    lo.setdefault(o.netns, o.name)
        return RenderContext(tag=self.tag_text, fast=fast or not self.move_peers, brings_lo_up=lo,
                             end_brings_lo_up=ends)

    def steps(self, *, fast: bool = False) -> list[Step]:
        """Every step, in the order ``up`` runs them.

        Args:
            fast: render veth pairs with the peer created inside its
                namespace (what the batch runner uses) even when the network
                moves peers (``move_peers``, the lesson's create-then-move).
        """
        with _gc_paused():
            return list(self._steps(fast))

    def _steps(self, fast: bool) -> Iterator[Step]:
        ctx = self.context(fast=fast)
        for o in self._order:
            yield from self._object_steps(o, ctx)

    def _object_steps(self, o: NetworkObject, ctx: RenderContext) -> list[Step]:
        if isinstance(o, (Address, Route, Sysctl)):
            return o.steps(ctx, covered_by=self._covers.get(o.step_key))
        return o.steps(ctx)

    def up_commands(self, *, fast: bool = False) -> list[Command]:
        """The commands that bring the network up on an empty host, in order (those of :meth:`steps`)."""
        # The objects a network has one of per container render their commands without their
        # steps (texts and undo commands are never made); the others' steps are made one object
        # at a time and dropped once their commands are taken.
        with _gc_paused():
            ctx = self.context(fast=fast)
            out: list[Command] = []
            for o in self._order:
                if type(o) in _UP_WITHOUT_STEPS:
                    out.extend(o._up_commands(ctx))
                else:
                    for s in self._object_steps(o, ctx):
                        out.extend(s.up)
            return out

    def down_commands(self, steps: Sequence[Step] | None = None, *, group: bool = True) -> list[Command]:
        """The commands that take down ``steps`` (default: all), in reverse order.

        With ``group`` (default), the host's links are deleted in one
        request as a link group (``teardown.py``): ``ip link set dev X group
        G`` for each, then ``ip link del group G``, then the namespaces; G is
        ``teardown.default_group(name)`` (``down`` picks one no link of the
        host is in). ``group=False``: one ``ip link del`` per link, as below.

        A step whose ``covered_by`` step is also taken down is skipped: its
        objects vanish with the other (an address with its link, a route with
        its namespace, a veth's peer with the veth). Each veth is deleted
        from its host end before its namespace is deleted, so both ends go
        at once (deleting only the namespace frees the host end
        asynchronously, and an immediate re-create then fails with
        "File exists").
        """
        steps = list(self.steps() if steps is None else steps)
        keys = {s.key for s in steps}
        out: list[Command] = []
        for s in reversed(steps):
            if s.covered_by is not None and s.covered_by in keys:
                continue
            out.extend(s.down)
        if group:
            from .teardown import default_group, grouped

            return grouped(out, default_group(self.name))
        return out

    def sysctls(self) -> list[Sysctl]:
        return self.of_type(Sysctl)

    @functools.cached_property
    def has_ipv6(self) -> bool:
        """Whether any object is IPv6 (an IPv6 address or route, an ip6tables rule or chain): then planning
        reads the IPv6 routes and ip6tables too; an IPv4-only network reads nothing more than before."""
        for o in self._order:
            if getattr(o, "address6", None) is not None or getattr(o, "family", 4) == 6:
                return True
            if isinstance(o, Address) and o.address.version == 6:
                return True
            if isinstance(o, Route) and o.via.version == 6:
                return True
        return False


_UP_WITHOUT_STEPS = (Namespace, VethPair, Route)
"""Classes whose ``_up_commands(ctx)`` is the ``up`` of their ``steps(ctx)``, joined; exactly these
classes (a subclass may render otherwise)."""


def with_accept_forward(network: Network) -> Network:
    """``network`` with a :class:`ForwardRule` for each of its bridges that has none (``up --accept-forward``).

    The rules (and the shared chain they go into) come after the network's
    own objects, so the rest of its transcript is unchanged; the lesson's
    network, for one, keeps its 23 commands and gets four more at the end.
    """
    have = {(o.bridge, o.netns, o.family) for o in network.of_type(ForwardRule)}
    families = (4, 6) if network.has_ipv6 else (4,)  # ip6tables too for a network with IPv6
    extra = [ForwardRule(b.name, family=f) for f in families for b in network.bridges if (b.name, None, f) not in have]
    if not extra:
        return network
    return Network(network.name, [*network.objects, *extra], tag=network.tag, move_peers=network.move_peers,
                   source=network.source)


# The lesson's shape (Container, bridge_network) lives in shape.py; importable from here as before.
from .shape import Container, bridge_network, build_bridge_network  # noqa: E402,F401
