"""What ``bridgenet diagnose`` accepts: SRC and DST, ``--port``/``--udp``, the ``-f`` network.

Every rule here is checked before anything is read or run; a broken one is a
:class:`~bridgenet.errors.ValidationError` naming the argument (exit code 2 in
the CLI).
"""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from .errors import ValidationError

HOST = "host"
"""The word for the host's own namespace (the sandbox's, in a sandbox) as SRC or DST."""


def usage_error(field: str, rule: str, value: object) -> ValidationError:
    return ValidationError("diagnose", field, rule, value)


def check_args(source: object, destination: object, port: object, udp: object) -> None:
    for field, value in (("source", source), ("destination", destination)):
        if not isinstance(value, str) or not value:
            raise usage_error(field, "a namespace name, 'host' or (destination only) an IPv4 address", value)
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise usage_error("port", "a port number from 1 to 65535", port)
    if not isinstance(udp, bool):
        raise usage_error("udp", "True or False", udp)
    if udp and port is None:
        raise usage_error("udp", "a UDP probe needs a port (--port N)", udp)
    if source == destination == HOST:
        raise usage_error("destination", "the source is the host already", destination)
    try:
        addr = ip_address(destination)
    except ValueError:
        return
    if not isinstance(addr, IPv4Address):
        raise usage_error("destination", "an IPv4 address: diagnose walks IPv4 paths only (an IPv6 destination is "
                     "not walked yet; `ip netns exec NS ping -6 ADDR` probes it)", destination)
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or addr == IPv4Address("255.255.255.255"):
        raise usage_error("destination", "a unicast address: not multicast (224.0.0.0/4), the broadcast "
                     "255.255.255.255, 0.0.0.0 or loopback (127.0.0.0/8), which no path leads to", destination)


def check_network(network: object, source: str, destination: str) -> None:
    """The namespaces named must be the ``-f`` network's: its fixes would name another network's objects."""
    netns = [n.name for n in getattr(network, "namespaces", ())]
    for field, value in (("source", source), ("destination", destination)):
        if value == HOST:
            continue
        try:
            ip_address(value)
        except ValueError:
            if value not in netns:
                raise usage_error(field, f"a namespace of network {getattr(network, 'name', '?')!r} given with -f "
                             f"(its namespaces: {', '.join(netns) or 'none'}), or 'host'", value) from None
