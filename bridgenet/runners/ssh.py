"""Commands on another machine through OpenSSH: :class:`SshTarget`, :class:`SshRunner`, :func:`check_hosts`.

bridgenet runs no agent of its own on other hosts: it calls the OpenSSH
client (``ssh``, through the ``sh`` package like every real command), so the
user's keys, agents, jump hosts and ``ssh_config`` all work as usual.

Every ``ssh`` call gets (ssh(1), ssh_config(5)):

* ``-o BatchMode=yes``: never ask for a password or a passphrase, and never
  ask whether to trust an unknown host key: fail at once instead (exit 255);
* ``-o ControlMaster=auto -o ControlPath=DIR/%C -o ControlPersist=60``:
  connection sharing. The first command opens a connection and leaves a
  master process listening on the socket ``DIR/%C`` (``%C``: a hash of
  local host, remote host, port and user, 40 hex digits); every later command
  to the same host runs as a new session over that connection (no TCP
  handshake, no key exchange, no authentication), and the master ends 60 s
  after the last one, or at :meth:`SshRunner.close` (``ssh -O exit``).
  Measured here (a local ``sshd`` in a sandbox, see the README): 20 commands
  cost 5.5 s without sharing (≈274 ms each: TCP, key exchange, login) and
  0.39 s with it (≈20 ms each);
* ``-o ConnectTimeout=N`` (:attr:`SshTarget.connect_timeout`);
* the target's own ``-p PORT``, ``-i FILE``, ``-F FILE`` and ``-o KEY=VALUE``;
* then ``DESTINATION -- COMMAND``, the command shell-quoted
  (:func:`shlex.join`): ssh sends one string that the remote user's shell
  splits again, so each argument arrives as given.

Exit status: ``ssh`` exits with the remote command's status, or 255 when it
failed itself (ssh(1), EXIT STATUS). :class:`SshRunner` raises
:class:`~bridgenet.errors.ConnectionLostError` (a HostUnreachableError
naming the command) for 255 (a remote command
that exits 255 itself is taken for that too: ssh cannot tell them apart),
:class:`~bridgenet.errors.CommandError` (with the remote argv) otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence

import attrs

from ..commands import Command
from ..errors import CommandError, ConnectionLostError, HostUnreachableError, NotInSandboxError, ValidationError
from .base import Isolated, Result
from .sh import ShRunner

SSH_FAILED = 255
"""``ssh``'s exit status when it failed itself rather than the remote command (ssh(1))."""
CONTROL_PERSIST = 60
"""Seconds a control master stays after its last session (``ControlPersist``)."""
CONTROL_DIR_MAX = 48
"""Longest control directory: a Unix socket path is at most 107 bytes (unix(7)); ``%C`` adds 41
bytes and ssh a temporary suffix of 17 while it creates the socket (mux.c)."""

SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*=\S.*")
"""An ``-o`` option as ssh_config(5) writes a setting: ``Keyword=value``."""
_HOST = re.compile(r"[A-Za-z0-9_.:%\[\]-]+")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")


def _bad(field: str, rule: str, value: object) -> ValidationError:
    return ValidationError("SshTarget", field, rule, value)


