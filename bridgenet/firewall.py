"""bridgenet's own chains in the filter table, and isolation between networks.

Why chains of our own: rules *appended* to FORWARD never match behind a
rule that ends the chain (``-A FORWARD -j REJECT``, the default of some
distributions), so NAT and even traffic between two containers on one
bridge (br_netfilter sends bridged frames through FORWARD) are rejected
without a word. bridgenet therefore keeps its rules in a chain of its own,
``BRIDGENET-FORWARD``, jumped to from the *top* of FORWARD (``iptables -I
FORWARD -j BRIDGENET-FORWARD``, position 1), whatever else is in FORWARD.

* :class:`FilterChain` is that chain (and ``BRIDGENET-ISOLATION``): a step
  shared by every network that uses it. Its key starts with ``"chain "``, so
  that ``apply`` records it, like the ``"sysctl "`` steps, as found by the
  networks that find it, and only the last network going down removes it.
* :class:`ForwardRule` puts ``-A BRIDGENET-FORWARD -i BR -j
  ACCEPT`` and ``-o BR -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT``
  (Docker's form: replies only; a new connection towards a container passes
  only as a published port, ``ports.py``) in it.
* :class:`Isolation` drops traffic between two isolated networks, with
  Docker's two-stage scheme (libnetwork's ``DOCKER-ISOLATION-STAGE-1/2``):
  ``-I BRIDGENET-FORWARD -i BR ! -o BR -j BRIDGENET-ISOLATION`` (inserted,
  so that it comes before every ACCEPT of the chain) and ``-A
  BRIDGENET-ISOLATION -o BR -j DROP``. A packet leaving an isolated bridge
  for another bridge goes through BRIDGENET-ISOLATION, which drops it when
  the other bridge is isolated too, and else returns (to the ACCEPT rules).
  Traffic to the upstream and on the bridge itself is untouched.

iptables(8), iptables-extensions(8); the chain commands are measured with
iptables 1.8.9 (nf_tables) here: ``iptables -X`` of a chain still jumped to
fails with "Device or resource busy" (exit 4).
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING

import attrs

from . import rules
from .commands import ChainAbsent, ChainPresent, RuleAbsent, RulePresent, Step, iptables

if TYPE_CHECKING:  # pragma: no cover
    from .render import RenderContext

FORWARD_CHAIN = "BRIDGENET-FORWARD"
"""The chain holding every network's FORWARD rules, jumped to from the top of FORWARD."""

ISOLATION_CHAIN = "BRIDGENET-ISOLATION"
"""The second stage of isolation: ``-o BR -j DROP`` for each isolated bridge."""

CHAIN_STEP_PREFIX = "chain "
"""Keys of the shared chain steps start with this (``"chain BRIDGENET-FORWARD@host"``)."""

OUR_CHAINS = (FORWARD_CHAIN, ISOLATION_CHAIN)


def _check_comment(obj: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable() or any(
        c.isspace() or c in "\"'#" for c in value
    ):
        raise rules.ValidationError(
            rules.describe(obj), "comment",
            "an iptables comment is 1-255 printable characters without whitespace, quotes or '#' "
            "(iptables-extensions(8), comment)",
            value,
        )


def _family_suffix(family: int) -> str:
    """What an ip6tables step's key ends with (``" ip6"``), so that it differs from the iptables one."""
    return " ip6" if family == 6 else ""


_CHAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,28}")
_BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


