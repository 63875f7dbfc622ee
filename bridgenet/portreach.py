"""Whether the host can reach a published port at all: the checks of ``ports.py`` that need the whole network.

* The host reaches a container of a bridge in a family only through its
  own address on that bridge (the bridge's ``address`` or ``address6``):
  without it the DNAT rule is installed but the translated packet has no
  route to the container's subnet (measured: a bridge without address,
  container 10.66.0.10/24, ``7070:80``, the connection times out). An entry
  publishes on the families the container has and its bridge routes; one
  whose family has no such route is refused (:func:`unrouted`).
* A host address that is one of the network's container addresses is no
  address of the host: the DNAT rule of ``BRIDGENET-DNAT`` (``--dst-type
  LOCAL``) never matches it (:func:`not_a_container`).

An address the host simply does not hold cannot be known before running
(the host's addresses change); it is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address

from .errors import ValidationError
from .portsyntax import PortMapping

KEYS = {4: "address", 6: "address6"}


def routed(available: list[int], bridges: Mapping[int, str], hosts: Mapping[str, object] | None) -> list[int]:
    """The families of ``available`` whose bridge (``bridges[family]``) has the host's address in that family.

    ``hosts``: ``{bridge: families the host has an address of on it}``; None: not known (every family routed).
    """
    if hosts is None:
        return list(available)
    return [f for f in available if f in hosts.get(bridges[f], ())]


def unrouted(m: PortMapping, available: list[int], bridges: Mapping[int, str]) -> str:
    """The rule an entry breaks that publishes only on families whose bridge has no host address."""
    fams = m.families(available)
    f = fams[0]
    b = bridges[f]
    return (f"a published port needs its container's bridge to have the host's address in the port's family: "
            f"{b} has no {KEYS[f]} (IPv{f}), so the host has no route to the container's IPv{f} address "
            f"(give {b} an {KEYS[f]}" + (", or publish on a host address of the other family)" if len(available) > 1
                                         else ")"))


def not_a_container(where: str, field: str, m: PortMapping,
                    owners: Mapping[IPv4Address | IPv6Address, str] | None) -> None:
    """Refuse a host address that is the address of one of the network's containers (``owners``: address → netns)."""
    if owners is None or m.host_ip is None or m.every:
        return
    ns = owners.get(m.host_ip)
    if ns is not None:
        raise ValidationError(where, field, f"HOST_IP is an address of the host, not of a container: {m.host_ip} is "
                              f"container {ns}'s, and the host's DNAT (addrtype LOCAL) never matches it", m.text)
