"""The ``ports`` syntax: Docker's ``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`` parsed and checked.

docker-run(1) ``--publish``: tcp by default, or udp; no host address means
every address of the host, of both families; ``0.0.0.0`` every IPv4
address, ``[::]`` every IPv6 address; an IPv6 host address goes in
brackets (``[2001:db8::2]:8080:80``), except the loopback ``[::1]``
(:data:`LOOPBACK6_REFUSED`). The rules these become are in ``ports.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address

import attrs

from .errors import ValidationError

PROTOCOLS = ("tcp", "udp")
LOOPBACK6_REFUSED = ("a port cannot be published on the IPv6 loopback [::1]: Linux has no route_localnet for "
                     "IPv6, so a packet from ::1 translated to a container's address is never routed out of the "
                     "host (measured: the connection times out); publish on 127.0.0.1, or leave the host "
                     "address out")
"""The rule a ``[::1]`` host address breaks (ip-sysctl.rst has ``route_localnet`` under IPv4 only)."""
_PORT_SYNTAX = re.compile(r"(?:(?P<ip>\[[^\]]*\]|[^\[\]/]*):)?(?P<host>[^:/]*):(?P<cont>[^:/]*)(?:/(?P<proto>.*))?")
_DIGITS = re.compile(r"[0-9]{1,5}")
"""A port number as written: ASCII digits only (``str.isdigit`` also takes '²' and full-width digits)."""
SYNTAX_RULE = ("a published port is [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO] (Docker's -p), "
               "e.g. \"8080:80\", \"127.0.0.1:8081:80\", \"[2001:db8::2]:8082:80\" or \"5353:53/udp\"")


@attrs.frozen
class PortMapping:
    """One parsed ``ports`` entry.

    Attributes:
        host_port, container_port: 1-65535.
        proto: ``"tcp"`` or ``"udp"``.
        host_ip: the host address it is published on (``0.0.0.0``, ``::``: every
            address of that family); None: every address of the host, of both families.
        text: the entry as written.
    """

    host_port: int
    container_port: int
    proto: str = "tcp"
    host_ip: IPv4Address | IPv6Address | None = None
    text: str = ""

    @property
    def family(self) -> int | None:
        """4 or 6 for a host address (``0.0.0.0``/``[::]`` included); None: every address of both families."""
        return None if self.host_ip is None else self.host_ip.version

    @property
    def every(self) -> bool:
        """On every address of the host (of its family, for ``0.0.0.0`` and ``[::]``): no ``-d`` in the DNAT rule."""
        return self.host_ip is None or self.host_ip.is_unspecified

    def families(self, available: Iterable[int]) -> list[int]:
        """The families this entry publishes for a container that has addresses of ``available`` (4, 6).

        Docker's semantics: no host address publishes on both families the
        container has; a host address on its own family only.
        """
        have = sorted(set(available))
        return have if self.family is None else [f for f in have if f == self.family]

    @property
    def loopback(self) -> bool:
        return self.host_ip is not None and self.host_ip.is_loopback

    def binding(self) -> str:
        """``"tcp *:8080"``, ``"tcp 127.0.0.1:8081"``, ``"udp [2001:db8::2]:53"``: what the host gives out."""
        if self.host_ip is None:
            where = "*"
        else:
            where = f"[{self.host_ip}]" if self.family == 6 else str(self.host_ip)
        return f"{self.proto} {where}:{self.host_port}"

    def overlaps(self, other: PortMapping) -> bool:
        """Same protocol and host port, and the same host address or one of them on every address.

        The families are the caller's to compare: an entry without a host
        address overlaps one of either family; ``0.0.0.0`` only IPv4 ones, ``[::]`` only IPv6 ones.
        """
        if (self.proto, self.host_port) != (other.proto, other.host_port):
            return False
        if None not in (self.family, other.family) and self.family != other.family:
            return False
        if self.every or other.every:
            return True  # "every address" takes the port on each address
        return self.host_ip == other.host_ip


def parse_port(text: object, where: str = "Container", field: str = "ports") -> PortMapping:
    """Parse Docker's ``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`` (docker-run(1) ``--publish``).

    Raises:
        ValidationError: naming ``where`` and ``field`` and the rule broken (a
            port outside 1-65535, a protocol other than tcp/udp, a host
            address that is not an IPv4 or bracketed IPv6 address, a range).
    """
    if not isinstance(text, str):
        raise ValidationError(where, field, SYNTAX_RULE + " (text)", text)
    m = _PORT_SYNTAX.fullmatch(text.strip())
    if m is None:
        rule = SYNTAX_RULE
        if text.count(":") > 2 and "[" not in text:
            rule += "; an IPv6 host address goes in brackets, as in [2001:db8::2]:8082:80"
        raise ValidationError(where, field, rule, text)
    ports = []
    for name, value in (("HOST_PORT", m["host"]), ("CONTAINER_PORT", m["cont"])):
        if "-" in value:
            raise ValidationError(where, field, f"{name} is one port, not a range (each port is its own entry)", text)
        if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= 65535:
            raise ValidationError(where, field, f"{name} is a port number 1-65535 in ASCII digits 0-9", text)
        ports.append(int(value))
    proto = m["proto"] if m["proto"] is not None else "tcp"
    if proto not in PROTOCOLS:
        raise ValidationError(where, field, "the protocol is tcp (the default) or udp", text)
    host_ip = None
    raw = m["ip"]
    if raw is not None and raw != "":
        bracketed = raw.startswith("[")
        inner = raw[1:-1] if bracketed else raw
        try:
            host_ip = ip_address(inner)
        except ValueError:
            raise ValidationError(where, field, "HOST_IP is an IPv4 address, or an IPv6 address in brackets "
                                  "(as in [2001:db8::2]:8082:80)", text) from None
        if bracketed != isinstance(host_ip, IPv6Address):
            raise ValidationError(where, field, "only an IPv6 host address goes in brackets", text)
        if isinstance(host_ip, IPv6Address) and host_ip.scope_id is not None:
            raise ValidationError(where, field, "HOST_IP has no scope id (the '%' part): publish on an address "
                                  "of the host, not of one link", text)
        if host_ip.is_multicast or host_ip == IPv4Address("255.255.255.255"):
            raise ValidationError(where, field, "HOST_IP is a unicast address of the host (not multicast, not the "
                                  "limited broadcast 255.255.255.255)", text)
        if isinstance(host_ip, IPv6Address) and host_ip.is_loopback:
            raise ValidationError(where, field, LOOPBACK6_REFUSED, text)
        # 0.0.0.0 (every IPv4 address) and [::] (every IPv6 address) stay: one family each, as with Docker
    return PortMapping(ports[0], ports[1], proto, host_ip, text)


def parse_ports(where: str, ports: object) -> list[PortMapping]:
    """A container's ``ports`` list parsed, each error naming ``ports[i]``."""
    if isinstance(ports, (str, bytes, dict)) or not isinstance(ports, Iterable):
        raise ValidationError(where, "ports", "ports is a list of texts such as \"8080:80\"", ports)
    return [parse_port(p, where, f"ports[{i}]") for i, p in enumerate(ports)]
