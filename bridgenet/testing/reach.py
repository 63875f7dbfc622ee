"""Reachability assertions with a failure message a person can act on.

``assert_reachable(sandbox, a, b)`` checks that namespace ``a`` reaches ``b``
(ICMP echo, or a TCP connect when ``port`` is given); ``assert_unreachable``
the opposite. ``a`` is the name of a network namespace of the sandbox, or
None for the sandbox host; ``b`` is an IPv4 address, or the name of a
namespace (its first global IPv4 address is used).

When the assertion fails, the message shows what a person would look at in
each namespace involved (the source, the destination's, and the sandbox
host, which holds the bridges): the links and their states, addresses,
routes, neighbours (``ip neigh``), non-default qdiscs, and the iptables
counters of the filter and nat tables (``iptables -nvL``, ``iptables -t nat
-nvL``), preceded by what stands out in that state (parsed from ``ip -json``:
links down, no route, failed neighbours, packets dropped by iptables).

Only addresses inside the sandbox are ever probed.
"""

from __future__ import annotations

import json
import re
import sys
import time
from ipaddress import IPv4Address, ip_address
from typing import TYPE_CHECKING

from .. import state
from ..checks import CheckResult, ip_argv, ping, run_json

if TYPE_CHECKING:  # pragma: no cover
    from ..sandbox import Sandbox

HOST = "sandbox host"
"""How the sandbox's own (host) namespace is named in messages."""

_CONNECT = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    socket.create_connection((host, port), timeout=timeout).close()
    print("connected")
except OSError as e:
    print(f"{type(e).__name__}: {e.strerror or e}", file=sys.stderr)
    sys.exit(1)
