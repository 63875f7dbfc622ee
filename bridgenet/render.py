"""What every model object renders with: :class:`RenderContext`, and small shared pieces (tags, MTU).

The validators that remember accepted values are performance only (see
:func:`_remembering`).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import attrs

from . import rules
from .commands import Command, LinkAlias, LinkMtu, ip


def _remembering(validator, size: int = 256):
    """``validator``, skipping a value it has accepted recently (performance only).

    The rules in ``rules.py`` depend on the value alone (the object only names
    itself in the error message), so a value once accepted is accepted again.
    A network of N containers checks the same peer name, bridge and gateway N
    times; this makes the repeats free. Rejections are never remembered, so
    errors are exactly those of ``validator``. At most ``size`` values are kept.
    """
    accepted: dict = {}

    def check(instance, attribute, value) -> None:
        key = (type(value), value)
        try:
            if key in accepted:
                return
        except TypeError:  # unhashable: just check it
            validator(instance, attribute, value)
            return
        validator(instance, attribute, value)
        if len(accepted) >= size:
            accepted.clear()
        accepted[key] = None

    return check


_ifname_repeated = _remembering(rules.ifname)
_optional_ifname_repeated = _remembering(rules.optional_ifname)
_address_repeated = _remembering(rules.address)
_via_repeated = _remembering(rules.address_any)


@attrs.frozen
class RenderContext:
    """What an object needs to know about its network to render its steps.

    Attributes:
        tag: text to tag links (alias) and iptables rules (comment) with,
            e.g. ``"bridgenet:demo"``; None to tag nothing (the lesson).
        fast: create each veth with its peer already in its namespace
            (``ip link add A type veth peer name B netns NS``, ≈0.5 ms) instead
            of creating it in the host and moving it (≈16 ms, the lesson's way).
        brings_lo_up: for each namespace, the veth whose container side also
            brings ``lo`` up (the first one into it).
        end_brings_lo_up: for each namespace reached first by a veth's
            ``name`` end (:attr:`VethPair.name_netns`), that veth.
    """

    tag: str | None = None
    fast: bool = False
    brings_lo_up: dict[str, str] = attrs.field(factory=dict)
    end_brings_lo_up: dict[str, str] = attrs.field(factory=dict)


_ADDRESS_TEXTS: dict[int, str] = {}


def _address_text(address: IPv4Address) -> str:
    """``str(address)``, remembered for plain ``IPv4Address`` values (performance only).

    Every default route of a bridge's containers names the same gateway,
    and ipaddress makes its text anew each time (≈1-2 µs). At most 1024
    texts are kept.
    """
    if type(address) is not IPv4Address:
        return str(address)
    n = int(address)
    text = _ADDRESS_TEXTS.get(n)
    if text is None:
        if len(_ADDRESS_TEXTS) >= 1024:
            _ADDRESS_TEXTS.clear()
        text = _ADDRESS_TEXTS[n] = str(address)
    return text


def _alias(name: str, tag: str | None, step: str, netns: str | None = None) -> list[Command]:
    if not tag:
        return []
    return [ip("link", "set", "dev", name, "alias", tag, netns=netns, step=step, effect=LinkAlias(name, tag, netns))]


def _mtu(name: str, mtu: int | None, step: str, netns: str | None = None) -> tuple[Command, ...]:
    """``ip link set dev NAME mtu MTU`` (ip-link(8)) when ``mtu`` is given, else nothing."""
    if mtu is None:
        return ()
    return (Command("ip", ("link", "set", "dev", name, "mtu", str(mtu)), netns, step, LinkMtu(name, mtu, netns)),)
