"""Where a host's state files and locks live: :class:`StateStore`, :class:`LocalStore`, :func:`store_for`.

A host keeps one state file per network in ``/run/bridgenet`` (``ledger.py``)
and two flock(2) locks: the network's lock file ``NAME.lock`` and the
host-wide lock on the directory itself (see :func:`bridgenet.ledger.locked`).

* :class:`LocalStore` reaches them as files of this process, under a root
  (``/`` for this host, ``/proc/PID/root`` for a sandbox): os calls and
  flock(2), no process started;
* :class:`bridgenet.remote_store.RunnerStore` reaches them through a
  runner's commands (``cat``, ``tee``, ``mv``, flock(1)), for a host whose
  file system this process cannot see (an :class:`~bridgenet.runners.SshRunner`).

:func:`store_for` picks one for a runner: its ``fs_root`` when it has one,
else its ``state_store()``, else none (a dry-run keeps no state).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from typing import ContextManager, Protocol

import attrs

from . import interrupts
from .errors import LockedError

LEDGER_DIR = "run/bridgenet"
"""Relative to the host's file system root: ``/run/bridgenet``."""

TMP_SUFFIX = ".tmp"
"""Ends the temporary file a save writes before renaming it (``NAME.json.PID.tmp``)."""


class StateStore(Protocol):
    """What ``ledger.py`` needs of a host's ``/run/bridgenet``.

    ``read``/``names`` see what the last ``write``/``remove`` left; all
    writes happen under :meth:`locked` (the host-wide lock).
    """

    where: str
    """The host in messages: ``"this host"`` or ``"host root@198.51.100.11"``."""

    def read(self, network: str) -> str | None:
        """The text of ``NAME.json``, or None when there is none."""

    def names(self) -> list[str]:
        """Networks with a state file, sorted."""

    def write(self, network: str, text: str) -> None:
        """Replace ``NAME.json`` atomically (a temporary file renamed over it), making the directory."""

    def remove(self, network: str) -> None:
        """Delete ``NAME.json`` (none is fine)."""

    def locked(self, network: str | None, wait: float) -> ContextManager[None]:
        """Hold the network's lock (unless None), then the host-wide lock (waited for up to ``wait`` s).

        Raises:
            LockedError: the network's lock is held (naming its holder), or
                the host-wide lock past ``wait`` seconds.
        """


@attrs.frozen
class LocalStore:
    """The state files under ``fs_root`` of this process's file system (os calls, flock(2)).

    Attributes:
        fs_root: the host's root as seen from here (``/``, ``/proc/PID/root``).
    """

    fs_root: str
    where: str = "this host"

    @property
    def directory(self) -> str:
        return os.path.join(self.fs_root, LEDGER_DIR)

    def path(self, network: str) -> str:
        return os.path.join(self.directory, f"{network}.json")

    def read(self, network: str) -> str | None:
        try:
            with open(self.path(network)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        try:
            files = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(f[:-5] for f in files if f.endswith(".json") and not f.startswith("."))

    def write(self, network: str, text: str) -> None:
        """Write a temporary file, fsync it, rename it over ``NAME.json`` (rename(2) is atomic)."""
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        path = self.path(network)
        tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
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

    def remove(self, network: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(network))

    @contextlib.contextmanager
    def locked(self, network: str | None, wait: float) -> Iterator[None]:
        directory = self.directory
        os.makedirs(directory, mode=0o755, exist_ok=True)
        net_fd = _network_lock(directory, network) if network is not None else None
        try:
            host_fd = _host_lock(directory, wait)
            try:
                _sweep(directory)
                yield
            finally:
                os.close(host_fd)
        finally:
            if net_fd is not None:
                _release(directory, network, net_fd)  # type: ignore[arg-type]


def store_for(runner: object) -> StateStore | None:
    """The store of the host ``runner`` acts on.

    ``runner.fs_root`` set (ShRunner, a sandbox's runner): a
    :class:`LocalStore` there; else ``runner.state_store()`` if it has one
    (SshRunner: a :class:`~bridgenet.remote_store.RunnerStore`, the same
    object each time); else None: no state (dry-run, recording runners).
    """
    fs_root = getattr(runner, "fs_root", None)
    if fs_root is not None:
        return LocalStore(fs_root)
    make = getattr(runner, "state_store", None)
    return make() if make is not None else None


def as_store(where: StateStore | str | None) -> StateStore | None:
    """``where`` as a store: a path is a :class:`LocalStore` root, None stays None."""
    if where is None or not isinstance(where, (str, os.PathLike)):
        return where  # type: ignore[return-value]
    return LocalStore(os.fspath(where))


def locked_message(network: str, holder: str, where: str) -> str:
    """The LockedError text for a network lock held by ``holder`` (a PID, maybe "PID on HOST")."""
    return (f"another bridgenet process (PID {holder}) is changing network {network} on {where}; "
            f"wait for it to finish (its lock: /{LEDGER_DIR}/{network}.lock)")


def host_lock_message(wait: float, where: str) -> str:
    """The LockedError text for a host-wide lock still held after ``wait`` seconds."""
    return (f"another bridgenet process has held the host-wide lock on /{LEDGER_DIR}{_of(where)} for "
            f"more than {wait:g} s; nothing was changed")


def waiting_message(where: str) -> str:
    return f"bridgenet: waiting for another bridgenet process to finish (host-wide lock on /{LEDGER_DIR}{_of(where)})"


def _of(where: str) -> str:
    return "" if where == "this host" else f" of {where}"


# --- flock(2) on local files ----------------------------------------------------------------


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
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(locked_message(network, holder, "this host")) from None
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
            raise LockedError(host_lock_message(wait, "this host"))
        if not told and now + wait - deadline > 1.0:
            print(waiting_message("this host"), file=sys.stderr, flush=True)
            told = True
        time.sleep(0.005)


def _sweep(directory: str) -> None:
    """Remove temporary state files a killed process left (only called under the host-wide lock)."""
    for name in os.listdir(directory):
        if name.endswith(TMP_SUFFIX) and ".json." in name:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
