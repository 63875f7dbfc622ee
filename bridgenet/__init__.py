"""bridgenet: container networks built by hand, as exact ip/iptables/sysctl commands.

The model (``Bridge``, ``Namespace``, ``VethPair``, ``Address``, ``Route``,
``Sysctl``, ``NatRule``) renders into commands; a :class:`Network` orders and
checks them; runners print them (dry-run), run them (``sh``), or record them.
"""

from .commands import Command, Step
from .errors import (
    BridgenetError,
    CommandError,
    ConflictError,
    NamespaceBusyError,
    NotInSandboxError,
    PrivilegeError,
    RolledBackError,
    SandboxError,
    ValidationError,
)
from .model import Address, Bridge, ForwardRule, Namespace, NatRule, Route, Sysctl, VethPair, ip_forward
from .network import Container, Network, bridge_network
from .tutorial import tutorial

__all__ = [
    "Address", "Bridge", "ForwardRule", "BridgenetError", "Command", "CommandError", "ConflictError", "Container",
    "Namespace", "NamespaceBusyError", "NatRule", "Network", "NotInSandboxError", "PrivilegeError",
    "RolledBackError", "Route", "Sandbox", "SandboxError", "Step", "Sysctl", "ValidationError", "VethPair",
    "bridge_network", "graph", "ip_forward", "show", "tutorial",
]


def __getattr__(name: str) -> object:
    """``bridgenet.Sandbox``, imported on first use (with subprocess and the rest), not with bridgenet."""
    if name == "Sandbox":
        from .sandbox import Sandbox

        globals()["Sandbox"] = Sandbox
        return Sandbox
    if name == "show":  # bridgenet.show(networks=None, runner=None) -> [NetworkStatus] (status.py)
        from .status import show

        globals()["show"] = show
        return show
    if name == "graph":  # bridgenet.graph(network, format="text", ascii=False) -> str (diagram.py)
        from .diagram import graph

        globals()["graph"] = graph
        return graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Sandbox", "graph", "show"})
