"""Conflicts of published ports with the live ``BRIDGENET-DNAT`` chains (``ports.py``), per family.

Two networks publishing the same host port and protocol on the same address
(or one of them on every address of that family) is refused before any
change. The IPv4 ports are compared with iptables' ``nat BRIDGENET-DNAT``
(``LiveState.rules``), the IPv6 ones with ip6tables' (``LiveState.rules6``):
IPv4 "every address" and IPv6 "every address" do not conflict.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_interface

from .errors import ConflictError
from .commands import IPTABLES_TOOLS
from .ports import DNAT_CHAIN, PublishedPort
from .portsyntax import PortMapping

def _binding_of_rule(rule: tuple[str, ...], family: int = 4) -> PortMapping | None:
    """The host binding a ``BRIDGENET-DNAT`` rule (as ``iptables -S`` or ``ip6tables -S`` prints it) takes, or None.

    Without ``-d``: every address of ``family`` (``0.0.0.0``, ``[::]``).
    """
    words = list(rule)
    try:
        proto = words[words.index("-p") + 1]
        port = int(words[words.index("--dport") + 1])
    except (ValueError, IndexError):
        return None
    host_ip: IPv4Address | IPv6Address = IPv4Address("0.0.0.0") if family == 4 else IPv6Address("::")
    if "-d" in words:
        try:
            host_ip = ip_interface(words[words.index("-d") + 1]).ip
        except ValueError:
            return None
    return PortMapping(port, 1, proto, host_ip, " ".join(rule))


def check_port_conflicts(objects: Iterable[object], tag: str | None, state: object) -> None:
    """Refuse a published port whose host port another network (or anyone) already takes in ``BRIDGENET-DNAT``.

    ``state``: live state with ``nat BRIDGENET-DNAT`` read, of iptables for
    the IPv4 ports and of ip6tables (``rules6``) for the IPv6 ones; each
    family is compared with its own chain only (IPv4 "every address" and
    IPv6 "every address" do not conflict). A rule of this network itself
    (the same rule, or one with this network's tag) is no conflict: it is
    converging.

    Raises:
        ConflictError: naming both bindings and who holds the other.
    """
    ours = [o for o in objects if isinstance(o, PublishedPort)]
    for family in (4, 6):
        mine = [o for o in ours if o.family == family]
        if mine:
            _check_family(mine, tag, state, family)


def _check_family(ours: list[PublishedPort], tag: str | None, state: object, family: int) -> None:
    live = state.rules_of(family).get(("nat", DNAT_CHAIN, None), [])  # type: ignore[attr-defined]
    wanted = {r for o in ours for t, c, r in o.rules(tag) if c == DNAT_CHAIN}
    for rule in live:
        if rule in wanted:
            continue
        words = list(rule)
        owner = words[words.index("--comment") + 1] if "--comment" in words[:-1] else None
        if tag is not None and owner == tag:
            continue  # this network's own rule, from an earlier version of its file: the plan replaces it
        taken = _binding_of_rule(rule, family)
        if taken is None:
            continue
        for o in ours:
            if o.mapping.overlaps(taken):
                who = f"the bridgenet network {owner.split(':', 1)[1]}" if owner and owner.startswith(
                    "bridgenet:") else "a rule without bridgenet's tag"
                tool = IPTABLES_TOOLS[family]
                raise ConflictError(
                    f"published port {o.mapping.binding()}", f"{o.mapping.text} for {o.container}",
                    f"{tool} -t nat -A {DNAT_CHAIN} {' '.join(rule)} ({who})" if family == 6 else
                    f"-A {DNAT_CHAIN} {' '.join(rule)} ({who})",
                    hint="two networks cannot publish the same host port and protocol on the same (or every) "
                         "address: take the other down first, or choose another host port")
