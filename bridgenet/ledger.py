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

Where the files and the locks are reached is a store (``state_store.py``):
local files under a runner's ``fs_root``, or a remote host's own
``/run/bridgenet`` through its runner (``remote_store.py``, over SSH).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator

import attrs

from .commands import Command, command_from_dict, command_to_dict
from .state_store import LEDGER_DIR, TMP_SUFFIX, LocalStore, StateStore, as_store  # noqa: F401

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
        store: where the file lives (``state_store.py``: a local root, or a
            remote host through its runner), or None to keep it in memory
            only (dry-runs, recording runners).
        entries: in the order the steps ran.
        recorded: the file existed when the ledger was opened.
    """

    network: str
    store: StateStore | None
    entries: list[Entry] = attrs.field(factory=list)
    identity: dict | None = None
    """What the network was when it came up (``Network.identity()``), to refuse another one of that name."""
    recorded: bool = False

    @property
    def directory(self) -> str | None:
        """The local directory of the file, or None (remote, or in memory)."""
        return self.store.directory if isinstance(self.store, LocalStore) else None

    @property
    def path(self) -> str | None:
        """The file's local path, or None (remote, or in memory)."""
        return self.store.path(self.network) if isinstance(self.store, LocalStore) else None

    @classmethod
    def open(cls, where: StateStore | str | None, network: str) -> Ledger:
        """Load the network's state file (empty ledger if there is none).

        ``where``: a store (``store_for(runner)``), or a local root
        (``runner.fs_root``, e.g. ``/proc/PID/root``); None: in memory.
        """
        store = as_store(where)
        ledger = cls(network, store)
        text = store.read(network) if store is not None else None
        if text is not None:
            data = json.loads(text)
            ledger.entries = [Entry.from_dict(e) for e in data.get("entries", [])]
            ledger.identity = data.get("identity")
            ledger.recorded = True
        return ledger

    @staticmethod
    def names(where: StateStore | str | None) -> list[str]:
        """Names of the networks that have a state file (``where`` as for :meth:`open`)."""
        store = as_store(where)
        return store.names() if store is not None else []

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
        """Write the file atomically (a temporary file renamed over it); remove it when empty."""
        if self.store is None:
            return
        if not self.entries:
            self.store.remove(self.network)
            return
        head = json.dumps({"version": VERSION, "network": self.network, "identity": self.identity})
        # one entry per line, through json's C encoder (indent= takes the pure-Python one: ≈10x slower,
        # 0.14 s per save at 100 containers, measured here)
        text = head[:-1] + ', "entries": [\n' + ",\n".join(e.to_json() for e in self.entries) + "\n]}\n"
        self.store.write(self.network, text)


HOST_LOCK_WAIT = 600.0
"""Seconds a process waits for the host-wide lock before giving up (a paused or hung holder)."""


@contextlib.contextmanager
def locked(where: StateStore | str | None, network: str | None, *, wait: float | None = None) -> Iterator[None]:
    """Hold the network's lock and the host-wide lock for the ``with`` block.

    ``where``: the host's store (:func:`bridgenet.state_store.store_for`), or
    a local root (``runner.fs_root``); None: no locks (dry-run).

    * The network's lock (``/run/bridgenet/NAME.lock``) is taken first and
      never waited for: two processes changing one network at once would
      each plan against a state the other is changing, so the second is
      refused. ``network=None`` (``clean``) takes no network lock.
    * The host-wide lock (the directory ``/run/bridgenet``) is then waited
      for: everything shared between networks (``ip_forward``, bridges one
      network made and another wants, iptables chains, the state files
      themselves) is read, changed and recorded by one process at a time,
      so concurrent runs end where some serial order of them would.

    Both are flock(2) locks, taken by this process on local files
    (``LocalStore``) or by one remote process for the block (``RunnerStore``,
    flock(1) over SSH): the same locks either way.

    Raises:
        LockedError: another process holds the network's lock (its PID is
            named), or the host-wide lock past ``wait`` seconds.
        HostUnreachableError: (remote) ssh could not reach the host.
    """
    store = as_store(where)
    if store is None:
        yield
        return
    with store.locked(network, HOST_LOCK_WAIT if wait is None else wait):
        yield
