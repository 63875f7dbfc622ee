"""The sockets a process and its descendants hold, read from ``/proc`` (no extra process).

A socket is an open file: ``readlink /proc/PID/fd/N`` reads ``socket:[INODE]``
(proc(5)). The kernel lists the sockets of a network namespace in
``/proc/PID/net/tcp``, ``tcp6``, ``udp``, ``udp6`` (proc(5), the PID's own
namespace), one per line with its local address, state and inode; matching
the inodes tells which of them belong to the process. Works as root and
rootless alike: the processes of a rootless sandbox run as the same user, in
a user namespace that user owns.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable, Iterator

import attrs

TCP_LISTEN = 0x0A
"""``st`` of a listening TCP socket in ``/proc/net/tcp`` (``TCP_LISTEN`` in include/net/tcp_states.h)."""

WILDCARDS = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


@attrs.frozen
class Socket:
    """One socket of a process, as ``/proc/PID/net/{tcp,tcp6,udp,udp6}`` shows it.

    Attributes:
        protocol: ``"tcp"`` or ``"udp"``.
        address: the local address (``0.0.0.0`` / ``::``: every address).
        port: the local port.
        state: the kernel's state number (``0x0A``: TCP listening).
        inode: the socket's inode (``socket:[INODE]``).
        pid: the process (host PID) holding it.
    """

    protocol: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    state: int
    inode: int
    pid: int

    @property
    def listening(self) -> bool:
        """TCP: in LISTEN state; UDP: bound (a UDP socket receives as soon as it has a port)."""
        return self.state == TCP_LISTEN if self.protocol == "tcp" else self.port != 0

    def serves(self, port: int, address: str | None = None) -> bool:
        """Whether it listens on ``port`` at ``address`` (a wildcard socket serves every address; None: any)."""
        if not self.listening or self.port != port:
            return False
        if address is None or self.address in WILDCARDS:
            return True
        want = ipaddress.ip_address(address)
        mapped = getattr(self.address, "ipv4_mapped", None)
        return self.address == want or (mapped is not None and mapped == want)


def children(pid: int) -> list[int]:
    """The children of ``pid``: ``/proc/PID/task/TID/children`` of each thread (proc(5)), else a scan of ``/proc``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    found = False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
            found = True
        except (OSError, ValueError):
            continue
    return kids if found else _scan_children(pid)


def _scan_children(pid: int) -> list[int]:
    # Kernels without CONFIG_PROC_CHILDREN: the parent PID is field 4 of /proc/PID/stat.
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop(0)
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets open in ``pid`` (``/proc/PID/fd/*`` reading ``socket:[INODE]``); empty when gone.

    Raises:
        PermissionError: ``/proc/PID/fd`` may not be read (another user's process).
    """
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # The kernel prints the address as 32-bit words in host byte order (proc(5)).
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def parse_table(text: str, protocol: str, pid: int) -> Iterator[Socket]:
    """The sockets of one ``/proc/PID/net/{tcp,tcp6,udp,udp6}`` table (header line skipped)."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        host, _, port = parts[1].partition(":")
        yield Socket(protocol, _address(host), int(port, 16), int(parts[3], 16), int(parts[9]), pid)


def sockets(pids: Iterable[int], protocol: str = "tcp") -> list[Socket]:
    """The ``protocol`` (``"tcp"``/``"udp"``) sockets, IPv4 and IPv6, held by the processes ``pids``.

    Each process's tables are read in its own network namespace
    (``/proc/PID/net/...``), so a program started by ``ip netns exec`` is
    seen in its namespace even though its parent ``nsenter`` is not there.

    Raises:
        PermissionError: the file descriptors of one of ``pids`` may not be read.
    """
    found: list[Socket] = []
    tables: dict[int, list[Socket]] = {}  # per network namespace (inode of /proc/PID/ns/net)
    for pid in pids:
        inodes = socket_inodes(pid)
        if not inodes:
            continue
        try:
            ns = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            ns = -pid
        if ns not in tables:
            tables[ns] = []
            for suffix in ("", "6"):
                try:
                    with open(f"/proc/{pid}/net/{protocol}{suffix}") as f:
                        tables[ns] += parse_table(f.read(), protocol, pid)
                except OSError:  # gone, or no IPv6 in this kernel
                    continue
        found += [attrs.evolve(s, pid=pid) for s in tables[ns] if s.inode in inodes]
    return found
