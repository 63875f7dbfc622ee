"""The rules names and addresses must follow, as attrs validators.

Each rule states where it comes from:

* interface names: the kernel's ``dev_valid_name()`` (net/core/dev.c): 1 to
  15 bytes (``IFNAMSIZ`` is 16 with the NUL), not ``.`` or ``..``, no ``/``,
  ``:`` or whitespace;
* names that ``ip`` would read as one of its own keywords: ip-link(8) takes
  the device name as a bare word and accepts abbreviated keywords, so
  ``ip link add m type bridge`` reads ``m`` as ``mtu`` (measured with
  iproute2 6.1; we reject every prefix of a keyword, which is also safe for
  other versions);
* ``#`` and quotes: ``ip -batch`` reads ``#`` as the start of a comment and
  quotes as quoting (ip(8), ``-batch``);
* ``%``: the kernel takes a name with ``%d`` as a pattern and picks a free
  number (``dev_alloc_name()``), so the link gets another name;
* namespace names: ip-netns(8) makes a file ``/run/netns/NAME``, so a name is
  a file name: not empty, not ``.``/``..``, no ``/``, at most 255 bytes.

Every failure raises :class:`bridgenet.errors.ValidationError` naming the
object, the field and the rule.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from .errors import ValidationError

IFNAMSIZ = 16
"""Kernel limit on interface names, counting the terminating NUL (include/uapi/linux/if.h)."""

NAME_MAX = 255
"""Longest file name, hence longest netns name (limits.h)."""

IP_LINK_KEYWORDS = (
    "address", "addrgenmode", "alias", "allmulticast", "arp", "broadcast", "brd",
    "carrier", "dev", "down", "dynamic", "group", "gro_ipv4_max_size", "gro_max_size",
    "gso_ipv4_max_size", "gso_max_segs", "gso_max_size", "help", "index", "link",
    "link-netns", "link-netnsid", "master", "mode", "mtu", "multicast", "name",
    "netns", "nomaster", "numrxqueues", "numtxqueues", "parentdev", "promisc",
    "protodown", "protodown_reason", "qlen", "state", "trailers", "txqlen",
    "txqueuelen", "type", "up", "vf", "vrf", "xdp", "xdpdrv", "xdpgeneric",
    "xdpoffload",
)
"""Keywords of ``ip link add``/``ip link set`` (ip-link(8), iproute2 6.1 iplink.c)."""


def _keyword_prefixes() -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword in IP_LINK_KEYWORDS:
        for end in range(1, len(keyword) + 1):
            out.setdefault(keyword[:end], keyword)
    return out


_KEYWORD_OF_PREFIX = _keyword_prefixes()
"""Every non-empty prefix of a keyword, to the first keyword (in :data:`IP_LINK_KEYWORDS` order) it begins."""

RESERVED_IFNAMES = {
    "lo": "every network namespace already has its loopback link 'lo'",
    "all": "the kernel keeps /proc/sys/net/ipv4/conf/all, so a link cannot be named 'all'",
    "default": "the kernel keeps /proc/sys/net/ipv4/conf/default, so a link cannot be named 'default'",
    "bonding_masters": "the name of a sysfs file in /sys/class/net",
}

BR_MAX_PORTS = 1024
"""Port numbers a bridge has (net/bridge/br_private.h ``BR_MAX_PORTS``, ``1 << 10``); port 0 is never
used, so a bridge takes at most 1023 ports: the 1024th ``ip link set X master BR`` fails with
"Exchange full" (EXFULL from ``find_portno()`` in net/bridge/br_if.c; measured, KERNEL-NOTES)."""

MAX_BRIDGE_PORTS = BR_MAX_PORTS - 1
"""Most ports one bridge takes (see :data:`BR_MAX_PORTS`)."""

RESERVED_NETWORK_NAMES = {
    "tutorial": "the name 'tutorial' is reserved for the lesson's network (bridgenet.tutorial(), `bridgenet up` "
                "without --file); it names the lesson's state file /run/bridgenet/tutorial.json, so another "
                "network with that name would share it. Choose another name",
}
"""Network names only bridgenet's own networks use, with the reason."""

