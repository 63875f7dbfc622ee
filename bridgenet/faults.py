"""Faults to inject inside a sandbox: cut a link (partition), rate-limit a link.

Everything here runs inside a :class:`bridgenet.sandbox.Sandbox` and only
changes links of that sandbox.

* A partition sets links administratively down (``ip link set dev LINK
  down``, ip-link(8)). Cutting a namespace off means setting down the host
  end of every veth pair whose peer lives in it: for a container on a bridge,
  that end is its bridge port, so this is pulling the container's cable out
  of the switch. The container's own end then shows ``LOWERLAYERDOWN``; what
  is sent towards the container is dropped, so a TCP client sees its
  connect time out (or, once ARP gives up after ≈3 s, "No route to host").
* A rate limit replaces a link's root qdisc with a token bucket filter:
  ``tc qdisc add dev LINK root tbf rate RATE burst BURST latency LATENCY``
  (tc-tbf(8)). A qdisc shapes what a link *sends*, so limiting both
  directions of a veth pair takes one tbf on each end. ``netem`` (delay,
  loss) is not available on the kernel bridgenet is developed on; only
  ``tbf``, ``htb`` and ``ingress`` are used or assumed.

Module functions take the sandbox as first argument and keep no record;
:class:`Faults` keeps a record of what it did so :meth:`Faults.restore`
can undo it (the pytest fixture ``bridgenet_faults`` is a ``Faults``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs

from .checks import ip_argv, run_json
from .errors import CommandError

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox

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
        ValueError: ``netns`` is not a named namespace of the sandbox.
        CommandError: ``ip`` failed.
    """
    spaces = {n["name"]: n.get("id") for n in run_json(sandbox, ["ip", "-json", "netns", "list"], check=True)}
    if netns not in spaces:
        raise ValueError(f"no network namespace {netns!r} in the sandbox (it has: {', '.join(sorted(spaces)) or 'none'})")
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
            raise ValueError(f"rate: a rate is a positive number of bit/s (got {value!r})")
        return f"{value}bit"
    if not isinstance(value, str) or not _RATE.match(value):
        raise ValueError(f"rate: a tc rate such as '1mbit' (10^6 bit/s), '500kbit' or '125kbps' "
                         f"(bytes/s), see tc(8) (got {value!r})")
    return value


