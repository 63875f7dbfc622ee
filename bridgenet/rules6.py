"""The rules IPv6 addresses follow, as attrs validators (RFC 4291 address ranges, RFC 4193 unique local).

Re-exported by ``rules.py``; each failure raises
:class:`bridgenet.errors.ValidationError` naming the object, the field and
the rule.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import ValidationError
from .rules import _V4_FOR_V6, _parses_as_v6, address, describe, interface, to_address, to_interface, to_network


SCOPED = ("an IPv6 address has no scope id (the '%' part, as in fe80::1%eth0): bridgenet names the link "
          "itself (ip's dev), and a scope id is for link-local addresses, which bridgenet does not take")
"""The rule a scoped address (RFC 4007 ``%zone``, which :mod:`ipaddress` accepts) breaks."""


def address6_problem(addr: ipaddress.IPv6Address) -> str | None:
    """The range an IPv6 address bridgenet puts on a link must not be in (RFC 4291 2.4, RFC 4193), or None.

    Link-local addresses (fe80::/10) are the kernel's own on every link
    (``addrgenmode eui64``), and a route through one needs ``dev``;
    multicast, loopback, the unspecified address and IPv4-mapped addresses
    are no address of a link; a scope id (``%eth0``, :data:`SCOPED`) is no part of one.
    """
    if getattr(addr, "scope_id", None) is not None:
        return SCOPED
    if addr.is_multicast:
        return "an IPv6 address is not a multicast address (ff00::/8)"
    if addr.is_link_local:
        return ("an IPv6 address is not link-local (fe80::/10): the kernel gives every link its own, "
                "use a global or unique local (fc00::/7) address")
    if addr.is_loopback:
        return "an IPv6 address is not the loopback address ::1"
    if addr.is_unspecified:
        return "an IPv6 address is not the unspecified address ::"
    if addr.ipv4_mapped is not None:
        return "an IPv6 address is not an IPv4-mapped address (::ffff:0:0/96)"
    return None


def to_interface6(value: Any) -> Any:
    """attrs converter: ``"fd00:30::10/64"`` to ``IPv6Interface``; anything else passes through."""
    if isinstance(value, str) and "/" in value and ":" in value:
        try:
            return ipaddress.IPv6Interface(value)
        except ValueError:
            return value
    return value


def to_interface_any(value: Any) -> Any:
    """attrs converter: an IPv4 (:func:`to_interface`) or IPv6 (:func:`to_interface6`) address with prefix."""
    if isinstance(value, str) and ":" in value:
        return to_interface6(value)
    return to_interface(value)


def interface6(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an ``IPv6Interface`` (address with prefix length 1-128) usable on a link."""
    if isinstance(value, ipaddress.IPv4Interface) or (isinstance(value, str) and "/" in value
                                                      and _parses_as_v6(value, ipaddress.IPv4Interface)):
        raise ValidationError(describe(instance), attribute.name, _V4_FOR_V6, str(value))
    if isinstance(value, str):
        rule = ("an IPv6 address needs its prefix length, as in fd00:30::10/64" if "/" not in value
                else "an IPv6 address is an IPv6 address with a prefix length, as in fd00:30::10/64")
        raise ValidationError(describe(instance), attribute.name, rule, value)
    if not isinstance(value, ipaddress.IPv6Interface):
        raise ValidationError(describe(instance), attribute.name,
                              "an IPv6 address with a prefix length, as in fd00:30::10/64", value)
    if value.network.prefixlen == 0:
        raise ValidationError(describe(instance), attribute.name,
                              "an IPv6 address has a prefix length of 1-128: with /0 its connected route would be "
                              "::/0, every address at once", str(value))
    problem = SCOPED if value.scope_id is not None else address6_problem(value.ip)  # .ip drops the scope id
    if problem:
        raise ValidationError(describe(instance), attribute.name, problem, str(value))


def optional_interface6(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None, or :func:`interface6`."""
    if value is not None:
        interface6(instance, attribute, value)


def interface_any(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an IPv4 (:func:`interface`) or IPv6 (:func:`interface6`) address with prefix length."""
    if isinstance(value, ipaddress.IPv6Interface) or (isinstance(value, str) and ":" in value):
        interface6(instance, attribute, value)
    else:
        interface(instance, attribute, value)


def to_address_any(value: Any) -> Any:
    """attrs converter: ``"10.201.0.1"`` or ``"fd00:30::1"`` to ``IPv4Address``/``IPv6Address``."""
    if isinstance(value, str) and ":" in value:
        try:
            return ipaddress.IPv6Address(value)
        except ValueError:
            return value
    return to_address(value)


def address_any(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an IPv4 gateway (:func:`address`) or an IPv6 one (global or unique local)."""
    if isinstance(value, ipaddress.IPv6Address):
        problem = address6_problem(value)
        if problem:
            raise ValidationError(describe(instance), attribute.name, problem, str(value))
        return
    if isinstance(value, str) and ":" in value:
        raise ValidationError(describe(instance), attribute.name,
                              "a gateway is an IPv4 or IPv6 address, as in 10.201.0.1 or fd00:30::1", value)
    address(instance, attribute, value)


def to_network_any(value: Any) -> Any:
    """attrs converter: an IPv4 or IPv6 subnet (strict: no host bits); invalid text passes through."""
    if isinstance(value, str) and ":" in value:
        try:
            return ipaddress.IPv6Network(value)
        except ValueError:
            return value
    return to_network(value)


def network_any(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an ``IPv4Network`` or ``IPv6Network`` with no host bits set."""
    if not isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        raise ValidationError(
            describe(instance), attribute.name,
            "a subnet is an IPv4 or IPv6 network with no host bits set, as in 10.201.0.0/24 or fd00:30::/64", value)


def family(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an IP family, 4 (iptables) or 6 (ip6tables)."""
    if value not in (4, 6) or isinstance(value, bool):
        raise ValidationError(describe(instance), attribute.name, "an IP family is 4 or 6", value)