"""


def _where(netns: str | None) -> str:
    return netns if netns else HOST


def netns_names(sandbox: Sandbox) -> list[str]:
    """The named network namespaces of the sandbox (``ip -json netns list``)."""
    return [n["name"] for n in run_json(sandbox, ["ip", "-json", "netns", "list"])]


def addresses(sandbox: Sandbox, netns: str | None) -> list[IPv4Address]:
    """The global IPv4 addresses in ``netns`` (None: the sandbox host), in ``ip -json addr`` order."""
    out = []
    for link in run_json(sandbox, ip_argv(netns, "-json", "-4", "addr", "show", "scope", "global")):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                out.append(IPv4Address(a["local"]))
    return out


def owner(sandbox: Sandbox, address: IPv4Address) -> tuple[bool, str | None]:
    """Which namespace holds ``address``: ``(True, name)``, ``(True, None)`` for the host, ``(False, None)``.

    Reads the host and every namespace at once (two processes, ``state.read``).
    """
    runner = sandbox.runner()
    names, stale = state.read_netns(runner)
    live = state.read(runner, netns=sorted(names - stale))
    if address in live.host.owners():
        return True, None
    for ns, ns_state in live.namespaces.items():
        if address in ns_state.owners():
            return True, ns
    return False, None


def resolve(sandbox: Sandbox, b: str | IPv4Address) -> tuple[IPv4Address, str | None, bool]:
    """Turn a destination into ``(address, netns holding it, whether that netns is known)``.

    Raises:
        ValueError: ``b`` is neither an IPv4 address nor a namespace with a global IPv4 address.
    """
    try:
        addr = ip_address(str(b))
    except ValueError:
        addr = None
    if addr is not None:
        if not isinstance(addr, IPv4Address):
            raise ValueError(f"destination {b!r}: bridgenet networks are IPv4")
        known, ns = owner(sandbox, addr)
        return addr, ns, known
    names = netns_names(sandbox)
    if b not in names:
        raise ValueError(f"destination {b!r} is neither an IPv4 address nor a network namespace of the sandbox "
                         f"(namespaces: {', '.join(names) or 'none'})")
    found = addresses(sandbox, str(b))
    if not found:
        raise ValueError(f"network namespace {b!r} has no global IPv4 address to reach")
    return found[0], str(b), True


def tcp_connect(sandbox: Sandbox, address: str, port: int, *, netns: str | None = None,
                timeout: float = 1.0) -> CheckResult:
    """Open (and close) a TCP connection from ``netns`` to ``address:port``; no data is sent.

    Returns:
        ok when the three-way handshake completed; ``summary`` carries the
        error otherwise (``TimeoutError: timed out``, ``ConnectionRefusedError:
        Connection refused``, ``OSError: No route to host``...).
    """
    r = sandbox.run([sys.executable, "-c", _CONNECT, str(address), str(int(port)), f"{timeout:g}"],
                    netns=netns, timeout=None)  # the probe times out by itself
    if r.ok:
        return CheckResult(True, f"TCP connect to {address}:{port} succeeded", r.stdout + r.stderr)
    err = r.stderr.strip().splitlines()
    return CheckResult(False, err[-1] if err else f"exit {r.exit_code}", r.stdout + r.stderr)


def probe(sandbox: Sandbox, a: str | None, address: IPv4Address, *, port: int | None = None,
          timeout: float = 1.0) -> CheckResult:
    """One attempt: ``ping -c 1 -W TIMEOUT`` (or a TCP connect to ``port``) from ``a`` to ``address``."""
    if port is None:
        return ping(sandbox, str(address), netns=a, count=1, wait=max(timeout, 0.1))
    return tcp_connect(sandbox, str(address), port, netns=a, timeout=timeout)


# --- the report -----------------------------------------------------------------


def _link_hints(sandbox: Sandbox, netns: str | None) -> list[str]:
    hints = []
    for link in run_json(sandbox, ip_argv(netns, "-json", "link")):
        name = link.get("ifname", "?")
        if name == "lo":
            continue
        flags = link.get("flags", [])
        state = link.get("operstate", "UNKNOWN")
        role = f" (bridge port of {link['master']})" if link.get("master") else ""
        if "UP" not in flags:
            hints.append(f"{_where(netns)}: link {name}{role} is administratively DOWN "
                         f"(`ip{f' -n {netns}' if netns else ''} link set dev {name} up` brings it back)")
        elif state in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT"):
            why = "its veth peer is down" if state == "LOWERLAYERDOWN" or "NO-CARRIER" in flags else "no carrier"
            hints.append(f"{_where(netns)}: link {name}{role} is up but {state} ({why})")
    return hints


def _route_hints(sandbox: Sandbox, a: str | None, dst: IPv4Address) -> tuple[list[str], dict | None]:
    r = sandbox.run(ip_argv(a, "-json", "route", "get", str(dst)))
    if not r.ok:
        err = (r.stderr.strip().splitlines() or [f"exit {r.exit_code}"])[-1]
        return [f"{_where(a)}: no route to {dst}: {err}"], None
    try:
        rows = json.loads(r.stdout or "[]")
    except ValueError:
        return [], None
    return [], (rows[0] if rows else None)


def _neigh_hints(sandbox: Sandbox, netns: str | None, targets: set[str]) -> list[str]:
    hints = []
    for n in run_json(sandbox, ip_argv(netns, "-json", "neigh")):
        state = n.get("state", [])
        if n.get("dst") in targets and any(s in ("FAILED", "INCOMPLETE") for s in state):
            hints.append(f"{_where(netns)}: neighbour {n['dst']} dev {n.get('dev', '?')} is "
                         f"{'/'.join(state)} (no ARP reply)")
    return hints


_CHAIN = re.compile(r"^Chain (\S+) \(policy (\S+) (\d+) packets")
_RULE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(DROP|REJECT)\s+(.*)$")


def _iptables_hints(netns: str | None, table: str, text: str) -> list[str]:
    hints = []
    chain = "?"
    for line in text.splitlines():
        m = _CHAIN.match(line)
        if m:
            chain = m.group(1)
            if m.group(2) in ("DROP", "REJECT") and int(m.group(3)) > 0:
                hints.append(f"{_where(netns)}: iptables {table} {chain} policy {m.group(2)} has dropped "
                             f"{m.group(3)} packet(s)")
            continue
        m = _RULE.match(line)
        if m and int(m.group(1)) > 0:
            hints.append(f"{_where(netns)}: iptables {table} {chain}: {m.group(1)} packet(s) hit "
                         f"{m.group(3)} {' '.join(m.group(4).split())}")
    return hints


def _in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def state_report(sandbox: Sandbox, namespaces: list[str | None], *,
                 hints_for: tuple[str | None, IPv4Address] | None = None) -> str:
    """The state of ``namespaces`` as ``ip``/``tc``/``iptables`` print it, with what stands out first.

    Args:
        namespaces: names of namespaces, None for the sandbox host; each is
            shown once, in order.
        hints_for: ``(source, destination)`` of a failed check: adds the
            source's route lookup and its neighbour entries for the destination.

    Returns:
        text, one section per namespace, each command preceded by ``$ ``.
    """
    seen: list[str | None] = []
    for ns in namespaces:
        if ns not in seen:
            seen.append(ns)
    hints: list[str] = []
    if hints_for is not None:
        src, dst = hints_for
        route_hints, route = _route_hints(sandbox, src, dst)
        hints += route_hints
        targets = {str(dst)}
        if route and route.get("gateway"):
            targets.add(route["gateway"])
            fwd = sandbox.run(["cat", "/proc/sys/net/ipv4/ip_forward"])
            if src is not None and fwd.ok and fwd.stdout.strip() == "0":
                hints.append(f"{HOST}: net.ipv4.ip_forward=0: it does not route between its links")
        hints += _neigh_hints(sandbox, src, targets)
    sections = []
    for ns in seen:
        hints += _link_hints(sandbox, ns)
        lines = [f"--- {_where(ns)} ---"]
        show = [
            ip_argv(ns, "-br", "link"),
            ip_argv(ns, "-br", "-4", "addr"),
            ip_argv(ns, "route"),
            ip_argv(ns, "neigh"),
            ["tc", *(["-n", ns] if ns else []), "qdisc", "show"],
            _in_netns(ns, ["iptables", "-nvL"]),
            _in_netns(ns, ["iptables", "-t", "nat", "-nvL"]),
        ]
        for argv in show:
            r = sandbox.run(argv)
            text = (r.stdout if r.ok else (r.stderr or r.stdout)).rstrip("\n")
            if argv[0] == "tc" and r.ok:
                text = "\n".join(t for t in text.splitlines() if " noqueue " not in t) or "(only noqueue)"
            if argv[-1] == "-nvL" and r.ok:
                table = "nat" if "nat" in argv else "filter"
                hints += _iptables_hints(ns, table, sandbox.run(_in_netns(ns, [
                    "iptables", *(["-t", "nat"] if table == "nat" else []), "-nvxL"])).stdout)
            lines.append(f"$ {' '.join(argv)}")
            lines.append(text or "(nothing)")
        sections.append("\n".join(lines))
    head = "What stands out:\n" + ("\n".join(f"  - {h}" for h in hints) if hints else "  (nothing obvious)")
    return head + "\n\n" + "\n\n".join(sections)


def _describe(a: str | None, addr: IPv4Address, ns: str | None, known: bool, port: int | None) -> str:
    dest = f"{addr}" + (f" ({_where(ns)})" if known else " (held by no namespace of the sandbox)")
    how = f"TCP port {port}" if port is not None else "ping"
    return f"{_where(a)} -> {dest} by {how}"


# --- the assertions ---------------------------------------------------------------


def assert_reachable(sandbox: Sandbox, a: str | None, b: str | IPv4Address, *, port: int | None = None,
                     timeout: float = 3.0) -> CheckResult:
    """Assert that ``a`` reaches ``b`` within ``timeout`` seconds.

    Tries again (1 s per attempt) until ``timeout``: a freshly created veth
    can lose the first packet while ARP retries (≈1 s, see KERNEL-NOTES).

    Args:
        a: source namespace, None for the sandbox host.
        b: destination address, or a namespace name.
        port: TCP port to connect to instead of pinging (a refused
            connection counts as not reached).
        timeout: seconds in all.

    Returns:
        the successful :class:`~bridgenet.checks.CheckResult`.

    Raises:
        AssertionError: not reached; the message carries the state report.
        ValueError: ``b`` cannot be resolved.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this function
    addr, ns, known = resolve(sandbox, b)
    deadline = time.monotonic() + timeout
    attempts: list[str] = []
    while True:
        left = deadline - time.monotonic()
        r = probe(sandbox, a, addr, port=port, timeout=max(0.2, min(1.0, left)))
        if r.ok:
            return r
        attempts.append(r.summary)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    report = state_report(sandbox, [a, ns, None], hints_for=(a, addr))
    raise AssertionError(
        f"not reachable: {_describe(a, addr, ns, known, port)}: {attempts[-1]} "
        f"({len(attempts)} attempt(s) in {timeout:g} s)\n{diagnosis_lines(sandbox, a, addr, port)}\n{report}"
    )