_BATCH_UNSAFE = re.compile(r"[#\"']")
_PLAIN_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
"""Names that break none of the character or length rules of :func:`ifname_problem` (a fast path only)."""
_PLAIN_NETNS = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}")
"""Names that break none of the rules of :func:`netns_problem` but ``.``/``..`` (a fast path only)."""
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SYSCTL_KEY = re.compile(r"^net\.(ipv4|ipv6)(\.[A-Za-z0-9_-]+)+$")


def describe(instance: Any) -> str:
    """Name an object for an error message: its class and, if set, its name."""
    cls = type(instance).__name__
    ident = getattr(instance, "name", None) or getattr(instance, "key", None)
    return f"{cls} {ident}" if isinstance(ident, str) and ident else cls


def ifname_problem(name: object) -> str | None:
    """Return the rule ``name`` breaks as an interface name, or None if it is valid."""
    if isinstance(name, str) and _PLAIN_IFNAME.fullmatch(name) is not None:
        # ASCII letters, digits and _.- only, 1-15 of them: only these rules remain
        if name in (".", "..") or name in RESERVED_IFNAMES or name in _KEYWORD_OF_PREFIX:
            return _ifname_rules(name)
        return None
    return _ifname_rules(name)


def _ifname_rules(name: object) -> str | None:
    if not isinstance(name, str):
        return "an interface name is a string"
    if not name:
        return "an interface name is not empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "an interface name is valid UTF-8 text"
    if size > IFNAMSIZ - 1:
        return f"an interface name is at most {IFNAMSIZ - 1} bytes (IFNAMSIZ), this one is {size}"
    if name in (".", ".."):
        return "an interface name is not '.' or '..'"
    if "/" in name or ":" in name:
        return "an interface name contains no '/' and no ':'"
    if any(ch.isspace() for ch in name):
        return "an interface name contains no whitespace"
    if not name.isprintable():
        return "an interface name contains only printable characters"
    if _BATCH_UNSAFE.search(name):
        return "an interface name contains no '#' or quote (ip -batch reads them as comment and quoting)"
    if "%" in name:
        return ("an interface name contains no '%' (the kernel reads %d as a pattern and picks a free "
                "number: ip link add br%d creates br0; dev_alloc_name in net/core/dev.c)")
    if name in RESERVED_IFNAMES:
        return RESERVED_IFNAMES[name]
    keyword = _KEYWORD_OF_PREFIX.get(name)
    if keyword is not None:
        return f"an interface name must not read as an ip-link keyword: ip would take {name!r} for {keyword!r}"
    return None


def netns_problem(name: object) -> str | None:
    """Return the rule ``name`` breaks as a network namespace name, or None."""
    if isinstance(name, str) and _PLAIN_NETNS.fullmatch(name) is not None and name not in (".", ".."):
        return None  # ASCII letters, digits and _.-, not starting with '-', at most NAME_MAX
    return _netns_rules(name)


def _netns_rules(name: object) -> str | None:
    if not isinstance(name, str):
        return "a netns name is a string"
    if not name:
        return "a netns name is not empty"
    if name in (".", ".."):
        return "a netns name is not '.' or '..' (it is a file in /run/netns)"
    if "/" in name:
        return "a netns name contains no '/' (it is a file in /run/netns)"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "a netns name is valid UTF-8 text"
    if size > NAME_MAX:
        return f"a netns name is at most {NAME_MAX} bytes (NAME_MAX), this one is {size}"
    if any(ch.isspace() for ch in name):
        return "a netns name contains no whitespace"
    if not name.isprintable():
        return "a netns name contains only printable characters"
    if _BATCH_UNSAFE.search(name):
        return "a netns name contains no '#' or quote (ip -batch reads them as comment and quoting)"
    if name.startswith("-"):
        return "a netns name does not start with '-' (ip would read it as an option)"
    return None


