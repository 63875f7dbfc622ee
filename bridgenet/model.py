"""The objects of a container network, as immutable validated values.

Each object is an ``attrs`` frozen class; its fields are checked when it is
built (see ``rules.py``), and rules that involve several objects are checked
when a :class:`bridgenet.network.Network` is assembled. An object renders
into :class:`bridgenet.commands.Step` values, the commands of ip-link(8),
ip-address(8), ip-route(8), ip-netns(8), sysctl(8) and iptables(8).

The objects live one idea per file (``links.py``, ``addressing.py``,
``sysctls.py``, ``masquerade.py``, ``firewall.py``, ``vxlan.py``; what they render with in
``render.py``); this module gathers them, so ``from bridgenet.model import
VethPair`` keeps working.
"""

from __future__ import annotations

from .addressing import Address, Route
from .firewall import FilterChain, ForwardRule, Isolation
from .links import Bridge, Namespace, VethPair
from .masquerade import NatRule
from .names import EtcNetns, Names
from .render import RenderContext
from .sysctls import Sysctl, ip6_forward, ip_forward
from .vxlan import Vxlan

__all__ = ["Address", "Bridge", "EtcNetns", "FilterChain", "ForwardRule", "Isolation", "Names", "Namespace", "NatRule",
           "NetworkObject", "RenderContext", "Route", "Sysctl", "VethPair", "Vxlan", "ip6_forward",
           "ip_forward"]

NetworkObject = (
    Bridge | Namespace | VethPair | Address | Route | Sysctl | NatRule | ForwardRule | FilterChain | Isolation
    | EtcNetns | Names | Vxlan
)
