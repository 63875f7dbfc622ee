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
from collections.abc import Iterable, Iterator

import attrs

from .commands import Command, command_from_dict, command_to_dict
from .errors import LockedError

LEDGER_DIR = "run/bridgenet"
"""Relative to the host's file system root: ``/run/bridgenet``."""

VERSION = 1


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
        """Append entries (a key already recorded keeps its first entry) and save."""
        have = self.keys()
        for e in entries:
            if e.key not in have:
                self.entries.append(e)
                have.add(e.key)
        self.save()

    def mark_done(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        for e in self.entries:
            if e.key in keys:
                e.status = "done"
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
        tmp = f"{path}.{os.getpid()}.tmp"
        data = {"version": VERSION, "network": self.network, "entries": [e.to_dict() for e in self.entries]}
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


@contextlib.contextmanager
def locked(fs_root: str | None, network: str) -> Iterator[None]:
    """Hold the network's lock (``/run/bridgenet/NAME.lock``, flock(2)) for the ``with`` block.

    Two processes changing one network at once would each plan against a
    state the other is changing, and one's rollback could undo the other's
    work; the second is refused instead.

    Raises:
        LockedError: another process holds the lock (its PID is named).
    """
    if fs_root is None:
        yield
        return
    directory = os.path.join(fs_root, LEDGER_DIR)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, f"{network}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(
                f"another bridgenet process (PID {holder}) is changing network {network} on this host; "
                f"wait for it to finish (its lock: /{LEDGER_DIR}/{network}.lock)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