@attrs.frozen
class FilterChain:
    """A user-defined chain of the filter table that bridgenet creates and shares between networks.

    ``iptables -N CHAIN`` and, with ``jump_from``, ``iptables -I JUMP_FROM -j
    CHAIN`` (position 1: before whatever is already there). Down: ``iptables
    -D JUMP_FROM -j CHAIN``, then ``iptables -X CHAIN`` (it must be empty by
    then: the networks' own rules go first).

    Attributes:
        chain: the chain's name, e.g. ``"BRIDGENET-FORWARD"``.
        jump_from: the built-in chain that jumps to it first thing, or None.
        netns: where (None: the host).
        family: 4 (iptables) or 6 (ip6tables: the same chain in the IPv6
            filter table, for a network with IPv6).
    """

    shared_chain = True  # (not an attrs field) a chain step shared by networks: see chains_needed
    chain: str = attrs.field()
    jump_from: str | None = attrs.field(default=None)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)
    family: int = attrs.field(default=4, validator=rules.family, kw_only=True)

    @chain.validator
    def _check_chain(self, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, str) or not _CHAIN_NAME.fullmatch(value) or value in _BUILTIN_CHAINS:
            raise rules.ValidationError(
                rules.describe(self), "chain",
                "a user-defined chain name is 1-28 of A-Z a-z 0-9 _ - and not a built-in chain "
                "(iptables(8): chain names are at most 28 characters)", value)

    @jump_from.validator
    def _check_jump_from(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and value not in ("FORWARD", "INPUT", "OUTPUT"):
            raise rules.ValidationError(rules.describe(self), "jump_from",
                                        "the filter table's built-in chain FORWARD, INPUT or OUTPUT, or None", value)

    @property
    def name(self) -> str | None:
        return self.chain if isinstance(self.chain, str) else None

    @property
    def step_key(self) -> str:
        return f"{CHAIN_STEP_PREFIX}{self.chain}@{self.netns or 'host'}{_family_suffix(self.family)}"

    @property
    def jump(self) -> tuple[str, ...]:
        """The jump rule as ``iptables -S`` prints it after ``-A JUMP_FROM``."""
        return ("-j", self.chain)

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, ns, f = self.step_key, self.netns, self.family
        up = [iptables("-N", self.chain, netns=ns, step=k, family=f, effect=ChainPresent("filter", self.chain, ns, f))]
        down = [iptables("-X", self.chain, netns=ns, step=k, family=f,
                         effect=ChainAbsent("filter", self.chain, ns, f))]
        if self.jump_from:
            up.append(iptables("-I", self.jump_from, *self.jump, netns=ns, step=k, family=f,
                               effect=RulePresent("filter", self.jump_from, self.jump, ns, f)))
            down.insert(0, iptables("-D", self.jump_from, *self.jump, netns=ns, step=k, family=f,
                                    effect=RuleAbsent("filter", self.jump_from, self.jump, ns, f)))
        why = (
            f"bridgenet keeps its rules in a chain of its own, {self.chain}, shared by its networks"
            + (f", and jumps to it from the top of {self.jump_from}, so that they take effect whatever "
               f"{self.jump_from} already holds (a final -j REJECT, a DROP policy)" if self.jump_from else "")
            + ". The last network going down removes it."
        )
        return [Step(key=k, title=f"create the chain {self.chain}"
                     + (f" and jump to it from the top of {self.jump_from}" if self.jump_from else ""),
                     why=why, up=tuple(up), down=tuple(down))]


@attrs.frozen
class Isolation:
    """Drop traffic between this bridge and every other isolated bridge (Docker's network isolation).

    ``-A BRIDGENET-ISOLATION -o BRIDGE -j DROP`` and ``-I BRIDGENET-FORWARD
    -i BRIDGE ! -o BRIDGE -j BRIDGENET-ISOLATION``: what leaves BRIDGE for
    another isolated bridge is dropped, both ways (each side's jump catches
    its own packets). The upstream, the bridge itself and non-isolated
    networks stay reachable.

    Attributes:
        bridge: the bridge to isolate.
        comment: stored with both rules (``-m comment``), or None (a tagged
            network sets ``bridgenet:NAME``).
        netns: where (None: the host).
        siblings: the other bridges of the same network: what the host routes
            from ``bridge`` to one of them is not isolated (``-I
            BRIDGENET-ISOLATION -i BRIDGE -o SIBLING -j RETURN``, before every
            DROP), so one network's subnets reach each other through the host.
        family: 4 (iptables) or 6 (ip6tables, for a bridge that carries IPv6).
    """

    bridge: str = attrs.field(validator=rules.ifname)
    comment: str | None = attrs.field(default=None)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)
    siblings: tuple[str, ...] = attrs.field(default=(), converter=tuple, kw_only=True)
    family: int = attrs.field(default=4, validator=rules.family, kw_only=True)

    @siblings.validator
    def _check_siblings(self, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        for name in value:
            rules.ifname(self, attribute, name)
            if name == self.bridge:
                raise rules.ValidationError(rules.describe(self), "siblings", "a sibling is another bridge", name)

    @comment.validator
    def _check(self, attribute: attrs.Attribute, value: str | None) -> None:
        _check_comment(self, value)

    @property
    def name(self) -> str:
        return f"isolation {self.bridge}"

    @property
    def step_key(self) -> str:
        return f"isolate {self.bridge}@{self.netns or 'host'}{_family_suffix(self.family)}"

    def needed_chains(self) -> list[FilterChain]:
        """``BRIDGENET-FORWARD`` (jumped to from FORWARD) and ``BRIDGENET-ISOLATION`` (:func:`chains_needed`)."""
        return [FilterChain(FORWARD_CHAIN, "FORWARD", self.netns, family=self.family),
                FilterChain(ISOLATION_CHAIN, None, self.netns, family=self.family)]

    def rules(self, comment: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """``[(chain, rule), ...]``: the drop rule, then the jump, as ``iptables -S`` prints them."""
        comment = self.comment if self.comment is not None else comment
        tag = ("-m", "comment", "--comment", comment) if comment else ()
        return [
            (ISOLATION_CHAIN, ("-o", self.bridge, *tag, "-j", "DROP")),
            (FORWARD_CHAIN, ("-i", self.bridge, "!", "-o", self.bridge, *tag, "-j", ISOLATION_CHAIN)),
            *((ISOLATION_CHAIN, ("-i", self.bridge, "-o", other, *tag, "-j", "RETURN")) for other in self.siblings),
        ]

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, ns, f = self.step_key, self.netns, self.family
        (drop_chain, drop), (jump_chain, jump), *returns = self.rules(ctx.tag)
        return [
            Step(
                key=k,
                title=f"isolate {self.bridge} from the other isolated networks",
                why=(
                    f"What leaves {self.bridge} for another bridge goes through {ISOLATION_CHAIN}, where each "
                    f"isolated network drops what is sent to it: two isolated networks cannot reach each other, "
                    f"as Docker isolates its networks. {self.bridge} still reaches the upstream."
                ),
                up=(
                    iptables("-A", drop_chain, *drop, netns=ns, step=k, family=f,
                             effect=RulePresent("filter", drop_chain, drop, ns, f)),
                    iptables("-I", jump_chain, *jump, netns=ns, step=k, family=f,
                             effect=RulePresent("filter", jump_chain, jump, ns, f)),
                    *(iptables("-I", chain, *rule, netns=ns, step=k, family=f,
                             effect=RulePresent("filter", chain, rule, ns, f))
                      for chain, rule in returns),
                ),
                down=(
                    *(iptables("-D", chain, *rule, netns=ns, step=k, family=f,
                             effect=RuleAbsent("filter", chain, rule, ns, f))
                      for chain, rule in reversed(returns)),
                    iptables("-D", jump_chain, *jump, netns=ns, step=k, family=f,
                             effect=RuleAbsent("filter", jump_chain, jump, ns, f)),
                    iptables("-D", drop_chain, *drop, netns=ns, step=k, family=f,
                             effect=RuleAbsent("filter", drop_chain, drop, ns, f)),
                ),
            )
        ]


def chains_needed(objects) -> dict[int, list[FilterChain]]:  # noqa: ANN001
    """``{index: [chain, ...]}``: the chains to put before ``objects[index]`` (the first object needing them).

    An object that puts rules in a shared chain says which by its
    ``needed_chains()``: a :class:`ForwardRule` needs ``BRIDGENET-FORWARD``,
    an :class:`Isolation` it and ``BRIDGENET-ISOLATION``, a published port
    (``ports.py``) ``BRIDGENET-DNAT`` and ``BRIDGENET-FORWARD`` of its
    family. A chain (an object with ``shared_chain``) already among
    ``objects`` is not added again.
    """
    present = {o.step_key for o in objects if getattr(o, "shared_chain", False)}
    out: dict[int, list] = {}
    for i, o in enumerate(objects):
        needs = getattr(o, "needed_chains", None)
        if needs is None:
            continue
        for c in needs():
            if c.step_key not in present:
                present.add(c.step_key)
                out.setdefault(i, []).append(c)
    return out


@attrs.frozen
class ForwardRule:
    """Let a bridge's traffic through the filter table's FORWARD chain, whatever FORWARD holds (iptables(8)).

    ``-A BRIDGENET-FORWARD -i BRIDGE -j ACCEPT`` and ``-A BRIDGENET-FORWARD
    -o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`` (what
    the containers send, and the replies to it; a connection from outside
    to a container passes only as a published port, as with Docker; the
    host's own connections to its containers do not pass FORWARD), in bridgenet's own chain, which FORWARD jumps to
    first thing (:class:`bridgenet.firewall.FilterChain`; a network with a
    ForwardRule gets that shared step added before it). Appended to FORWARD
    itself, as before, they would never match behind a final ``-j REJECT``
    (some distributions' default). Needed where another tool set the
    FORWARD policy to DROP (Docker does) or ends FORWARD with a REJECT:
    there the lesson's network routes nothing out, even with
    ``ip_forward=1`` and MASQUERADE, and, with br_netfilter, nothing passes
    between two containers on the bridge either.

    Attributes:
        bridge: the bridge whose traffic to accept.
        comment: a comment stored with the rules, or None (a tagged network
            sets ``bridgenet:NAME``).
        family: 4 (iptables) or 6 (ip6tables: the same rules for the
            bridge's IPv6 traffic, which an ip6tables FORWARD DROP policy
            would drop).
    """

    bridge: str = attrs.field(validator=rules.ifname)
    comment: str | None = attrs.field(default=None, validator=rules.comment)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)
    family: int = attrs.field(default=4, validator=rules.family, kw_only=True)

    @property
    def name(self) -> str:
        return f"FORWARD {self.bridge}"

    @property
    def step_key(self) -> str:
        return f"forward {self.bridge}@{self.netns or 'host'}{_family_suffix(self.family)}"

    def needed_chains(self) -> list[FilterChain]:
        """``BRIDGENET-FORWARD``, jumped to from FORWARD (:func:`chains_needed`)."""
        return [FilterChain(FORWARD_CHAIN, "FORWARD", self.netns, family=self.family)]

    @property
    def chain(self) -> str:
        """The chain the rules go into, ``BRIDGENET-FORWARD``."""
        return FORWARD_CHAIN

    def rules(self, comment: str | None = None) -> list[tuple[str, ...]]:
        """The two rules, as iptables-save prints them after ``-A BRIDGENET-FORWARD``."""
        comment = self.comment if self.comment is not None else comment
        tail = ("-m", "comment", "--comment", comment, "-j", "ACCEPT") if comment else ("-j", "ACCEPT")
        return [("-i", self.bridge, *tail),
                ("-o", self.bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tail)]

    def steps(self, ctx: RenderContext) -> list[Step]:
        k = self.step_key
        specs = self.rules(ctx.tag)
        chain = self.chain
        return [
            Step(
                key=k,
                title=f"accept {self.bridge}'s traffic in the chain {chain} (jumped to from the top of FORWARD)",
                why=(
                    "Where another tool set the FORWARD policy to DROP (Docker does), or FORWARD ends with "
                    f"-j REJECT, routed traffic from and to {self.bridge} is dropped even with forwarding on "
                    "(and with br_netfilter, bridged traffic between its containers too); these two rules "
                    "let it through, before anything FORWARD holds: what its containers send, and the replies "
                    "(a new connection from outside reaches a container only through a published port)."
                ),
                up=tuple(
                    iptables("-A", chain, *spec, netns=self.netns, step=k, family=self.family,
                             effect=RulePresent("filter", chain, spec, self.netns, self.family))
                    for spec in specs
                ),
                down=tuple(
                    iptables("-D", chain, *spec, netns=self.netns, step=k, family=self.family,
                             effect=RuleAbsent("filter", chain, spec, self.netns, self.family))
                    for spec in reversed(specs)
                ),
            )
        ]
