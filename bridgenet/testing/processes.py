"""Programs run inside a sandbox's namespaces: to completion (``netns_run``) or in the background (``netns_process``)."""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import BridgenetError, CommandError
from ..runners import Result
from ..sandbox import Sandbox
from .sockets import Socket, family, sockets

STREAMS = ("stdout", "stderr", "both")


class PortNotReady(BridgenetError, TimeoutError):
    """A background process did not listen on its TCP (or UDP) port in time."""


class OutputNotSeen(BridgenetError, TimeoutError):
    """A background process wrote no line matching a pattern in time."""


class ProcessExitedError(BridgenetError):
    """A background process ended while it was expected to run (e.g. before it listened)."""


def _argv(argv: Sequence[str] | str) -> list[str]:
    if isinstance(argv, str):
        return shlex.split(argv)
    return [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv]


def _env(env: dict[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    return {**os.environ, **{k: str(v) for k, v in env.items()}}


class NetnsRunner:
    """Runs a program to completion inside a namespace of the sandbox (the ``netns_run`` fixture).

    ``netns_run("container4", ["ip", "route"])`` is ``ip netns exec container4
    ip route`` in the sandbox; ``netns_run(None, ...)`` runs in the sandbox host.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def __repr__(self) -> str:
        return f"<NetnsRunner in {self.sandbox!r}>"

    def __call__(self, netns: str | None, argv: Sequence[str] | str, *, input: str | None = None,
                 timeout: float = 30.0, check: bool = False, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> Result:
        """Run ``argv`` and wait for it.

        Args:
            netns: the namespace, None for the sandbox host.
            argv: the program and its arguments (a string is split like a shell would).
            input: text for its standard input (else it reads nothing).
            timeout: seconds; then the process is killed and the exit code is 124.
            check: raise when the exit code is not 0.
            env: variables added to (or replacing those of) this process's environment.
            cwd: working directory.

        Returns:
            :class:`bridgenet.runners.Result` with ``argv``, ``exit_code``,
            ``stdout``, ``stderr`` (text).

        Raises:
            CommandError: ``check`` and a non-zero exit code.
            SandboxError: the sandbox is not running.
        """
        args = _argv(argv)
        proc = self.sandbox.popen(args, netns=netns, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env),
                                  cwd=cwd)
        try:
            out, err = proc.communicate(input, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            Sandbox.terminate(proc)
            try:
                out, err = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a grandchild in another process group holds the pipes
                out, err = "", ""
            code = 124
            err = (err or "") + f"\nbridgenet: timed out after {timeout:g} s; the process was killed\n"
        result = Result(tuple(args), code, out or "", err or "")
        if check and code != 0:  # the argv as run, so the message names the namespace
            raise CommandError(("ip", "netns", "exec", netns, *args) if netns else args, code, result.stderr,
                               result.stdout)
        return result


def listening(sandbox: Sandbox, port: int, *, netns: str | None = None, address: str | None = None) -> bool:
    """Whether a TCP socket listens on ``port`` in ``netns`` (on ``address``, or on any address).

    Asks the kernel with ``ss -H -l -t -n sport = :PORT`` (ss(8)): a socket
    in LISTEN state is one the kernel completes connections for.
    """
    # timeout=None: ss ends on its own (a timeout wraps the command in timeout(1), one process more).
    r = sandbox.run(["ss", "-H", "-l", "-t", "-n", "sport", "=", f":{int(port)}"], netns=netns, timeout=None)
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        host, _, p = parts[3].rpartition(":")
        if p != str(port):
            continue
        host = host.strip("[]").split("%")[0]
        if address is None or host in ("*", "0.0.0.0", "::") or host == str(address):
            return True
    return False


class NetnsProcess:
    """A program running in the background inside a namespace of the sandbox.

    Its standard output and error go to files (so a chatty server never
    blocks on a full pipe); :attr:`stdout` and :attr:`stderr` read them.
    """

    def __init__(self, sandbox: Sandbox, netns: str | None, argv: list[str], popen: subprocess.Popen,
                 stdout_path: Path, stderr_path: Path) -> None:
        self.sandbox = sandbox
        self.netns = netns
        self.argv = argv
        self.popen = popen
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        """PID (in this machine's PID namespace) of the ``nsenter`` leading the process group."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit code, or None while running."""
        return self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit code.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` seconds.
        """
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 2.0) -> int:
        """End it: SIGTERM to its process group, SIGKILL after ``timeout`` s; its exit code (negative: signal)."""
        return Sandbox.terminate(self.popen, timeout=timeout)

    def _tail(self) -> str:
        def last(text: str) -> str:
            lines = text.rstrip("\n").splitlines()[-10:]
            return "\n".join("    " + line for line in lines) or "    (nothing)"

        return f"  stdout:\n{last(self.stdout)}\n  stderr:\n{last(self.stderr)}"

    def sockets(self, *, udp: bool = False) -> list[Socket]:
        """The TCP (``udp``: UDP) sockets this process and its descendants hold now (read from ``/proc``)."""
        return sockets(family(self.pid), "udp" if udp else "tcp")

    def _exited(self, code: int, what: str) -> ProcessExitedError:
        where = self.netns or "the sandbox host"
        return ProcessExitedError(f"{shlex.join(self.argv)} in {where} exited with code {code} before "
                                  f"{what}\n{self._tail()}")

    def wait_for_port(self, port: int, *, address: str | None = None, udp: bool = False, timeout: float = 10.0,
                      interval: float = 0.05) -> NetnsProcess:
        """Wait until **this** process (or one of its descendants) listens on ``port``.

        A socket of another process on that port does not count: a second
        server started on a port already taken fails (EADDRINUSE) and this
        raises :class:`ProcessExitedError` instead of returning. The sockets
        are read from ``/proc`` (proc(5): ``/proc/PID/fd`` for their inodes,
        ``/proc/PID/net/tcp``, ``tcp6``, ``udp``, ``udp6`` for their ports and
        states); no process is started.

        Args:
            port: TCP (or UDP) port, 1-65535.
            address: the address it must listen on (a wildcard socket counts); None: any.
            udp: wait for a bound UDP socket instead of a listening TCP one.
            timeout: seconds.
            interval: seconds between two looks.

        Returns:
            self, so that ``server = netns_process(...).wait_for_port(7000)`` reads naturally.

        Raises:
            ValueError: ``port`` is not 1-65535, or ``address`` is not an IP address (before any look).
            ProcessExitedError: the process ended first (the message shows its exit code and output).
            PortNotReady: it does not listen after ``timeout`` seconds.
        """
        port = int(port)
        if not 1 <= port <= 65535:
            raise ValueError(f"wait_for_port: port must be 1-65535, got {port}")
        if address is not None:
            ipaddress.ip_address(address)  # ValueError naming it
        proto = "UDP" if udp else "TCP"
        deadline = time.monotonic() + timeout
        denied: PermissionError | None = None
        while True:
            code = self.popen.poll()
            if code is not None:
                raise self._exited(code, f"listening on {proto} port {port}")
            try:
                if any(s.serves(port, address) for s in self.sockets(udp=udp)):
                    return self
            except PermissionError as e:
                denied = e
            if time.monotonic() >= deadline:
                why = f" (could not read its sockets: {denied})" if denied else ""
                raise PortNotReady(
                    f"nothing listens on {proto} port {port}{f' at {address}' if address else ''} in "
                    f"{self.netns or 'the sandbox host'} from {shlex.join(self.argv)} (PID {self.pid}) or its "
                    f"descendants after {timeout:g} s{why}; it is running"
                    f"{'' if udp else ' (a UDP server? wait_for_port(port, udp=True))'}\n{self._tail()}")
            time.sleep(interval)

    def _lines(self, stream: str, complete: bool) -> list[str]:
        lines = []
        for name in ("stdout", "stderr") if stream == "both" else (stream,):
            text = getattr(self, name)
            if not complete and not text.endswith("\n"):
                text = text[:text.rfind("\n") + 1]  # a line still being written is not a line yet
            lines += text.splitlines()
        return lines

    def wait_for_output(self, pattern: str | re.Pattern[str], *, timeout: float = 10.0, stream: str = "both",
                        interval: float = 0.05) -> re.Match[str]:
        """Wait for a line of its output matching the regular expression ``pattern`` (``re.search``).

        Args:
            pattern: a regular expression (text or compiled), searched in each complete line.
            timeout: seconds.
            stream: ``"stdout"``, ``"stderr"`` or ``"both"``.
            interval: seconds between two looks.

        Returns:
            the :class:`re.Match` of the first matching line (``m.group(1)``: e.g. the port it chose).

        Raises:
            ValueError: ``stream`` is not one of the three, or ``pattern`` is not a valid expression.
            ProcessExitedError: the process ended and no line matched.
            OutputNotSeen: no line matched after ``timeout`` seconds (the message names the pattern and
                shows the output's tail).
        """
        if stream not in STREAMS:
            raise ValueError(f"wait_for_output: stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"wait_for_output: pattern {pattern!r} is not a regular expression: {e}") from None
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            for line in self._lines(stream, complete=code is not None):
                m = regex.search(line)
                if m:
                    return m
            if code is not None:
                raise self._exited(code, f"writing a line matching {regex.pattern!r} on {_streams(stream)}")
            if time.monotonic() >= deadline:
                raise OutputNotSeen(
                    f"{shlex.join(self.argv)} in {self.netns or 'the sandbox host'} wrote no line matching "
                    f"{regex.pattern!r} on {_streams(stream)} in {timeout:g} s; it is running\n{self._tail()}")
            time.sleep(interval)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<NetnsProcess {shlex.join(self.argv)!r} in {self.netns or 'sandbox host'} {state}>"


def _streams(stream: str) -> str:
    return "stdout or stderr" if stream == "both" else stream


class NetnsProcesses:
    """Starts background programs inside namespaces (the ``netns_process`` fixture); ends them all at teardown.

    ``server = netns_process("container5", ["python3", "server.py"]).wait_for_port(7000)``.
    """

    def __init__(self, sandbox: Sandbox, directory: Path) -> None:
        self.sandbox = sandbox
        self.directory = directory
        self.started: list[NetnsProcess] = []

    def __repr__(self) -> str:
        return f"<NetnsProcesses in {self.sandbox!r}: {len(self.started)} started>"

    def __call__(self, netns: str | None, argv: Sequence[str] | str, *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> NetnsProcess:
        """Start ``argv`` in ``netns`` (None: the sandbox host) and return at once.

        Args:
            env: variables added to (or replacing those of) this process's environment.
            cwd: working directory.

        Raises:
            SandboxError: the sandbox is not running.
        """
        args = _argv(argv)
        n = len(self.started)
        out_path = self.directory / f"{n}.stdout"
        err_path = self.directory / f"{n}.stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = self.sandbox.popen(args, netns=netns, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       env=_env(env), cwd=cwd)
        proc = NetnsProcess(self.sandbox, netns, args, popen, out_path, err_path)
        self.started.append(proc)
        return proc

    def stop_all(self, timeout: float = 2.0) -> None:
        """End every process started here that still runs, last first."""
        for proc in reversed(self.started):
            proc.stop(timeout=timeout)
