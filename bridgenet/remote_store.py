"""State files and locks of a host reached only through a runner's commands: :class:`RunnerStore`.

For a host whose file system this process cannot see (one reached by
:class:`~bridgenet.runners.SshRunner`), the same files as
:class:`~bridgenet.state_store.LocalStore`'s, on that host, through commands:

* read: ``cat`` (a missing file means no state file); list: a ``*.json`` glob;
* write: one ``sh -c`` that makes the directory, writes ``NAME.json.PID.tmp``
  from stdin (``tee``) and renames it over ``NAME.json`` (``mv -f``,
  rename(2): a reader sees the old file or the new one, never half);
* locks: one long-lived remote process holds both, the same flock(2) locks
  as a local bridgenet process takes (flock(1), util-linux), so local and
  remote runs on one host exclude each other. It opens and locks
  ``NAME.lock`` (``flock -n``; busy: it prints the holder written in the
  file and exits 75), checks that the path still names the file it locked
  (as ``_network_lock`` does), writes ``PID on HOST`` of this process into
  it, then locks the directory (``flock -w WAIT``; past it: exit 76),
  removes temporary files left by a killed save, prints ``locked`` and
  every state file (``SIZE NAME`` then the bytes), and waits on its stdin
  (``cat``). Closing that stdin ends it: it removes ``NAME.lock`` and exits,
  which releases both locks. If this process dies, even by SIGKILL, the
  pipe's last writer is gone, ``ssh`` forwards the end of file, and the
  locks go the same way.

While the lock is held, reads come from the copy the lock process printed
(every writer holds the host-wide lock, so it cannot go stale), and writes
update it: a remote ``up`` costs one round trip (≈20 ms over a shared SSH
connection) for the lock and the state files, one per save, one to release.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from . import interrupts
from .errors import CommandError, HostUnreachableError, LockedError
from .runners.base import Result
from .state_store import LEDGER_DIR, TMP_SUFFIX, host_lock_message, locked_message, waiting_message

LOCK_BUSY = 75
"""Exit status of the lock script when the network's lock is held (as ``flock -n`` finds it)."""
LOCK_TIMEOUT = 76
"""Exit status of the lock script when the host-wide lock stayed held past the wait."""
RELEASE_WAIT = 10.0
"""Seconds to wait for the lock process to end after its stdin closed, before killing it locally."""

_READ = '[ -e "$1" ] || { echo none; exit 0; }; echo file; exec cat -- "$1"'
_NAMES = 'cd -- "$1" 2>/dev/null || exit 0; for f in *.json; do [ -f "$f" ] && printf "%s\\n" "$f"; done; exit 0'
_WRITE = ('mkdir -p -m 0755 -- "$1" || exit 1; t="$2.$$' + TMP_SUFFIX + '"; '
          'if tee -- "$t" >/dev/null && mv -f -- "$t" "$2"; then exit 0; fi; rm -f -- "$t"; exit 1')
_LOCK = r"""
d=$1 n=$2 w=$3 who=$4
mkdir -p -m 0755 -- "$d" || exit 71
if [ -n "$n" ]; then
  l=$d/$n.lock
  while :; do
    exec 9<>"$l" || exit 71
    if ! flock -n 9; then
      printf 'busy %s\n' "$(head -n 1 "$l" 2>/dev/null)"
      exit 75
    fi
    [ "$(stat -c %i -- "$l" 2>/dev/null)" = "$(stat -L -c %i /proc/self/fd/9)" ] && break
    exec 9<&-
  done
  printf '%s\n' "$who" >"$l"
fi
exec 8<"$d" || exit 71
if ! flock -n 8; then
  echo waiting
  if ! flock -w "$w" 8; then [ -z "$n" ] || rm -f -- "$l"; exit 76; fi
fi
rm -f -- "$d"/*.json.*""" + TMP_SUFFIX + r"""
echo locked
for f in "$d"/*.json; do
  [ -f "$f" ] || continue
  printf '%s %s\n' "$(wc -c <"$f")" "${f##*/}"
  cat -- "$f"
done
echo end
cat >/dev/null
[ -z "$n" ] || rm -f -- "$l"
"""


class _Remote(Protocol):
    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result: ...

    def popen(self, argv: Sequence[str], *, stderr: object) -> subprocess.Popen[bytes]: ...


