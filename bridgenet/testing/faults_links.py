"""Faults on links: a link set down (the one-namespace partition) and a rate limit (tc tbf).

* A partition of one namespace sets links administratively down (``ip link
  set dev LINK down``, ip-link(8)). Cutting a namespace off means setting down
  the host end of every veth pair whose peer lives in it: for a container on a
  bridge, that end is its bridge port, so this is pulling the container's
  cable out of the switch. The container's own end then shows
  ``LOWERLAYERDOWN``; what is sent towards the container is dropped, so a TCP
  client sees its connect time out (or, once ARP gives up after ≈3 s, "No
  route to host").
* A rate limit replaces a link's root qdisc with a token bucket filter:
  ``tc qdisc add dev LINK root tbf rate RATE burst BURST latency LATENCY``
  (tc-tbf(8)). A qdisc shapes what a link *sends*, so limiting both
  directions of a veth pair takes one tbf on each end.

Functions here take the sandbox as first argument and keep no record;
:class:`bridgenet.testing.faults.Faults` keeps the record.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import attrs

from ..checks import ip_argv, run_json
from ..errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

DIRECTIONS = ("both", "in", "out")
"""Directions of a namespace's traffic a rate limit applies to: ``in`` is what
enters the namespace (shaped on the host end), ``out`` what leaves it (shaped
on the end inside it)."""

# tc(8), "PARAMETERS": rates, sizes and times with their unit suffixes.
_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|tbit|kibit|mibit|gibit|tibit|"
                   r"bps|kbps|mbps|gbps|tbps|kibps|mibps|gibps|tibps)$", re.IGNORECASE)
_SIZE = re.compile(r"^\d+(\.\d+)?(b|k|kb|m|mb|g|gb|kbit|mbit|gbit)?$", re.IGNORECASE)
_TIME = re.compile(r"^\d+(\.\d+)?(s|sec|secs|ms|msec|msecs|us|usec|usecs)?$", re.IGNORECASE)


# --- reading the sandbox --------------------------------------------------------


@attrs.frozen
class VethEnds:
    """The two ends of a veth pair that joins the sandbox host to a namespace.

    Attributes:
        host: the end in the sandbox host, e.g. ``"brid5"``.
        peer: the end inside ``netns``, e.g. ``"veth5"``.
        netns: the namespace, e.g. ``"container5"``.
        master: the bridge ``host`` is a bridge port of (e.g. ``"br0"``), or None.
    """

    host: str
    peer: str
    netns: str
    master: str | None = None


def veth_ends(sandbox: Sandbox, netns: str) -> list[VethEnds]:
    """The veth pairs whose host end is in the sandbox host and whose peer is in ``netns``.

    Found from live state (``ip -json netns list`` gives each namespace's
    nsid; a host end's ``link_netnsid`` names the namespace of its peer and
    ``link_index`` the peer's ifindex there), so it works for any network,
    built by bridgenet or not.

    Raises:
        ValidationError: ``netns`` is not a named namespace of the sandbox.
        CommandError: ``ip`` failed.
    """
    spaces = {n["name"]: n.get("id") for n in run_json(sandbox, ["ip", "-json", "netns", "list"], check=True)}
    if netns not in spaces:
        raise ValidationError("faults", "netns", f"a network namespace of the sandbox (it has: {', '.join(sorted(spaces)) or 'none'}; "
                              "a network in another sandbox fixture needs factories.faults(sandbox=THAT_FIXTURE))", netns)
    nsid = spaces[netns]
    if nsid is None:
        return []
    inside = {link["ifindex"]: link["ifname"]
              for link in run_json(sandbox, ip_argv(netns, "-json", "link"), check=True)}
    out = []
    for link in run_json(sandbox, ["ip", "-json", "link", "show", "type", "veth"], check=True):
        if link.get("link_netnsid") == nsid and link.get("link_index") in inside:
            out.append(VethEnds(link["ifname"], inside[link["link_index"]], netns, link.get("master")))
    return out


def link_state(sandbox: Sandbox, link: str, *, netns: str | None = None) -> dict:
    """``ip -json link show dev LINK`` of one link, as a dict (``flags``, ``operstate``, ``master``...)."""
    rows = run_json(sandbox, ip_argv(netns, "-json", "link", "show", "dev", link), check=True)
    return rows[0]


# --- link down / up ---------------------------------------------------------------


def link_down(sandbox: Sandbox, link: str, *, netns: str | None = None) -> None:
    """``ip link set dev LINK down`` in the sandbox host or in ``netns`` (ip-link(8)).

    Raises:
        CommandError: no such link (``ip`` exits non-zero).
    """
    sandbox.run(ip_argv(netns, "link", "set", "dev", link, "down"), check=True)


def link_up(sandbox: Sandbox, link: str, *, netns: str | None = None) -> None:
    """``ip link set dev LINK up`` in the sandbox host or in ``netns`` (ip-link(8))."""
    sandbox.run(ip_argv(netns, "link", "set", "dev", link, "up"), check=True)


# --- rate limit ------------------------------------------------------------------


def _rate(value: str | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValidationError("faults.rate_limit", "rate", "a rate is a positive number of bit/s", value)
        return f"{value}bit"
    if not isinstance(value, str) or not _RATE.match(value):
        raise ValidationError("faults.rate_limit", "rate", "a tc rate such as '1mbit' (10^6 bit/s), '500kbit' or "
                              "'125kbps' (bytes/s), see tc(8)", value)
    return value


def _size(value: str | int, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValidationError("faults.rate_limit", field, "a size is a positive number of bytes", value)
        return str(value)
    if not isinstance(value, str) or not _SIZE.match(value):
        raise ValidationError("faults.rate_limit", field, "a tc size such as '32kb' (kilobytes) or 32768 (bytes), see tc(8)",
                              value)
    return value


def _time(value: str | float, field: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValidationError("faults.rate_limit", field, "a time is a positive number of seconds", value)
        return f"{value * 1000:g}ms"
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValidationError("faults.rate_limit", field, "a tc time such as '100ms' or 0.1 (seconds), see tc(8)", value)
    return value


def tbf_args(rate: str | int, burst: str | int = "32kb", latency: str | float = "100ms") -> list[str]:
    """The ``tbf rate R burst B latency L`` arguments, checked.

    Args:
        rate: the rate the bucket fills at: a tc rate string (``"1mbit"`` =
            10^6 bit/s; ``"kbps"`` means kilo*bytes*/s, tc(8)) or an int in bit/s.
        burst: the bucket size, what may pass at once at full speed: a tc size
            (``"32kb"``) or an int in bytes. tc-tbf(8): at least rate/HZ.
        latency: the longest a packet may wait in the queue before it is
            dropped: a tc time (``"100ms"``) or a number in seconds.

    Raises:
        ValidationError: a value is not in tc's syntax; it names the field.
    """
    return ["tbf", "rate", _rate(rate), "burst", _size(burst, "burst"), "latency", _time(latency, "latency")]


def add_rate_limit(sandbox: Sandbox, link: str, *, rate: str | int, burst: str | int = "32kb",
                   latency: str | float = "100ms", netns: str | None = None) -> None:
    """``tc qdisc add dev LINK root tbf rate R burst B latency L``: shape what ``link`` sends (tc-tbf(8)).

    Raises:
        ValidationError: bad rate, burst or latency (see :func:`tbf_args`).
        CommandError: ``tc`` failed, e.g. the link already has a root qdisc
            other than the default (``Exclusivity flag on, cannot modify``).
    """
    argv = ["tc", *(["-n", netns] if netns else []), "qdisc", "add", "dev", link, "root",
            *tbf_args(rate, burst, latency)]
    sandbox.run(argv, check=True)


def del_rate_limit(sandbox: Sandbox, link: str, *, netns: str | None = None) -> None:
    """``tc qdisc del dev LINK root``: give ``link`` back its default qdisc (``noqueue`` for a veth)."""
    sandbox.run(["tc", *(["-n", netns] if netns else []), "qdisc", "del", "dev", link, "root"], check=True)


def qdisc_stats(sandbox: Sandbox, link: str, *, netns: str | None = None) -> dict:
    """The root qdisc of ``link`` with its counters, from ``tc -s -json qdisc show dev LINK``.

    Returns:
        a dict with e.g. ``kind`` (``"tbf"``), ``bytes``, ``packets``,
        ``drops``, ``overlimits``; ``{}`` when the link has no root qdisc shown.
    """
    r = sandbox.run(["tc", *(["-n", netns] if netns else []), "-s", "-json", "qdisc", "show", "dev", link], check=True)
    rows = json.loads(r.stdout or "[]")
    for row in rows:
        if row.get("root"):
            return row
    return rows[0] if rows else {}
