"""The probe of ``bridgenet diagnose``: does traffic actually pass? (ping, a TCP connect, a UDP exchange).

Bounded: at most two pings 0.2 s apart waiting ``wait`` seconds, or two
connection/datagram attempts of ``wait`` seconds each. Nothing is sent but
to the address given, which the caller has checked belongs to a namespace
on this host (or the sandbox's upstream).
"""

from __future__ import annotations

import re
import sys

import attrs

from .runners import Runner

_SOCKET = r"""
import socket, sys, time
host, port, proto, wait, sport = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
last = "no reply"
for attempt in range(2):
    try:
        if proto == "tcp":
            socket.create_connection((host, port), timeout=wait).close()
            print("passed: connected"); sys.exit(0)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", sport))
        s.settimeout(wait)
        s.connect((host, port))
        s.send(b"bridgenet diagnose probe\n")
        s.recv(4096)
        print("passed: a reply came back"); sys.exit(0)
    except ConnectionRefusedError:
        print("refused: " + ("connection refused" if proto == "tcp" else "ICMP port unreachable")); sys.exit(1)
    except (socket.timeout, TimeoutError):
        last = "no reply" if proto == "udp" else "timed out"
    except OSError as e:
        print("error: " + (e.strerror or str(e))); sys.exit(1)
    finally:
        try:
            s.close()
        except NameError:
            pass
    time.sleep(0.1)
print("failed: " + last)
sys.exit(1)
"""


@attrs.frozen
class Probe:
    """What the probe did: ``method`` (ping, tcp, udp), ``target`` (``ADDR`` or ``ADDR:PORT``), ``passed``, ``summary``.

    ``refused``: the destination (or a firewall on the way, ``-j REJECT``)
    answered that nothing listens there.
    """

    method: str
    target: str
    passed: bool
    summary: str
    refused: bool = False

    def to_dict(self) -> dict:
        return {"method": self.method, "target": self.target, "passed": self.passed, "summary": self.summary}


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def ping(runner: Runner, netns: str | None, address: str, *, wait: float = 1.0, size: int | None = None) -> Probe:
    """``ping -n -c 2 -i 0.2 -W WAIT [-M do -s SIZE] ADDRESS`` from ``netns`` (ping(8); ``-M do``: don't fragment)."""
    argv = [*_prefix(netns), "ping", "-n", "-c", "2", "-i", "0.2", "-W", f"{wait:g}"]
    if size is not None:
        argv += ["-M", "do", "-s", str(size)]
    r = runner.exec([*argv, address], check=False, timeout=2 * wait + 5)
    text = (r.stdout + r.stderr).strip()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    what = f"ping{f' -M do -s {size}' if size is not None else ''}"
    if m:
        got = int(m.group(2))
        return Probe(what, address, got > 0, f"{got}/{m.group(1)} replies")
    err = (r.stderr.strip().splitlines() or [f"ping exited {r.exit_code}"])[-1]
    return Probe(what, address, False, re.sub(r"^ping: ", "", err))


def socket_probe(runner: Runner, netns: str | None, address: str, port: int, *, udp: bool = False,
                 wait: float = 1.0, sport: int = 0) -> Probe:
    """A TCP connect (nothing sent) or a UDP datagram awaiting a reply, from ``netns`` to ``address:port``.

    ``sport``: the UDP source port (0: any); the walk passes the one of a
    stale conntrack entry, so the probe meets what the application meets.
    """
    proto = "udp" if udp else "tcp"
    r = runner.exec([*_prefix(netns), sys.executable, "-c", _SOCKET, address, str(port), proto, f"{wait:g}",
                     str(sport)], check=False, timeout=2 * wait + 5)
    line = (r.stdout.strip().splitlines() or [r.stderr.strip() or f"exit {r.exit_code}"])[-1]
    outcome, _, text = line.partition(": ")
    target = f"{address}:{port}"
    return Probe(proto, target, outcome == "passed", text or line, refused=outcome == "refused")
