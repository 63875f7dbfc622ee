"""Source NAT for a subnet: :class:`NatRule` (iptables-extensions(8) ``MASQUERADE``; for an IPv6 subnet,
ip6tables' NAT66, what Docker does for IPv6 networks with ip6tables enabled)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import attrs

from . import rules
from .commands import RuleAbsent, RulePresent, Step, iptables
from .render import RenderContext


@attrs.frozen
class NatRule:
    """Source NAT for a subnet: ``-t nat -A POSTROUTING -s SUBNET -j MASQUERADE`` (iptables-extensions(8)).

    Attributes:
        source: the subnet whose packets leave with the outgoing link's address;
            an IPv6 subnet renders ``ip6tables -t nat -A POSTROUTING ...`` (the
            same rule in the IPv6 nat table).
        out_interface: only packets leaving through this link (``-o``), or None for any.
        not_out_interface: not packets leaving through this link (``! -o``);
            Docker excludes its bridge this way, so that traffic between two
            containers on the bridge keeps its source address (with
            ``net.bridge.bridge-nf-call-iptables=1`` bridged traffic passes
            POSTROUTING too, and the lesson's rule rewrites it to the
            gateway's address).
        comment: a comment stored with the rule (``-m comment --comment``), or
            None; a tagged network sets ``bridgenet:NAME`` here.
        netns: where the rule lives (None: the host).
    """

    source: IPv4Network | IPv6Network = attrs.field(converter=rules.to_network_any, validator=rules.network_any)
    out_interface: str | None = attrs.field(default=None, validator=rules.optional_ifname)
    not_out_interface: str | None = attrs.field(default=None, validator=rules.optional_ifname)
    comment: str | None = attrs.field(default=None, validator=rules.comment)
    netns: str | None = attrs.field(default=None, validator=rules.optional_netns_name)

    @property
    def name(self) -> str:
        return f"MASQUERADE {self.source}"

    @property
    def family(self) -> int:
        """4 (iptables) or 6 (ip6tables), the family of ``source``."""
        return 6 if type(self.source) is IPv6Network else 4

    @property
    def step_key(self) -> str:
        out = f" -o {self.out_interface}" if self.out_interface else ""
        out += f" ! -o {self.not_out_interface}" if self.not_out_interface else ""
        return f"nat {self.source}{out}@{self.netns or 'host'}"

    def rule(self, comment: str | None = None) -> tuple[str, ...]:
        """The rule as iptables-save prints it after ``-A POSTROUTING``."""
        spec: list[str] = ["-s", str(self.source)]
        if self.out_interface:
            spec += ["-o", self.out_interface]
        if self.not_out_interface:
            spec += ["!", "-o", self.not_out_interface]
        comment = self.comment if self.comment is not None else comment
        if comment:
            spec += ["-m", "comment", "--comment", comment]
        spec += ["-j", "MASQUERADE"]
        return tuple(spec)

    def steps(self, ctx: RenderContext) -> list[Step]:
        k, f = self.step_key, self.family
        spec = self.rule(ctx.tag)
        return [
            Step(
                key=k,
                title=f"masquerade what leaves from {self.source}",
                why=(
                    f"Hosts beyond the gateway have no route back to {self.source}. MASQUERADE in the "
                    "nat table's POSTROUTING chain rewrites the source of outgoing packets to the "
                    "address of the link they leave by, and conntrack maps the replies back. "
                    "(Port publishing is the mirror image: DNAT in PREROUTING.)"
                ),
                up=(iptables("-t", "nat", "-A", "POSTROUTING", *spec, netns=self.netns, step=k, family=f,
                             effect=RulePresent("nat", "POSTROUTING", spec, self.netns, f)),),
                down=(iptables("-t", "nat", "-D", "POSTROUTING", *spec, netns=self.netns, step=k, family=f,
                               effect=RuleAbsent("nat", "POSTROUTING", spec, self.netns, f)),),
            )
        ]
