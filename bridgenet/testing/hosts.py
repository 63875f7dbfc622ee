"""Several "hosts" inside one sandbox, joined by an underlay bridge, optionally each with a real ``sshd``.

For tests of what spans machines (VXLAN overlays, the SSH runner): the
sandbox's own namespace is the *controller* (where bridgenet and the ``ssh``
client run); each host is a long-lived ``unshare --net --mount`` process
started in the sandbox (so in its PID and user namespaces: closing the
sandbox ends every host), with

* its own tmpfs on ``/run`` (``/run/netns``, ``/run/bridgenet`` private to
  the host, and the sandbox mark, so bridgenet run inside a host knows it is
  in a sandbox), its own sysfs on ``/sys``, and an overlay on ``/etc`` whose
  upper layer lies on that tmpfs (``sshd``'s privilege separation user is
  added there, never to the machine's ``/etc/passwd``);
* a veth: ``eth0`` in the host, ``uN`` in the controller, on the bridge
  ``underlay``; addresses from 198.51.100.0/24 (RFC 5737, documentation):
  the controller ``.1``, host N ``.(10+N)``. The veth's host end is made in
  place (``ip link add uN type veth peer name eth0 netns PID``, ≈0.5 ms
  instead of ≈16 ms for a move, KERNEL-NOTES), with distinct ifindexes
  on both sides (the ≈1 s link-up delay otherwise);
* :meth:`Host.runner`: a :class:`~bridgenet.runners.ShRunner` whose prefix is
  ``nsenter -t PID [--user --preserve-credentials] -n -m -p --``;
* optionally (:meth:`Host.start_sshd`) a real ``sshd`` on its underlay address,
  port 22, with a throwaway host key, root's login by a throwaway user key
  (``ssh-keygen``, files on the tmpfs of the sandbox and of the host), and
  :meth:`Host.ssh_target` / :meth:`Host.ssh_runner` to reach it from the
  controller. The client's ``ssh_config`` (``-F``) names its own
  ``known_hosts``, so ``~/.ssh`` is never read nor written (ssh finds ``~``
  in the passwd entry, not ``$HOME``).

Nothing here touches the machine's network namespace, ``/run`` or ``/etc``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv4Network

from ..errors import SandboxError, ValidationError
from ..holder import _children, _netns_inode
from ..runners import ShRunner, SshRunner, SshTarget
from ..sandbox import UPLINK_ADDRESS, Sandbox

SUBNET = IPv4Network("198.51.100.0/24")
"""The underlay's subnet: RFC 5737 TEST-NET-2, documentation only."""
UNDERLAY = "underlay"
"""The controller's bridge the hosts' veths are ports of."""
CLIENT_DIR = "/run/bridgenet-hosts"
"""In the sandbox's (the controller's) ``/run``: the user key, ``known_hosts``, ``ssh_config``, control sockets."""
SSHD_DIR = "/run/bridgenet-sshd"
"""In each host's ``/run``: its host key, ``sshd_config``, ``authorized_keys``, ``sshd.log``."""
HOME = "/run/bridgenet-root"
"""In each host's ``/run``: root's home there (empty), so a login reads none of the machine's ``/root``."""
SSHD_ENV = "BRIDGENET_SSHD"
"""Environment variable: the ``sshd`` binary to use (absolute path)."""
SSHD_PLACES = ("/usr/sbin/sshd", "/opt/bridgenet/sshd/usr/sbin/sshd")
"""Where :func:`find_sshd` looks, after ``$BRIDGENET_SSHD``: installed, or unpacked from the
openssh-server package by ``scripts/_env.sh`` (``dpkg -x``, never installed as a service)."""

_HOST_SCRIPT = r"""
set -e
mount -n -t tmpfs -o mode=0755 bridgenet-run /run
mount -n -t sysfs sysfs /sys
mkdir -m 0755 /run/.bridgenet-etc /run/.bridgenet-etc/upper /run/.bridgenet-etc/work /run/netns /run/bridgenet
mount -n -t overlay bridgenet-etc -o lowerdir=/etc,upperdir=/run/.bridgenet-etc/upper,workdir=/run/.bridgenet-etc/work /etc
: >/run/bridgenet/.sandbox
ip link set lo up
echo ready
exec cat >/dev/null
"""


