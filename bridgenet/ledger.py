"""The state file: what bridgenet created for a network, and how to undo it.

One JSON file per network, ``/run/bridgenet/NAME.json`` on the host the
network lives on (a sandbox has its own private ``/run``). It is written
*before* each change (an entry starts as ``"intent"`` and becomes ``"done"``
once its commands ran), so it is never behind the kernel: after a crash,
even ``kill -9``, a new process can undo everything the file names. ``/run``
is a tmpfs, so the file goes away with a reboot, as do the links it
describes.

Each entry holds a step's undo commands with their effects, so undoing
needs no network definition: ``bridgenet clean`` works from the files alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator

import attrs

from .commands import Command, command_from_dict, command_to_dict
from . import interrupts
from .errors import LockedError

LEDGER_DIR = "run/bridgenet"
"""Relative to the host's file system root: ``/run/bridgenet``."""

VERSION = 1


_JSON: dict[int, tuple[Command, str]] = {}
"""``id(command) -> (command, its JSON)``; holding the command keeps its id from being reused."""


def _command_json(c: Command) -> str:
    hit = _JSON.get(id(c))
    if hit is None or hit[0] is not c:
        if len(_JSON) > 200_000:
            _JSON.clear()
        hit = _JSON[id(c)] = (c, json.dumps(command_to_dict(c)))
    return hit[1]


@attrs.define
class Entry:
    """One step that bridgenet ran (or was about to run) for a network.

    Attributes:
        key: the step's key, e.g. ``"link br0"``.
        covered_by: key of the step whose undo removes this one too.
        owns: True when the step created its object (its undo deletes it).
        status: ``"intent"`` (written before running) or ``"done"``.
        undo: commands that undo the step, in order.
    """

    key: str
    covered_by: str | None
    owns: bool
    status: str
    undo: list[Command]

    def to_json(self) -> str:
        """``json.dumps(self.to_dict())``, with each undo command's text made once (saves are frequent)."""
        undo = ", ".join(_command_json(c) for c in self.undo)
        return (f'{{"key": {json.dumps(self.key)}, "covered_by": {json.dumps(self.covered_by)}, '
                f'"owns": {json.dumps(self.owns)}, "status": {json.dumps(self.status)}, "undo": [{undo}]}}')

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "covered_by": self.covered_by,
            "owns": self.owns,
            "status": self.status,
            "undo": [command_to_dict(c) for c in self.undo],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        return cls(d["key"], d.get("covered_by"), bool(d.get("owns")), d.get("status", "intent"),
                   [command_from_dict(c) for c in d.get("undo", [])])


@attrs.define
class Ledger:
    """The state file of one network.

    Attributes:
        network: the network's name.
        directory: where the file lives, as seen from this process, or None
            to keep it in memory only (dry-runs, recording runners).
        entries: in the order the steps ran.
    """

    network: str
    directory: str | None
    entries: list[Entry] = attrs.field(factory=list)
    identity: dict | None = None
    """What the network was when it came up (``Network.identity()``), to refuse another one of that name."""

    @property
    def path(self) -> str | None:
        return None if self.directory is None else os.path.join(self.directory, f"{self.network}.json")

    @classmethod
    def open(cls, fs_root: str | None, network: str) -> Ledger:
        """Load the network's state file from ``fs_root`` (empty ledger if there is none)."""
        directory = None if fs_root is None else os.path.join(fs_root, LEDGER_DIR)
        ledger = cls(network, directory)
        path = ledger.path
        if path and os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            ledger.entries = [Entry.from_dict(e) for e in data.get("entries", [])]
            ledger.identity = data.get("identity")
        return ledger

    @staticmethod
    def names(fs_root: str | None) -> list[str]:
        """Names of the networks that have a state file under ``fs_root``."""
        if fs_root is None:
            return []
        directory = os.path.join(fs_root, LEDGER_DIR)
        try:
            files = os.listdir(directory)
        except OSError:
            return []
        return sorted(f[:-5] for f in files if f.endswith(".json") and not f.startswith("."))

    def keys(self) -> set[str]:
        return {e.key for e in self.entries}

    def add(self, entries: Iterable[Entry]) -> None:
        """Append entries and save.

        A key already recorded keeps its entry (its place, ``owns`` and
        status), and gains the new entry's undo commands it lacks, first:
        when a step runs again in another form (the same NAT rule now with a
        tag comment), what the new run adds is undone too.
        """
        by_key = {e.key: e for e in self.entries}
        for e in entries:
            old = by_key.get(e.key)
            if old is None:
                self.entries.append(e)
                by_key[e.key] = e
            elif e.undo:
                old.undo = [*(u for u in e.undo if u not in old.undo), *old.undo]
        self.save()

    def mark_done(self, keys: Iterable[str], *, save: bool = True) -> None:
        """Mark entries done; ``save=False`` leaves the write to the next save (an entry still
        marked ``intent`` on disk is undone the same way: undo reads live state)."""
        keys = set(keys)
        for e in self.entries:
            if e.key in keys:
                e.status = "done"
        if save:
            self.save()

    def drop(self, keys: Iterable[str]) -> None:
        """Forget entries (their steps have been undone) and save; delete the file when empty."""
        keys = set(keys)
        self.entries = [e for e in self.entries if e.key not in keys]
        self.save()

    def save(self) -> None:
        """Write the file atomically (write a temporary file, fsync, rename); remove it when empty."""
        path = self.path
        if path is None:
            return
        if not self.entries:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        os.makedirs(self.directory, mode=0o755, exist_ok=True)  # type: ignore[arg-type]
        tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
        head = json.dumps({"version": VERSION, "network": self.network, "identity": self.identity})
        # one entry per line, through json's C encoder (indent= takes the pure-Python one: ≈10x slower,
        # 0.14 s per save at 100 containers, measured here)
        text = head[:-1] + ', "entries": [\n' + ",\n".join(e.to_json() for e in self.entries) + "\n]}\n"
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