def diagnosis_lines(sandbox: Sandbox, a: str | None, addr: IPv4Address, port: int | None) -> str:
    """What :func:`bridgenet.diagnose.diagnose` names as the first problem, and its fix (lines for a message)."""
    from ..diagnose import diagnose

    try:
        d = diagnose(a if a is not None else "host", str(addr), port=port, runner=sandbox.runner())
    except Exception as e:  # noqa: BLE001 - the report below still helps
        return f"diagnosis: could not run ({type(e).__name__}: {e})\n"
    if d.problem is None:
        return "diagnosis: nothing found on the path\n"
    fix = f"\n  fix: {d.problem.fix}" if d.problem.fix else ""
    return f"diagnosis ({d.problem.kind}): {d.problem.message}{fix}\n"


def assert_unreachable(sandbox: Sandbox, a: str | None, b: str | IPv4Address, *, port: int | None = None,
                       timeout: float = 1.0) -> CheckResult:
    """Assert that ``a`` does NOT reach ``b``: one attempt of ``timeout`` seconds fails.

    Returns:
        the failed :class:`~bridgenet.checks.CheckResult` (its ``summary``
        says how it failed: no reply, "Network is unreachable", a timeout...).

    Raises:
        AssertionError: it was reached; the message carries the state report.
        ValueError: ``b`` cannot be resolved.
    """
    __tracebackhide__ = True
    addr, ns, known = resolve(sandbox, b)
    r = probe(sandbox, a, addr, port=port, timeout=timeout)
    if not r.ok:
        return r
    report = state_report(sandbox, [a, ns, None])
    raise AssertionError(f"unexpectedly reachable: {_describe(a, addr, ns, known, port)}: {r.summary}\n\n{report}")


class Reach:
    """The assertions bound to one sandbox (the ``bridgenet_reach`` fixture).

    ``reach.assert_reachable("container4", "container5")``,
    ``reach.assert_unreachable("container4", "10.201.0.5", port=7000)``.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def __repr__(self) -> str:
        return f"<Reach in {self.sandbox!r}>"

    def assert_reachable(self, a: str | None, b: str | IPv4Address, *, port: int | None = None,
                         timeout: float = 3.0) -> CheckResult:
        """See :func:`assert_reachable`."""
        __tracebackhide__ = True
        return assert_reachable(self.sandbox, a, b, port=port, timeout=timeout)

    def assert_unreachable(self, a: str | None, b: str | IPv4Address, *, port: int | None = None,
                           timeout: float = 1.0) -> CheckResult:
        """See :func:`assert_unreachable`."""
        __tracebackhide__ = True
        return assert_unreachable(self.sandbox, a, b, port=port, timeout=timeout)

    def report(self, *namespaces: str | None) -> str:
        """The state report of ``namespaces`` (default: every namespace and the sandbox host)."""
        spaces = list(namespaces) or [None, *netns_names(self.sandbox)]
        return state_report(self.sandbox, spaces)