def find_sshd() -> str | None:
    """The ``sshd`` to start in hosts: ``$BRIDGENET_SSHD``, else the first of :data:`SSHD_PLACES`; None if none."""
    env = os.environ.get(SSHD_ENV)
    root = os.environ.get("BRIDGENET_SSHD_ROOT")  # where scripts/_env.sh unpacked it, if not the default
    for path in ([env] if env else []) + ([f"{root}/usr/sbin/sshd"] if root else []) + list(SSHD_PLACES):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _library_path(sshd: str) -> str | None:
    """``LD_LIBRARY_PATH`` for an unpacked ``sshd`` (libwrap0 unpacked beside it), or None."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(sshd)))  # .../usr/sbin/sshd -> ...
    dirs = sorted({os.path.dirname(p) for p in glob.glob(f"{root}/usr/lib/*/libwrap.so.0")
                   + glob.glob(f"{root}/lib/*/libwrap.so.0")})
    return ":".join(dirs) or None


class Host:
    """One host of :class:`Hosts`: its own network and mount namespaces inside the sandbox.

    Attributes:
        name: ``h1``, ``h2``, ...
        address: its underlay address with prefix (``198.51.100.11/24`` for ``h1``).
        pid: the host process's PID as this process sees it (what ``nsenter -t`` enters).
    """

    def __init__(self, hosts: Hosts, index: int, proc: subprocess.Popen[bytes], pid: int) -> None:
        self.hosts = hosts
        self.index = index
        self.name = f"h{index}"
        self.address = IPv4Interface(f"{hosts.subnet.network_address + 10 + index}/{hosts.subnet.prefixlen}")
        self.pid = pid
        self._proc = proc
        self._runner = ShRunner(self.nsenter_prefix(), sandbox=self, fs_root=f"/proc/{pid}/root")
        self._sshd: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address.ip} pid={self.pid}>"

    @property
    def fs_root(self) -> str:
        """The host's file system as seen from here (``/proc/PID/root``: its ``/run`` is its own)."""
        return f"/proc/{self.pid}/root"

    def nsenter_prefix(self) -> tuple[str, ...]:
        """``nsenter -t PID [--user --preserve-credentials] -n -m -p --``: runs a command in this host."""
        argv = ["nsenter", "-t", str(self.pid)]
        if self.hosts.sandbox.userns:
            argv += ["--user", "--preserve-credentials"]
        return (*argv, "-n", "-m", "-p", "--")

    def is_isolated(self) -> bool:
        """For the guard: the host process lives and its network namespace is neither ours nor the machine's."""
        if self._proc.poll() is not None or not self.hosts.sandbox.is_isolated():
            return False
        mine = _netns_inode(self.pid)
        return mine is not None and mine not in (_netns_inode("self"), _netns_inode(1))

    def runner(self) -> ShRunner:
        """A real runner whose commands run in this host (its network and mount namespaces)."""
        return self._runner

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 30):  # noqa: ANN201
        """Run ``argv`` in the host; returns a :class:`~bridgenet.runners.Result` (``check``: raise ``CommandError``)."""
        return self._runner.exec([str(a) for a in argv], input=input, check=check, timeout=timeout)

    # --- sshd ---------------------------------------------------------------

    @property
    def sshd_log(self) -> str:
        """What the host's ``sshd`` logged (``sshd -E``), "" before it started."""
        try:
            with open(f"{self.fs_root}{SSHD_DIR}/sshd.log") as f:
                return f.read()
        except OSError:
            return ""

    def start_sshd(self, timeout: float = 10.0) -> None:
        """Start a real ``sshd`` listening on this host's underlay address, port 22; wait until it listens.

        Raises:
            SandboxError: no ``sshd`` (:func:`find_sshd`), or it exited or did not listen in time (its log is
                in the message).
        """
        if self._sshd is not None:
            return
        reason = sshd_unavailable_reason(self.hosts.sandbox)
        sshd = find_sshd()
        if reason is not None or sshd is None:
            raise SandboxError(reason or sshd_missing_reason())
        client = self.hosts._client_files()
        root = self.fs_root
        if os.stat(f"{root}/etc").st_dev == os.stat("/etc").st_dev:  # the overlay, never the machine's /etc
            raise SandboxError(f"{self.name}: its /etc is not its own overlay; not adding the sshd user")
        self.run(["mkdir", "-p", "-m", "0755", SSHD_DIR, "/run/sshd", HOME])
        if not os.path.exists(f"{root}{SSHD_DIR}/ssh_host_ed25519_key"):  # (kept across stop_sshd)
            self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bridgenet-{self.name}",
                      "-f", f"{SSHD_DIR}/ssh_host_ed25519_key"])
        _prepare_passwd(f"{root}/etc/passwd")
        with open(f"{self.hosts.sandbox_root}{CLIENT_DIR}/id_ed25519.pub") as f:
            user_key = f.read()
        _write(f"{root}{SSHD_DIR}/authorized_keys", user_key, 0o600)
        _write(f"{root}{SSHD_DIR}/sshd_config", _sshd_config(), 0o644)
        with open(f"{root}{SSHD_DIR}/ssh_host_ed25519_key.pub") as f:
            kind, key = f.read().split()[:2]
        with open(f"{self.hosts.sandbox_root}{client['known_hosts']}", "a") as f:
            f.write(f"{self.address.ip} {kind} {key}\n")
        argv = [sshd, "-D", "-f", f"{SSHD_DIR}/sshd_config", "-E", f"{SSHD_DIR}/sshd.log",
                "-o", f"ListenAddress={self.address.ip}"]
        env = dict(os.environ)
        lib = _library_path(sshd)
        if lib:
            argv = ["env", f"LD_LIBRARY_PATH={lib}", *argv]
        self._runner._guard(argv)
        seen = len(self.sshd_log)  # (a restarted sshd appends to the same log)
        self._sshd = subprocess.Popen([*self.nsenter_prefix(), *argv], env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "Server listening on" not in self.sshd_log[seen:]:
            if self._sshd.poll() is not None or time.monotonic() > deadline:
                err = self._sshd.stderr.read().decode(errors="replace") if self._sshd.poll() is not None else ""
                Sandbox.terminate(self._sshd)
                self._sshd = None
                raise SandboxError(f"{self.name}: sshd did not start listening: {err}{self.sshd_log}".strip())
            time.sleep(0.01)

    def stop_sshd(self) -> None:
        """Kill the host's listening ``sshd`` (SIGKILL, by its pid file, inside the host): no new login is
        accepted; sessions already open stay (each has a process of its own). :meth:`start_sshd` starts it
        again (same host key)."""
        if self._sshd is None:
            return
        self.run(["sh", "-c", f'kill -KILL "$(cat {SSHD_DIR}/sshd.pid)"'])
        Sandbox.terminate(self._sshd)
        if self._sshd.stderr:
            self._sshd.stderr.close()
        self._sshd = None

    def accepted_logins(self) -> int:
        """How many logins the host's ``sshd`` accepted so far (``Accepted publickey`` lines of its log)."""
        return self.sshd_log.count("Accepted publickey")

    def ssh_target(self, **changes: object) -> SshTarget:
        """The :class:`~bridgenet.runners.SshTarget` that reaches this host's ``sshd`` from the controller.

        ``root@ADDRESS``, the throwaway user key (``-i``), the controller's own
        ``ssh_config`` (``-F``: its ``known_hosts`` holds this host's key,
        ``StrictHostKeyChecking yes``), control sockets under the sandbox's
        ``/run``. ``changes`` replace fields (e.g. ``identity=...``).
        """
        files = self.hosts._client_files()
        fields: dict[str, object] = {"destination": f"root@{self.address.ip}", "identity": files["identity"],
                                     "config": files["config"], "control_dir": files["control_dir"],
                                     "connect_timeout": 5}
        fields.update(changes)
        return SshTarget(**fields)  # type: ignore[arg-type]

    def ssh_runner(self, **changes: object) -> SshRunner:
        """An :class:`~bridgenet.runners.SshRunner` to this host whose ``ssh`` client runs in the controller."""
        sb = self.hosts.sandbox
        return SshRunner(self.ssh_target(**changes), prefix=sb.nsenter_prefix(), sandbox=sb)

    def close(self) -> None:
        """End the host's ``sshd`` and the host process (its namespaces vanish with it)."""
        if self._sshd is not None:
            Sandbox.terminate(self._sshd)
            if self._sshd.stderr:
                self._sshd.stderr.close()
            self._sshd = None
        if self._proc.poll() is None:
            if self._proc.stdin:
                self._proc.stdin.close()
            Sandbox.terminate(self._proc)
        for s in (self._proc.stdout, self._proc.stderr):
            if s:
                s.close()


class Hosts:
    """``n`` hosts in ``sandbox``, on the underlay bridge; a context manager (closing ends them all).

    Args:
        sandbox: a started :class:`~bridgenet.sandbox.Sandbox`, the controller.
            One made with ``upstream=True`` already uses 198.51.100.0/24: pass
            another ``subnet`` (e.g. 203.0.113.0/24).
        n: how many hosts (1 to 50).
        sshd: start a real ``sshd`` in each (:meth:`Host.start_sshd`).
        subnet: the underlay's IPv4 subnet (a /24 or larger); the controller
            has its first address, host N the (10+N)th.

    Raises:
        ValidationError: ``n`` or ``subnet`` breaks its rule.
        SandboxError: a host could not be made, or (``sshd=True``) sshd not started.
    """

    def __init__(self, sandbox: Sandbox, n: int = 2, *, sshd: bool = False,
                 subnet: str | IPv4Network = SUBNET) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 50:
            raise ValidationError("Hosts", "n", "from 1 to 50 hosts", n)
        net = IPv4Network(subnet)
        if net.prefixlen > 24:
            raise ValidationError("Hosts", "subnet", "a /24 or larger (hosts are .11 to .60)", str(subnet))
        if sandbox.upstream and UPLINK_ADDRESS.ip in net:
            raise ValidationError("Hosts", "subnet", "must not overlap the sandbox's uplink 198.51.100.0/24 "
                                  "(use a sandbox without upstream, or subnet='203.0.113.0/24')", str(subnet))
        self.sandbox = sandbox
        self.subnet = net
        self.controller_address = IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")
        self.hosts: list[Host] = []
        self._files: dict[str, str] | None = None
        try:
            self._make(n)
            if sshd:
                for h in self.hosts:
                    h.start_sshd()
        except BaseException:
            self.close()
            raise

    @property
    def sandbox_root(self) -> str:
        """The controller's file system as seen from here."""
        return f"/proc/{self.sandbox.pid}/root"

    def _make(self, n: int) -> None:
        sb = self.sandbox
        procs = [sb.popen(["unshare", "--net", "--mount", "sh", "-c", _HOST_SCRIPT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]
        made: list[tuple[subprocess.Popen[bytes], int]] = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode(errors="replace").strip()
            kids = _children(proc.pid)
            if line != "ready" or not kids:
                for p, _ in made:
                    Sandbox.terminate(p)
                err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None and proc.stderr else ""
                for p in procs:
                    Sandbox.terminate(p)
                raise SandboxError(f"cannot make a host in {sb!r}: `unshare --net --mount` failed: {err.strip()}")
            made.append((proc, kids[0]))
        self.hosts = [Host(self, i + 1, proc, pid) for i, (proc, pid) in enumerate(made)]
        lines = [f"link add {UNDERLAY} type bridge", f"addr add {self.controller_address} dev {UNDERLAY}",
                 f"link set {UNDERLAY} up"]
        for h in self.hosts:
            lines += [f"link add u{h.index} index {100 + h.index} type veth peer name eth0 index 2 "
                      f"netns {_inner_pid(h.pid)}",
                      f"link set u{h.index} master {UNDERLAY} up"]
        sb.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", check=True)
        for h in self.hosts:
            h.run(["ip", "-batch", "-"], input=f"addr add {h.address} dev eth0\nlink set eth0 up\n")

    def _client_files(self) -> dict[str, str]:
        """Make (once) the controller's user key, ``known_hosts``, ``ssh_config`` and control directory."""
        if self._files is not None:
            return self._files
        d = CLIENT_DIR
        files = {"identity": f"{d}/id_ed25519", "known_hosts": f"{d}/known_hosts", "config": f"{d}/ssh_config",
                 "control_dir": f"{d}/cm"}
        sb = self.sandbox
        sb.run(["mkdir", "-p", "-m", "0700", d, files["control_dir"]], check=True)
        sb.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bridgenet-test", "-f", files["identity"]],
               check=True)
        root = self.sandbox_root
        _write(f"{root}{files['known_hosts']}", "", 0o644)
        _write(f"{root}{files['config']}", _ssh_config(files["known_hosts"]), 0o644)
        self._files = files
        return files

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):  # noqa: ANN204
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def close(self) -> None:
        """End every host (and its ``sshd``); the underlay stays in the sandbox until it closes."""
        for h in self.hosts:
            h.close()


def sshd_unavailable_reason(sandbox: Sandbox) -> str | None:
    """Why no ``sshd`` can serve logins in ``sandbox``'s hosts, or None when one can.

    Rootless it cannot: sshd's privilege-separated child calls setgroups(2),
    which a user namespace refuses once ``/proc/PID/setgroups`` is ``deny``
    (user_namespaces(7)), and ``unshare --map-root-user`` must write ``deny``
    for an unprivileged user to map its group (seen here: ``setgroups:
    Operation not permitted [preauth]``, the connection reset). A user
    namespace with a full group map (``newgidmap``, ``/etc/subgid``) would
    allow it; bridgenet's sandboxes do not make one.
    """
    if find_sshd() is None:
        return sshd_missing_reason()
    if sandbox.userns:
        return ("sshd cannot serve logins in a rootless sandbox: its privilege-separated child calls "
                "setgroups(2), refused in a user namespace whose setgroups is 'deny', as `unshare "
                "--map-root-user` sets it for an unprivileged user (user_namespaces(7)); run as root")
    return ssh_client_missing_reason()


def sshd_missing_reason() -> str:
    """Why no ``sshd`` can be started, in words (for ``pytest.skip``)."""
    return ("no sshd: install nothing as a service; unpack it instead (`apt-get download openssh-server "
            "libwrap0` and `dpkg -x` each into /opt/bridgenet/sshd, as scripts/_env.sh does for scripts/test), "
            f"or point {SSHD_ENV} at an sshd binary")


def ssh_client_missing_reason() -> str | None:
    """Why the ``ssh`` client or ``ssh-keygen`` is missing (Debian package openssh-client), or None."""
    missing = [t for t in ("ssh", "ssh-keygen") if shutil.which(t) is None]
    return f"{' and '.join(missing)} not found (Debian package openssh-client)" if missing else None


def _inner_pid(pid: int) -> int:
    """``pid`` as the sandbox's PID namespace numbers it (the last ``NSpid`` field, proc(5))."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise SandboxError(f"process {pid} is gone")


def _write(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _prepare_passwd(passwd: str) -> None:
    """In a host's ``/etc`` overlay: add the ``sshd`` user, and give root a home of its own.

    * ``sshd`` (privilege separation, ``/run/sshd``), uid 74 (unused here);
    * root's home becomes :data:`HOME` on the host's tmpfs, empty: a login's
      shell then reads none of the machine's ``/root`` dot files (bash reads
      ``~/.bashrc`` for an ssh command; the machine's took ≈150 ms here).
    """
    with open(passwd) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        f = line.split(":")
        if len(f) == 7 and f[0] == "root":
            f[5] = HOME
            line = ":".join(f)
        out.append(line)
    if not any(line.split(":", 1)[0] == "sshd" for line in out):
        out.append("sshd:x:74:65534::/run/sshd:/usr/sbin/nologin")
    # A new file renamed over the old one: the lower /etc/passwd belongs to the machine's root, whom a
    # rootless sandbox cannot write as; the overlay's upper directory is the sandbox's own.
    _write(passwd + ".bridgenet", "\n".join(out) + "\n", 0o644)
    os.replace(passwd + ".bridgenet", passwd)


def _sshd_config() -> str:
    return "\n".join([
        "# bridgenet test host (bridgenet.testing.hosts): throwaway keys, root by key only",
        "Port 22",
        f"HostKey {SSHD_DIR}/ssh_host_ed25519_key",
        f"AuthorizedKeysFile {SSHD_DIR}/authorized_keys",
        f"PidFile {SSHD_DIR}/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "UseDNS no",
        "LogLevel INFO",
        "MaxSessions 100",
        "MaxStartups 100",
        "",
    ])


def _ssh_config(known_hosts: str) -> str:
    return "\n".join([
        "# bridgenet test controller (bridgenet.testing.hosts): never ~/.ssh",
        f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null",
        "StrictHostKeyChecking yes",
        "UpdateHostKeys no",
        "IdentitiesOnly yes",
        "LogLevel ERROR",
        "",
    ])


__all__ = ["Host", "Hosts", "find_sshd", "sshd_missing_reason", "sshd_unavailable_reason", "ssh_client_missing_reason"]