def ifname(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: ``value`` is a valid interface name."""
    problem = ifname_problem(value)
    if problem:
        raise ValidationError(describe(instance), attribute.name, problem, value)


def optional_ifname(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None, or a valid interface name."""
    if value is not None:
        ifname(instance, attribute, value)


def netns_name(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: ``value`` is a valid network namespace name."""
    problem = netns_problem(value)
    if problem:
        raise ValidationError(describe(instance), attribute.name, problem, value)


def optional_netns_name(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None (the host), or a valid netns name."""
    if value is not None:
        netns_name(instance, attribute, value)


def network_name(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a network's name: 1-64 of ``A-Z a-z 0-9 _ . -``, starting alphanumeric.

    It names the state file ``/run/bridgenet/NAME.json`` and the iptables
    comment ``bridgenet:NAME``.
    """
    if not isinstance(value, str) or not _NETWORK_NAME.match(value):
        raise ValidationError(
            describe(instance),
            attribute.name,
            "a network name is 1-64 characters of A-Z a-z 0-9 _ . - and starts with a letter or digit",
            value,
        )


def boolean(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: ``True`` or ``False`` (not 0, 1, "yes" or None)."""
    if not isinstance(value, bool):
        raise ValidationError(describe(instance), attribute.name, "true or false (a bool)", value)


def optional_boolean(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None, True or False."""
    if value is not None:
        boolean(instance, attribute, value)


def comment(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None, or an iptables comment (iptables-extensions(8), ``comment``: up to 256 bytes
    with the NUL) that survives the command line and ``iptables-restore`` unquoted."""
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable() or any(
        c.isspace() or c in "\"'#" for c in value
    ):
        raise ValidationError(
            describe(instance), attribute.name,
            "an iptables comment is 1-255 printable characters without whitespace, quotes or '#' "
            "(iptables-extensions(8), comment)",
            value,
        )


def text(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a ``str``."""
    if not isinstance(value, str):
        raise ValidationError(describe(instance), attribute.name, "a string", value)


def sysctl_key(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: a per-network-namespace sysctl key under net.ipv4 or net.ipv6.

    Only these keys live in the network namespace (so a sandbox keeps them to
    itself); others such as ``kernel.*`` would change the whole machine.
    """
    if not isinstance(value, str) or not _SYSCTL_KEY.match(value):
        raise ValidationError(
            describe(instance),
            attribute.name,
            "a sysctl key is a net.ipv4.* or net.ipv6.* key (per network namespace), "
            "dotted, of letters, digits, '_' and '-'",
            value,
        )


def _address_problem(addr: ipaddress.IPv4Address) -> str | None:
    """The range ``addr`` must not be in, by its first octet (``is_loopback``, ``is_multicast``,
    ``is_unspecified``, ``is_reserved`` of :mod:`ipaddress`, and 0.0.0.0/8; RFC 6890)."""
    first = int(addr) >> 24
    if first == 127:
        return "an address is not a loopback address (127.0.0.0/8)"
    if 224 <= first < 240:
        return "an address is not a multicast address (224.0.0.0/4)"
    if first == 0:
        return "an address is not in 0.0.0.0/8"
    if first >= 240:
        return "an address is not in the reserved range 240.0.0.0/4"
    return None


def to_interface(value: Any) -> Any:
    """attrs converter: ``"10.201.0.4/24"`` to ``IPv4Interface``; anything else passes through.

    A string without a prefix length is left as a string so that the
    validator can say what is missing.
    """
    if isinstance(value, str) and "/" in value:
        m = _DOTTED_PREFIX.fullmatch(value)
        if m is not None:  # the plain form, parsed ≈4 times faster than IPv4Interface(text) does
            a, b, c, d, prefix = map(int, m.groups())
            if a <= 255 and b <= 255 and c <= 255 and d <= 255 and prefix <= 32:
                return ipaddress.IPv4Interface((a << 24 | b << 16 | c << 8 | d, prefix))
        try:
            return ipaddress.IPv4Interface(value)
        except ValueError:
            return value
    return value


_DOTTED_PREFIX = re.compile(r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})/([0-9]{1,2})")
"""``A.B.C.D/P`` without leading zeros in the octets, as ``ipaddress`` reads it (a fast path only: anything
else, and out-of-range numbers, go to ``IPv4Interface``, which decides)."""


def interface(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an ``IPv4Interface`` (address with prefix length) usable on a link."""
    if isinstance(value, str):
        if "/" not in value:
            rule = "an address needs its prefix length, as in 10.201.0.4/24"
        elif _parses_as_v6(value, ipaddress.IPv6Interface):
            rule = _V6_FOR_V4
        else:
            rule = "an address is an IPv4 address with a prefix length, as in 10.201.0.4/24"
        raise ValidationError(describe(instance), attribute.name, rule, value)
    if not isinstance(value, ipaddress.IPv4Interface):
        if isinstance(value, ipaddress.IPv6Interface):
            raise ValidationError(describe(instance), attribute.name, _V6_FOR_V4, str(value))
        raise ValidationError(
            describe(instance), attribute.name, "an address is an IPv4 address with a prefix length", value
        )
    if value.network.prefixlen == 0:
        raise ValidationError(
            describe(instance), attribute.name,
            "an address has a prefix length of 1-32: with /0 its connected route would be 0.0.0.0/0, "
            "every address at once", str(value))
    problem = _address_problem(value)  # an IPv4Interface is an IPv4Address of its own address
    if problem:
        raise ValidationError(describe(instance), attribute.name, problem, str(value))


def cut_bytes(text: str, limit: int = IFNAMSIZ - 1) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (by default an interface name's 15), never mid-character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


MIN_MTU = 68
"""Smallest MTU: IPv4's minimum (RFC 791; the kernel's ``ETH_MIN_MTU``, the ``min_mtu`` of a veth or bridge)."""

MAX_MTU = 65535
"""Largest MTU of a veth or bridge (``ETH_MAX_MTU``, include/uapi/linux/if_ether.h; ``max_mtu`` in ``ip -d link``)."""


def mtu_problem(value: object) -> str | None:
    """Why ``value`` is no MTU (bytes, an int from :data:`MIN_MTU` to :data:`MAX_MTU`), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_MTU <= value <= MAX_MTU:
        return (f"an MTU is a whole number of bytes from {MIN_MTU} to {MAX_MTU} (the kernel's min_mtu/max_mtu "
                "of a veth or bridge, ip -d link show)")
    return None


def optional_mtu(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None (the kernel's default, 1500), or an MTU (:func:`mtu_problem`)."""
    if value is not None:
        problem = mtu_problem(value)
        if problem:
            raise ValidationError(describe(instance), attribute.name, problem, value)


def optional_interface(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: None, or a valid interface address."""
    if value is not None:
        interface(instance, attribute, value)


def to_address(value: Any) -> Any:
    """attrs converter: ``"10.201.0.1"`` to ``IPv4Address``; invalid text passes through."""
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Address(value)
        except ValueError:
            return value
    return value


def address(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an ``IPv4Address`` usable as a gateway."""
    if isinstance(value, (ipaddress.IPv6Address, str)) and _parses_as_v6(str(value), ipaddress.IPv6Address):
        raise ValidationError(describe(instance), attribute.name, "an IPv6 address is given where an IPv4 "
                              "gateway is wanted, as in 10.201.0.1", str(value))
    if not isinstance(value, ipaddress.IPv4Address):
        raise ValidationError(
            describe(instance), attribute.name, "a gateway is an IPv4 address, as in 10.201.0.1", value
        )
    problem = _address_problem(value)
    if problem:
        raise ValidationError(describe(instance), attribute.name, problem, str(value))


def to_network(value: Any) -> Any:
    """attrs converter: ``"10.201.0.0/24"`` to ``IPv4Network`` (strict); invalid text passes through."""
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Network(value)
        except ValueError:
            return value
    return value


def network(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: an ``IPv4Network`` with no host bits set."""
    if not isinstance(value, ipaddress.IPv4Network):
        raise ValidationError(
            describe(instance),
            attribute.name,
            "a subnet is an IPv4 network with no host bits set, as in 10.201.0.0/24",
            value,
        )


# --- IPv6 (RFC 4291, RFC 4193) -------------------------------------------------------------

_V6_FOR_V4 = ("an IPv6 address is given where an IPv4 address is wanted (address6 takes the IPv6 one), "
              "as in 10.201.0.4/24")
_V4_FOR_V6 = "an IPv4 address is given where an IPv6 address is wanted (address takes the IPv4 one), as in fd00:30::10/64"


def _parses_as_v6(text: str, cls: type) -> bool:
    try:
        cls(text)
    except ValueError:
        return False
    return True


# The IPv6 validators (rules6.py), importable from here like the others.
from .rules6 import (  # noqa: E402,F401
    SCOPED, address6_problem, address_any, family, interface6, interface_any, network_any, optional_interface6,
    to_address_any, to_interface6, to_interface_any, to_network_any,
)