def _check_destination(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise _bad("destination", "a destination is 'user@host' or 'host', not empty", value)
    if value.startswith("-"):
        raise _bad("destination", "a destination must not start with '-' (ssh would read an option)", value)
    user, _sep, host = value.rpartition("@")
    if _sep and not _USER.fullmatch(user):
        raise _bad("destination", "the user part of 'user@host' is a user name (letters, digits, _ . -)", value)
    if not _HOST.fullmatch(host):
        raise _bad("destination", "the host part is a name or an address, without spaces", value)


def _check_port(_: object, __: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535):
        raise _bad("port", "a TCP port is an integer from 1 to 65535", value)


def _check_file(field: str) -> Callable[[object, object, str | None], None]:
    def check(_: object, __: object, value: str | None) -> None:
        if value is not None and (not isinstance(value, str) or not value or "\n" in value or "\0" in value):
            raise _bad(field, "a file name, not empty, without newline or NUL", value)
    return check


def _check_options(_: object, __: object, value: tuple[str, ...]) -> None:
    for opt in value:
        if not isinstance(opt, str) or not SSH_OPTION.fullmatch(opt) or "\n" in opt:
            raise _bad("options", "each option is 'Key=value' as in ssh_config(5), e.g. 'ServerAliveInterval=5'",
                       opt)


def _check_control_dir(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith("/"):
        raise _bad("control_dir", "the control directory is an absolute path", value)
    if len(value.encode()) > CONTROL_DIR_MAX or "%" in value:
        raise _bad("control_dir", f"the control directory is at most {CONTROL_DIR_MAX} bytes long (a socket "
                   "path is at most 107 bytes, unix(7)) and has no '%'", value)


def _check_timeout(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise _bad("connect_timeout", "seconds, more than 0 and at most 3600", value)


@attrs.frozen
class SshTarget:
    """Where and how ``ssh`` reaches one host.

    Attributes:
        destination: ``"user@host"`` or ``"host"`` (a name, an IPv4 or IPv6
            address, or a ``Host`` alias of the ``config`` file).
        port: ``-p PORT``; None: ssh's default (22, or the config file's).
        identity: ``-i FILE``, a private key file.
        config: ``-F FILE``, an ssh_config(5) file used *instead of*
            ``~/.ssh/config`` and ``/etc/ssh/ssh_config``. Note that ssh
            finds ``~`` in the passwd entry of the user, not in ``$HOME``: to
            keep a test away from the real ``~/.ssh``, give ``config`` (ssh
            then also does not create ``~/.ssh``) and ``UserKnownHostsFile``.
        options: extra ``-o KEY=VALUE`` options, in order (ssh_config(5)
            keywords; ssh uses the first value given for a keyword).
        control_dir: directory of the ControlMaster socket (absolute, at most
            :data:`CONTROL_DIR_MAX` bytes); None: :class:`SshRunner` makes a
            private one (``mkdtemp``) and removes it at :meth:`SshRunner.close`.
        connect_timeout: ``ConnectTimeout``, seconds to wait for the TCP
            connection (an unreachable host fails after this at the latest).

    Raises:
        ValidationError: a field breaks its rule (the error names it).
    """

    destination: str = attrs.field(validator=_check_destination)
    port: int | None = attrs.field(default=None, validator=_check_port)
    identity: str | None = attrs.field(default=None, converter=attrs.converters.optional(os.fspath),
                                       validator=_check_file("identity"))
    config: str | None = attrs.field(default=None, converter=attrs.converters.optional(os.fspath),
                                     validator=_check_file("config"))
    options: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_check_options)
    control_dir: str | None = attrs.field(default=None, converter=attrs.converters.optional(os.fspath),
                                          validator=_check_control_dir)
    connect_timeout: float = attrs.field(default=10, validator=_check_timeout)

    @property
    def host(self) -> str:
        """The host part of :attr:`destination`."""
        return self.destination.rpartition("@")[2]

    def base_argv(self) -> tuple[str, ...]:
        """``ssh`` and every option, without the destination (for ``ssh -O``, and :meth:`ssh_argv`)."""
        argv = ["ssh", "-o", "BatchMode=yes"]
        if self.control_dir is not None:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                     "-o", f"ControlPersist={CONTROL_PERSIST}"]
        argv += ["-o", f"ConnectTimeout={self.connect_timeout:g}"]
        return (*argv, *self.settings_args())

    def settings_args(self) -> tuple[str, ...]:
        """The user's own settings as ssh(1) options: ``-p PORT``, ``-i FILE``, ``-F FILE``, ``-o OPT`` each."""
        argv: list[str] = []
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.identity is not None:
            argv += ["-i", self.identity]
        if self.config is not None:
            argv += ["-F", self.config]
        for opt in self.options:
            argv += ["-o", opt]
        return tuple(argv)

    def ssh_argv(self, remote_argv: Sequence[str]) -> tuple[str, ...]:
        """The local argv that runs ``remote_argv`` on this host.

        Shape: ``ssh -o BatchMode=yes [-o ControlMaster=auto -o
        ControlPath=DIR/%C -o ControlPersist=60] -o ConnectTimeout=N [-p PORT]
        [-i FILE] [-F FILE] [-o OPT ...] DESTINATION -- 'QUOTED COMMAND'``.
        The Control options only with a :attr:`control_dir`.

        Raises:
            ValidationError: ``remote_argv`` is empty.
        """
        remote = tuple(str(a) for a in remote_argv)
        if not remote:
            raise ValidationError("ssh command", "remote_argv", "a command has at least one word", remote_argv)
        return (*self.base_argv(), self.destination, "--", shlex.join(remote))


class SshRunner:
    """Runs commands on another host through the OpenSSH client, with one shared connection per host.

    Same calls and errors as :class:`~bridgenet.runners.ShRunner`: ``run``
    (a :class:`~bridgenet.commands.Command`; its ``input``, e.g. a ``tee
    FILE`` heredoc, goes to the remote command's stdin) and ``exec``. A
    :class:`~bridgenet.runners.Result` and a
    :class:`~bridgenet.errors.CommandError` carry the *remote* argv.

    Args:
        target: the host (:class:`SshTarget`). Without a ``control_dir`` the
            runner makes one (``mkdtemp``, mode 0700) and removes it at :meth:`close`.
        prefix: argv put in front of ``ssh`` itself, e.g. a sandbox's
            ``nsenter ...`` (``Sandbox.nsenter_prefix()``): the ssh client then
            runs in that sandbox's network namespace.
        sandbox: the sandbox ``prefix`` enters (checked by the guard).
        echo: called with each remote command line before it runs, or None.
        fs_root: where this host's file system is seen from here, if it is
            (then its state files and locks are local files); None, the
            default: they are reached through ssh (:meth:`state_store`).

    The guard (``BRIDGENET_REQUIRE_SANDBOX``, set by the test suite and the
    pytest plugin): the ``ssh`` client is run by a :class:`ShRunner` with
    the same ``prefix`` and ``sandbox``, whose guard refuses to run it unless
    ``sandbox`` is alive and isolated (or this process is inside a
    sandbox). A client inside a sandbox's network namespace can only open
    connections to addresses of that namespace's own links: a test's hosts
    (``bridgenet.testing.hosts``), never a real machine.

    Raises (from ``run``/``exec``/``check``):
        HostUnreachableError: ``ssh`` itself failed (exit 255): no route,
            connection refused or timed out, key refused, unknown host key;
            from ``run``/``exec`` its subclass ConnectionLostError (naming the
            command in flight: the connection may have dropped part-way).
        CommandError: the remote command exited non-zero.
        NotInSandboxError: the guard refused (see above).
    """

    def __init__(self, target: SshTarget, *, prefix: Sequence[str] = (), sandbox: Isolated | None = None,
                 echo: Callable[[str], None] | None = None, fs_root: str | None = None) -> None:
        if not isinstance(target, SshTarget):
            raise ValidationError("SshRunner", "target", "an SshTarget", target)
        self._own_dir: str | None = None
        if target.control_dir is None:
            self._own_dir = tempfile.mkdtemp(prefix="bn-ssh-")
            target = attrs.evolve(target, control_dir=self._own_dir)
        self.target = target
        self.prefix = tuple(prefix)
        self.sandbox = sandbox
        self.echo = echo
        self.fs_root = fs_root
        self._local = ShRunner(self.prefix, sandbox=sandbox)
        self._opened = False  # an ssh client got past the guard: a master may be running
        self._store = None

    def __repr__(self) -> str:
        return f"<SshRunner {self.target.destination}>"

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, command: Command) -> Result:
        if self.echo is not None:
            self.echo(command.shell())
        return self.exec(command.argv, input=command.input)

    def exec(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
             timeout: float | None = None) -> Result:
        """Run ``argv`` on the host; ``timeout`` (seconds) is enforced there by ``timeout(1)``.

        Returns:
            Result(remote argv, exit code, stdout, stderr).
        """
        argv = tuple(str(a) for a in argv)
        remote = argv if timeout is None else ("timeout", "-k", "1", f"{timeout:g}", *argv)
        full = self.target.ssh_argv(remote)
        self._local._guard(full)
        self._opened = True
        r = self._local.exec(full, input=input, check=False)
        if r.exit_code == SSH_FAILED:  # ssh's own failure (ssh(1)): the login, or the connection mid-way
            raise ConnectionLostError(self.target.destination, argv, r.stderr.strip())
        err = r.stderr
        if timeout is not None and r.exit_code in (124, 137):
            err = (err + f"\ntimed out after {timeout:g} s").lstrip("\n")
        if check and r.exit_code != 0:
            raise CommandError(argv, r.exit_code, err, r.stdout)
        return Result(argv, r.exit_code, r.stdout, err)

    def popen(self, argv: Sequence[str], *, stderr: object = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start ``argv`` on the host and return at once: the local ``ssh`` process, with binary pipes
        to the remote command's stdin and from its stdout; ``stderr``: a file (or ``subprocess`` constant).

        ``ssh`` runs in a session of its own, so a terminal's SIGINT reaches
        bridgenet only (which then ends the command as it sees fit). For
        long-lived remote helpers: the state lock (``remote_store.py``).

        Raises:
            NotInSandboxError: the guard refused (as for :meth:`exec`).
        """
        full = self.target.ssh_argv(tuple(str(a) for a in argv))
        self._local._guard(full)
        self._opened = True
        return subprocess.Popen([*self.prefix, *full], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, start_new_session=True)  # type: ignore[arg-type]

    def state_store(self):  # noqa: ANN201
        """The host's state files and locks through ssh (a
        :class:`~bridgenet.remote_store.RunnerStore`, the same one each call);
        used by ``apply`` and ``status`` when :attr:`fs_root` is None."""
        if self._store is None:
            from ..remote_store import RunnerStore

            self._store = RunnerStore(self)
        return self._store

    def check(self) -> None:
        """Run ``true`` on the host (opening the shared connection).

        Raises:
            HostUnreachableError: ssh could not log in; the message gives ssh's reason.
        """
        try:
            self.exec(["true"])
        except ConnectionLostError as e:  # nothing was in flight: a plain failed login
            raise HostUnreachableError(e.failures) from None

    @property
    def control_socket(self) -> str:
        """The ControlMaster socket's path pattern, ``DIR/%C`` (as the client sees the file system)."""
        return f"{self.target.control_dir}/%C"

    def close(self) -> None:
        """End the shared connection (``ssh -O exit``) and remove a control directory this runner made.

        Harmless when no connection is open; the runner can still be used
        (the next command opens a new connection).
        """
        argv = (*self.target.base_argv(), "-O", "exit", self.target.destination)
        try:
            if self._opened:
                self._opened = False
                # (a master in a sandbox that has closed ended with it: the guard's refusal is moot)
                with contextlib.suppress(NotInSandboxError):
                    self._local.exec(argv, check=False, timeout=10)
        finally:
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)


def check_hosts(runners: Iterable[SshRunner | SshTarget]) -> None:
    """Log into every host at once (one ``ssh ... true`` each, in parallel threads) before any change.

    ``SshTarget`` values get a plain :class:`SshRunner` (no prefix), closed
    afterwards; pass runners to keep their connections open for what follows.

    Raises:
        HostUnreachableError: listing every host that failed, in the order given, each with ssh's reason.
        CommandError: ``true`` failed on a host (its shell is broken).
    """
    from concurrent.futures import ThreadPoolExecutor

    given = list(runners)
    made = [r for r in given if isinstance(r, SshTarget)]
    todo = [SshRunner(r) if isinstance(r, SshTarget) else r for r in given]
    try:
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
            outcomes = list(pool.map(_try_check, todo))
        failures = [f for o in outcomes if isinstance(o, HostUnreachableError) for f in o.failures]
        if failures:
            raise HostUnreachableError(failures)
        for o in outcomes:
            if o is not None:
                raise o
    finally:
        for r, original in zip(todo, given):
            if original in made:
                r.close()


def _try_check(runner: SshRunner) -> BaseException | None:
    try:
        runner.check()
    except (HostUnreachableError, CommandError) as e:
        return e
    return None