class RunnerStore:
    """A host's ``/run/bridgenet`` through ``runner``'s commands (see the module docstring).

    Args:
        runner: has ``exec`` (one command, its output) and ``popen(argv,
            stderr=FILE)`` (a long-lived command with binary stdin and stdout
            pipes), as :class:`~bridgenet.runners.SshRunner` does; when it has a
            ``target`` (an SshTarget), an exit status 255 of the lock
            process is ssh's own failure (HostUnreachableError).
        directory: the state directory on the host (absolute).
        where: the host in messages (default ``host DESTINATION``).
    """

    def __init__(self, runner: _Remote, directory: str = f"/{LEDGER_DIR}", where: str | None = None) -> None:
        self.runner = runner
        self.directory = directory.rstrip("/") or "/"
        target = getattr(runner, "target", None)
        self.where = where or (f"host {target.destination}" if target is not None else repr(runner))
        self._snapshot: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<RunnerStore {self.directory} on {self.where}>"

    def path(self, network: str) -> str:
        return f"{self.directory}/{network}.json"

    def read(self, network: str) -> str | None:
        if self._snapshot is not None:
            return self._snapshot.get(network)
        out = self.runner.exec(["sh", "-c", _READ, "sh", self.path(network)]).stdout
        kind, _, text = out.partition("\n")
        return text if kind == "file" else None

    def names(self) -> list[str]:
        if self._snapshot is not None:
            files = list(self._snapshot)
        else:
            out = self.runner.exec(["sh", "-c", _NAMES, "sh", self.directory]).stdout
            files = [f[:-5] for f in out.splitlines() if f.endswith(".json")]
        return sorted(f for f in files if not f.startswith("."))

    def write(self, network: str, text: str) -> None:
        self.runner.exec(["sh", "-c", _WRITE, "sh", self.directory, self.path(network)], input=text)
        if self._snapshot is not None:
            self._snapshot[network] = text

    def remove(self, network: str) -> None:
        self.runner.exec(["rm", "-f", "--", self.path(network)])
        if self._snapshot is not None:
            self._snapshot.pop(network, None)

    @contextlib.contextmanager
    def locked(self, network: str | None, wait: float) -> Iterator[None]:
        argv = ["sh", "-c", _LOCK, "sh", self.directory, network or "", f"{wait:g}", _holder()]
        with tempfile.TemporaryFile() as err:
            # stderr to a file: a control master ssh forks may keep a pipe open for a minute
            proc = self.runner.popen(argv, stderr=err)
            try:
                self._snapshot = self._await(proc, argv, network, wait, err)
                yield
            finally:
                self._snapshot = None
                _end(proc)

    def _await(self, proc: subprocess.Popen[bytes], argv: Sequence[str], network: str | None, wait: float,
               err: object) -> dict[str, str]:
        """Read the lock process's output up to ``end``: the state files. Raises as :meth:`locked` says."""
        reader = _Reader(proc)
        waiting_since: float | None = None
        told = False
        while True:
            line = reader.line(timeout=0.05)
            if line is None:  # nothing yet
                if interrupts.pending() is not None:
                    _end(proc)
                    interrupts.check()
                if waiting_since is not None and not told and time.monotonic() - waiting_since > 1.0:
                    print(waiting_message(self.where), file=sys.stderr, flush=True)
                    told = True
                continue
            if line == b"":
                break  # it ended without the locks
            text = line.decode(errors="replace").rstrip("\n")
            if text == "waiting":
                waiting_since = time.monotonic()
            elif text.startswith("busy "):
                holder = text[5:].strip() or "unknown"
                proc.wait()
                raise LockedError(locked_message(network or "", holder, self.where))
            elif text == "locked":
                return self._files(reader)
        code = proc.wait()
        err.seek(0)  # type: ignore[attr-defined]
        stderr = err.read().decode(errors="replace")  # type: ignore[attr-defined]
        if code == LOCK_TIMEOUT:
            raise LockedError(host_lock_message(wait, self.where))
        target = getattr(self.runner, "target", None)
        if code == 255 and target is not None:
            raise HostUnreachableError([(target.destination, stderr.strip())])
        raise CommandError(tuple(argv[:3]) + ("...",), code,
                           stderr or "the lock process ended before taking the locks (is flock(1), "
                           "util-linux, installed there?)", "")

    @staticmethod
    def _files(reader: _Reader) -> dict[str, str]:
        files: dict[str, str] = {}
        while True:
            line = reader.line()
            if line in (b"", b"end\n"):
                return files
            size, _, name = line.decode(errors="replace").strip().partition(" ")
            data = reader.exactly(int(size))
            if name.endswith(".json"):
                files[name[:-5]] = data.decode(errors="replace")


def _holder() -> str:
    """What the lock file says of its holder: ``PID on HOSTNAME`` of this process."""
    return f"{os.getpid()} on {socket.gethostname()}"


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Close the lock process's stdin (it releases and exits) and wait for it; kill it past :data:`RELEASE_WAIT`."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=RELEASE_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


class _Reader:
    """Lines and byte counts from a process's stdout, with a timeout (select(2)), "" at its end."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.fd = proc.stdout.fileno()  # type: ignore[union-attr]
        self.buf = b""
        self.eof = False

    def _fill(self, timeout: float | None) -> bool:
        """Read what is there (waiting up to ``timeout``, None: until something comes); False if nothing came."""
        if self.eof:
            return False
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.05 if timeout is None else timeout)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    self.eof = True
                    return False
                self.buf += chunk
                return True
            if self.proc.poll() is not None:  # ended, though a forked ssh master may keep the pipe open
                ready, _, _ = select.select([self.fd], [], [], 0)
                if not ready:
                    self.eof = True
                    return False
                continue
            if timeout is not None:
                return False

    def line(self, timeout: float | None = None) -> bytes | None:
        """The next line with its newline; b"" at the end; None if ``timeout`` passed first."""
        while b"\n" not in self.buf:
            if not self._fill(timeout):
                if self.eof:
                    rest, self.buf = self.buf, b""
                    return rest
                return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n and self._fill(None):
            pass
        data, self.buf = self.buf[:n], self.buf[n:]
        return data
