"""The lesson's network, exactly as the lesson builds it.

``tutorial()`` returns the network whose ``up_commands()`` are the 23
commands of the lesson, in its order (see the README).
"""

from __future__ import annotations

from .network import Container, Network, bridge_network

BRIDGE = "br0"
GATEWAY = "10.201.0.1/24"
SUBNET = "10.201.0.0/24"
CONTAINERS = (
    Container("container4", "10.201.0.4/24", veth="brid4", peer="veth4"),
    Container("container5", "10.201.0.5/24", veth="brid5", peer="veth5"),
)


def tutorial() -> Network:
    """The lesson's network: br0 at 10.201.0.1/24, container4 and container5, forwarding and NAT.

    Untagged (no link alias, no iptables comment), so that its transcript is
    the lesson's, command for command.
    """
    return bridge_network("tutorial", CONTAINERS, bridge=BRIDGE, gateway=GATEWAY, tag=False)
