"""Programs run inside a sandbox's namespaces: to completion (``netns_run``) or in the background (``netns_process``)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import BridgenetError, CommandError
from ..runners import Result
from ..sandbox import Sandbox


class PortNotReady(BridgenetError, TimeoutError):
    """A background process did not listen on its TCP port in time."""


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
        if check and code != 0:
            raise CommandError(args, code, result.stderr, result.stdout)
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

    def wait_for_port(self, port: int, *, address: str | None = None, timeout: float = 10.0,
                      interval: float = 0.05) -> NetnsProcess:
        """Wait until a TCP socket listens on ``port`` in this process's namespace.

        Args:
            port: TCP port.
            address: the address it must listen on (a wildcard listener counts); None: any.
            timeout: seconds.
            interval: seconds between two looks.

        Returns:
            self, so that ``server = netns_process(...).wait_for_port(7000)`` reads naturally.

        Raises:
            ProcessExitedError: the process ended first (the message shows its output).
            PortNotReady: nothing listens after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        where = self.netns or "the sandbox host"
        while True:
            code = self.popen.poll()
            if code is not None:
                raise ProcessExitedError(
                    f"{shlex.join(self.argv)} in {where} exited with code {code} before listening on "
                    f"TCP port {port}\n{self._tail()}")
            if listening(self.sandbox, port, netns=self.netns, address=address):
                return self
            if time.monotonic() >= deadline:
                raise PortNotReady(
                    f"nothing listens on TCP port {port}{f' at {address}' if address else ''} in {where} "
                    f"after {timeout:g} s ({shlex.join(self.argv)} is running)\n{self._tail()}")
            time.sleep(interval)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<NetnsProcess {shlex.join(self.argv)!r} in {self.netns or 'sandbox host'} {state}>"


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