def _size(value: str | int, field: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{field}: a size is a positive number of bytes (got {value!r})")
        return str(value)
    if not isinstance(value, str) or not _SIZE.match(value):
        raise ValueError(f"{field}: a tc size such as '32kb' (kilobytes) or 32768 (bytes), see tc(8) (got {value!r})")
    return value


def _time(value: str | float, field: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{field}: a time is a positive number of seconds (got {value!r})")
        return f"{value * 1000:g}ms"
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(f"{field}: a tc time such as '100ms' or 0.1 (seconds), see tc(8) (got {value!r})")
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
        ValueError: a value is not in tc's syntax; the message names the field.
    """
    return ["tbf", "rate", _rate(rate), "burst", _size(burst, "burst"), "latency", _time(latency, "latency")]


def add_rate_limit(sandbox: Sandbox, link: str, *, rate: str | int, burst: str | int = "32kb",
                   latency: str | float = "100ms", netns: str | None = None) -> None:
    """``tc qdisc add dev LINK root tbf rate R burst B latency L``: shape what ``link`` sends (tc-tbf(8)).

    Raises:
        ValueError: bad rate, burst or latency (see :func:`tbf_args`).
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


# --- bookkeeping --------------------------------------------------------------------


class Faults:
    """Faults injected into one sandbox, remembered so that they can be undone.

    Every method names links the way ``ip`` does: a link name plus the
    namespace it lives in (None: the sandbox host). The namespace-level
    methods (:meth:`partition`, :meth:`rate_limit`) find the veth pairs into
    a namespace from live state (:func:`veth_ends`).

    Args:
        sandbox: the sandbox to act in.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._down: dict[tuple[str | None, str], None] = {}
        self._limited: dict[tuple[str | None, str], None] = {}

    def __repr__(self) -> str:
        return f"<Faults in {self.sandbox!r}: {', '.join(self.active) or 'none active'}>"

    # --- links ---

    def link_down(self, link: str, *, netns: str | None = None) -> None:
        """Set ``link`` (in ``netns``, None: the sandbox host) administratively down."""
        link_down(self.sandbox, link, netns=netns)
        self._down[(netns, link)] = None

    def link_up(self, link: str, *, netns: str | None = None) -> None:
        """Set ``link`` up again (whether or not this object set it down)."""
        link_up(self.sandbox, link, netns=netns)
        self._down.pop((netns, link), None)

    # --- partitions ---

    def partition(self, netns: str) -> list[str]:
        """Cut ``netns`` off: set down the host end of every veth pair into it.

        For a container on a bridge the host end is its bridge port
        (``brid5`` for ``container5`` in the lesson), so the container drops
        off the bridge while everything inside it stays as it was.

        Returns:
            the host ends set down, e.g. ``["brid5"]``.

        Raises:
            ValueError: ``netns`` does not exist, or no veth pair leads into it.
        """
        ends = veth_ends(self.sandbox, netns)
        if not ends:
            raise ValueError(f"no veth pair joins the sandbox host to {netns!r}: nothing to cut")
        for e in ends:
            self.link_down(e.host)
        return [e.host for e in ends]

    def heal(self, netns: str) -> list[str]:
        """Undo :meth:`partition`: set the host end of every veth pair into ``netns`` up.

        Returns:
            the host ends set up.
        """
        ends = veth_ends(self.sandbox, netns)
        for e in ends:
            self.link_up(e.host)
        return [e.host for e in ends]

    @contextmanager
    def partitioned(self, netns: str) -> Iterator[list[str]]:
        """``with faults.partitioned("container5"): ...``: cut off for the block, healed after."""
        cut = self.partition(netns)
        try:
            yield cut
        finally:
            self.heal(netns)

    # --- rate limits ---

    def rate_limit_link(self, link: str, *, rate: str | int, burst: str | int = "32kb",
                        latency: str | float = "100ms", netns: str | None = None) -> None:
        """Shape what ``link`` sends with a tbf root qdisc (see :func:`add_rate_limit`).

        A link already limited through this object gets its old limit removed first.
        """
        tbf_args(rate, burst, latency)  # check before changing anything
        if (netns, link) in self._limited:
            self.clear_rate_limit_link(link, netns=netns)
        add_rate_limit(self.sandbox, link, rate=rate, burst=burst, latency=latency, netns=netns)
        self._limited[(netns, link)] = None

    def clear_rate_limit_link(self, link: str, *, netns: str | None = None) -> None:
        """Remove the root qdisc of ``link`` (back to the default)."""
        del_rate_limit(self.sandbox, link, netns=netns)
        self._limited.pop((netns, link), None)

    def rate_limit(self, netns: str, *, rate: str | int, burst: str | int = "32kb",
                   latency: str | float = "100ms", direction: str = "both") -> list[tuple[str, str | None]]:
        """Limit the traffic of ``netns`` on every veth pair into it.

        Args:
            rate, burst, latency: see :func:`tbf_args` (units of tc(8)).
            direction: ``"in"`` shapes what enters ``netns`` (a tbf on the
                host end), ``"out"`` what leaves it (a tbf on the end inside),
                ``"both"`` both.

        Returns:
            the shaped links as ``(link, netns)`` pairs, netns None for the host.

        Raises:
            ValueError: bad direction or tc value, unknown ``netns``, or no veth into it.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: one of {', '.join(DIRECTIONS)} (got {direction!r})")
        tbf_args(rate, burst, latency)
        ends = veth_ends(self.sandbox, netns)
        if not ends:
            raise ValueError(f"no veth pair joins the sandbox host to {netns!r}: nothing to limit")
        shaped: list[tuple[str, str | None]] = []
        for e in ends:
            if direction in ("both", "in"):
                shaped.append((e.host, None))
            if direction in ("both", "out"):
                shaped.append((e.peer, e.netns))
        for link, where in shaped:
            self.rate_limit_link(link, rate=rate, burst=burst, latency=latency, netns=where)
        return shaped

    def clear_rate_limit(self, netns: str) -> None:
        """Remove the rate limits this object put on the veth pairs into ``netns``."""
        for e in veth_ends(self.sandbox, netns):
            for link, where in ((e.host, None), (e.peer, e.netns)):
                if (where, link) in self._limited:
                    self.clear_rate_limit_link(link, netns=where)

    @contextmanager
    def rate_limited(self, netns: str, **kwargs: object) -> Iterator[list[tuple[str, str | None]]]:
        """``with faults.rate_limited("container5", rate="1mbit"): ...``: limited for the block."""
        shaped = self.rate_limit(netns, **kwargs)  # type: ignore[arg-type]
        try:
            yield shaped
        finally:
            self.clear_rate_limit(netns)

    # --- all of it ---

    @property
    def active(self) -> list[str]:
        """What is in place now, one line each, e.g. ``"link brid5 down"``."""
        out = [f"link {link}{f' in {ns}' if ns else ''} down" for ns, link in self._down]
        out += [f"tbf on {link}{f' in {ns}' if ns else ''}" for ns, link in self._limited]
        return out

    def restore(self) -> list[str]:
        """Undo every fault still in place (rate limits, then links), most recent first.

        Links or namespaces that no longer exist are skipped.

        Returns:
            what could not be undone, one line each (empty when all is back).
        """
        failed: list[str] = []
        for ns, link in reversed(list(self._limited)):
            try:
                self.clear_rate_limit_link(link, netns=ns)
            except CommandError as e:
                self._limited.pop((ns, link), None)
                failed.append(f"tbf on {link}{f' in {ns}' if ns else ''}: {e.stderr.strip()}")
        for ns, link in reversed(list(self._down)):
            try:
                self.link_up(link, netns=ns)
            except CommandError as e:
                self._down.pop((ns, link), None)
                failed.append(f"link {link}{f' in {ns}' if ns else ''} down: {e.stderr.strip()}")
        return failed