HOST_LOCK_WAIT = 600.0
"""Seconds a process waits for the host-wide lock before giving up (a paused or hung holder)."""

TMP_SUFFIX = ".tmp"


def _network_lock(directory: str, network: str) -> int:
    """Take ``NAME.lock`` (flock(2), non-blocking) and return its descriptor.

    The file is unlinked by its holder before it is closed (:func:`_release`),
    so none is left behind; a process that opened the file just before the
    unlink may then hold a lock on a name that no longer exists, so after
    taking the lock we check that the path still names our file, else retry.
    """
    path = os.path.join(directory, f"{network}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another bridgenet process (PID {holder}) is changing network {network} on this host; "
                f"wait for it to finish (its lock: /{LEDGER_DIR}/{network}.lock)"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def _release(directory: str, network: str, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, f"{network}.lock"))
    os.close(fd)


def _host_lock(directory: str, wait: float) -> int:
    """Take the host-wide lock: flock(2) on the directory ``/run/bridgenet`` itself (blocking, with a deadline).

    Locking the directory leaves no lock file behind.

    Raises:
        LockedError: still held by another process after ``wait`` seconds.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= deadline or interrupts.pending() is not None:
            os.close(fd)
            interrupts.check()
            raise LockedError(f"another bridgenet process has held the host-wide lock on /{LEDGER_DIR} for "
                              f"more than {wait:g} s; nothing was changed")
        if not told and now + wait - deadline > 1.0:
            print(f"bridgenet: waiting for another bridgenet process to finish (host-wide lock on /{LEDGER_DIR})",
                  file=sys.stderr, flush=True)
            told = True
        time.sleep(0.005)


def _sweep(directory: str) -> None:
    """Remove temporary state files a killed process left (only called under the host-wide lock)."""
    for name in os.listdir(directory):
        if name.endswith(TMP_SUFFIX) and ".json." in name:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


@contextlib.contextmanager
def locked(fs_root: str | None, network: str | None, *, wait: float | None = None) -> Iterator[None]:
    """Hold the network's lock and the host-wide lock for the ``with`` block.

    * The network's lock (``/run/bridgenet/NAME.lock``) is taken first and
      never waited for: two processes changing one network at once would
      each plan against a state the other is changing, so the second is
      refused. ``network=None`` (``clean``) takes no network lock.
    * The host-wide lock (the directory ``/run/bridgenet``) is then waited
      for: everything shared between networks (``ip_forward``, bridges one
      network made and another wants, iptables chains, the state files
      themselves) is read, changed and recorded by one process at a time,
      so concurrent runs end where some serial order of them would.

    Raises:
        LockedError: another process holds the network's lock (its PID is
            named), or the host-wide lock past ``wait`` seconds.
    """
    if fs_root is None:
        yield
        return
    directory = os.path.join(fs_root, LEDGER_DIR)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    net_fd = _network_lock(directory, network) if network is not None else None
    try:
        host_fd = _host_lock(directory, HOST_LOCK_WAIT if wait is None else wait)
        try:
            _sweep(directory)
            yield
        finally:
            os.close(host_fd)
    finally:
        if net_fd is not None:
            _release(directory, network, net_fd)  # type: ignore[arg-type]
