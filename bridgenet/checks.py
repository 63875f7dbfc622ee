"""Checks a person would make: ping, a TCP echo, who the far side sees.

All of them run inside a :class:`bridgenet.sandbox.Sandbox` (in its host, or
in one of its namespaces) and only ever target addresses of that sandbox.
Each returns a :class:`CheckResult` instead of raising, so callers can expect
failure as readily as success.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox


@attrs.frozen
class CheckResult:
    """Outcome of a check.

    Attributes:
        ok: whether it succeeded.
        summary: one line for a person, e.g. ``"1/1 replies"`` or
            ``"connect: Network is unreachable"``.
        output: the full stdout and stderr of the command(s).
        value: what the check measured, if anything (e.g. the peer address
            the server saw).
    """

    ok: bool
    summary: str
    output: str = ""
    value: str | None = None


def ip_argv(netns: str | None, *args: str) -> list[str]:
    """``ip [-n NETNS] ARGS...`` (ip(8) ``-n``); None: the sandbox host."""
    return ["ip", *(["-n", netns] if netns else []), *args]


def run_json(sandbox: Sandbox, argv: list[str], *, check: bool = False) -> list[dict]:
    """Run ``argv`` (an ``ip -json ...`` or ``tc -json ...``) in the sandbox and parse its output.

    Returns:
        the parsed list; with ``check`` false, ``[]`` when the command failed
        or printed no JSON.

    Raises:
        CommandError: with ``check``, when the command failed.
    """
    r = sandbox.run(argv, check=check)
    if not r.ok:
        return []
    try:
        return json.loads(r.stdout or "[]")
    except ValueError:
        if check:
            raise
        return []


def ping(sandbox: Sandbox, dst: str, *, netns: str | None = None, count: int = 1,
         wait: float = 1.0) -> CheckResult:
    """``ping -c COUNT -W WAIT DST`` from the sandbox host or from ``netns``.

    Args:
        dst: an address owned by a namespace of this sandbox.
        count: echo requests to send (bounded: at most 10).
        wait: seconds to wait for each reply (ping(8) ``-W``).

    Returns:
        ok when at least one reply came back; ``summary`` carries ping's
        statistics line or its error (e.g. "Network is unreachable").
    """
    count = max(1, min(int(count), 10))
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", f"{wait:g}", str(dst)]
    r = sandbox.run(argv, netns=netns, timeout=count * wait + 10)
    text = (r.stdout + r.stderr).strip()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    if m:
        sent, got = int(m.group(1)), int(m.group(2))
        summary = f"{got}/{sent} replies"
        ok = got > 0
    else:
        ok = False
        err = r.stderr.strip().splitlines()
        summary = err[-1] if err else f"ping exited {r.exit_code}"
        summary = re.sub(r"^ping: ", "", summary)
    return CheckResult(ok and r.exit_code == 0, summary, text)


_SERVER = r"""
import socket, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    with c:
        c.settimeout(5)
        try:
            data = c.recv(4096)
        except OSError:
            continue
        if mode == "whois":
            c.sendall(peer[0].encode() + b"\n")
            print("peer", peer[0], flush=True)
        else:
            c.sendall(data)
"""

_CLIENT = r"""
import socket, sys
host, port, payload, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    c = socket.create_connection((host, port), timeout=timeout)
    c.settimeout(timeout)
    c.sendall(payload.encode())
    got = b""
    while not got.endswith(b"\n") and len(got) < 4096:
        chunk = c.recv(4096)
        if not chunk:
            break
        got += chunk
    print(got.decode(errors="replace"), end="")
except OSError as e:
    print(f"{type(e).__name__}: {e.strerror or e}", file=sys.stderr)
    sys.exit(1)
"""


@attrs.define
class TcpServer:
    """A tiny TCP server running in a namespace of a sandbox (see :func:`tcp_server`).

    ``mode="echo"`` sends back what it receives; ``mode="whois"`` answers
    with the source address it saw, which is how to observe NAT.
    """

    proc: subprocess.Popen
    address: str
    port: int
    mode: str

    def seen_peers(self) -> list[str]:
        """Stop the server and return the peer addresses it saw (``whois`` mode)."""
        self.stop()
        out = self.proc.stdout.read() if self.proc.stdout else ""
        return re.findall(r"^peer (\S+)$", out, re.M)

    def stop(self) -> None:
        from .sandbox import Sandbox

        Sandbox.terminate(self.proc)


@contextmanager
def tcp_server(sandbox: Sandbox, address: str, port: int, *, netns: str | None = None,
               mode: str = "echo") -> Iterator[TcpServer]:
    """Run a TCP server on ``address:port`` inside ``netns`` for the ``with`` block.

    Waits (up to 5 s) until it listens. It is killed when the block ends, and
    in any case when the sandbox closes (it lives in the sandbox's PID
    namespace).
    """
    proc = sandbox.popen([sys.executable, "-c", _SERVER, str(address), str(port), mode], netns=netns,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = TcpServer(proc, str(address), port, mode)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "listening":
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"TCP server on {address}:{port} did not start: {line} {err}".strip())
        yield server
    finally:
        server.stop()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def tcp_request(sandbox: Sandbox, address: str, port: int, payload: str = "hello\n", *,
                netns: str | None = None, timeout: float = 3.0) -> CheckResult:
    """Connect from ``netns`` to ``address:port``, send ``payload`` (one line), read one line back.

    Returns:
        ok when a reply came back; ``value`` is the reply without its newline.
    """
    if not payload.endswith("\n"):
        payload += "\n"
    start = time.monotonic()
    r = sandbox.run([sys.executable, "-c", _CLIENT, str(address), str(port), payload, str(timeout)],
                    netns=netns, timeout=timeout + 10)
    took = time.monotonic() - start
    if r.ok and r.stdout:
        reply = r.stdout.rstrip("\n")
        return CheckResult(True, f"reply {reply!r} in {took * 1000:.0f} ms", r.stdout + r.stderr, reply)
    err = r.stderr.strip().splitlines()
    return CheckResult(False, err[-1] if err else "no reply", r.stdout + r.stderr)
