"""A throwaway "host": new network, mount and PID namespaces that vanish when closed.

Inside a :class:`Sandbox`, the sandbox's own network namespace plays the
lesson's host. Nothing is created in the machine's network namespace, and
nothing lands in the machine's ``/run`` or ``/etc``: the sandbox mounts its own tmpfs on
``/run`` (so ``/run/netns``, ``/run/bridgenet`` and ``/run/xtables.lock`` are
private), its own sysfs on ``/sys``, its own ``/proc``, and an overlay on
``/etc`` with its own ``resolv.conf`` (``holder.py``).

How it works: ``unshare --net --mount --pid --fork --kill-child`` (plus
``--user --map-root-user`` when not root) starts a small holder shell, PID 1
of the new PID namespace. Commands enter it with ``nsenter --target HOLDER``.
The holder waits on a pipe from this process; closing the sandbox (or this
process dying) ends the holder, and the kernel then kills every process of
the PID namespace and frees its network namespaces (pid_namespaces(7),
network_namespaces(7)).

Measured here: starting a sandbox takes ≈10 ms; each command through
``nsenter`` costs ≈2 ms more than on the host.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from .errors import SandboxError
from .holder import ETC_UPPER, _children, _netns_inode, _userns_hint, _which, holder_script  # noqa: F401
from .runners import Result, ShRunner

UPSTREAM_NETNS = "upstream"
"""Name of the namespace standing in for the internet."""
UPSTREAM_IFNAME = "eth0"
"""The upstream end of the uplink, inside ``upstream``."""
UPLINK_IFNAME = "uplink"
"""The sandbox host's end of the uplink."""
UPSTREAM_ADDRESS = IPv4Interface("198.51.100.1/24")
"""The upstream's address: RFC 5737 TEST-NET-2, documentation only, routed nowhere."""
UPLINK_ADDRESS = IPv4Interface("198.51.100.2/24")
"""The sandbox host's address on the uplink (what MASQUERADE rewrites sources to)."""
UPSTREAM_ADDRESS6 = IPv6Interface("2001:db8::1/64")
"""The upstream's IPv6 address: RFC 3849 documentation prefix 2001:db8::/32, routed nowhere."""
UPLINK_ADDRESS6 = IPv6Interface("2001:db8::2/64")
"""The sandbox host's IPv6 address on the uplink (what NAT66 rewrites sources to)."""


def _upstream_script() -> str:
    """Shell lines (run by the holder) that make the upstream namespace and wait for the uplink.

    Both ends also get an IPv6 address on 2001:db8::/64 (RFC 3849), added
    with ``nodad`` (usable at once), and the sandbox host an IPv6 default
    route via the upstream's, so NAT66 is observed as NAT is.

    The uplink's two ends get distinct ifindexes (2 in the sandbox host, 3 in
    ``upstream``): with equal ones the kernel treats their link-up as
    non-urgent and may activate the first end's queue up to 1 s later
    (KERNEL-NOTES; net/core/link_watch.c ``linkwatch_urgent_event``).
    Waiting for the first end up (``uplink``, read from sysfs with the
    shell's own ``read``, at most 3 s) is enough: the second end's queue is
    activated when it is set up, its peer then having carrier.
    """
    return "\n".join([
        "ip -batch - <<'BRIDGENET'",
        "link set lo up",
        f"netns add {UPSTREAM_NETNS}",
        f"link add {UPLINK_IFNAME} index 2 type veth peer name {UPSTREAM_IFNAME} index 3 netns {UPSTREAM_NETNS}",
        f"addr add {UPLINK_ADDRESS} dev {UPLINK_IFNAME}",
        f"addr add {UPLINK_ADDRESS6} dev {UPLINK_IFNAME} nodad",
        f"link set dev {UPLINK_IFNAME} up",
        "BRIDGENET",
        f"ip -n {UPSTREAM_NETNS} -batch - <<'BRIDGENET'",
        "link set dev lo up",
        f"addr add {UPSTREAM_ADDRESS} dev {UPSTREAM_IFNAME}",
        f"addr add {UPSTREAM_ADDRESS6} dev {UPSTREAM_IFNAME} nodad",
        f"link set dev {UPSTREAM_IFNAME} up",
        "BRIDGENET",
        "ip -batch - <<'BRIDGENET'",
        f"route add default via {UPSTREAM_ADDRESS.ip}",
        f"route add default via {UPSTREAM_ADDRESS6.ip}",
        "BRIDGENET",
        "n=0",
        f'while read s </sys/class/net/{UPLINK_IFNAME}/operstate && [ "$s" != up ] && [ $n -lt 300 ]; do',
        "    n=$((n + 1)); sleep 0.01",
        "done",
    ])


_RUN_DIRS = ("netns", "bridgenet")
_MARK = "bridgenet/.sandbox"


class Sandbox:
    """A throwaway host in new network, mount and PID namespaces; use it as a context manager.

    Args:
        upstream: also make the namespace ``upstream`` (198.51.100.1/24,
            RFC 5737) linked to the sandbox host by the veth ``uplink``
            (198.51.100.2/24), with the sandbox host's default route via
            198.51.100.1; and in IPv6 2001:db8::1/64 and 2001:db8::2/64
            (RFC 3849, ``nodad``), default route via 2001:db8::1. It stands
            in for the internet; nothing lies beyond.
        userns: add a user namespace (``--user --map-root-user``). Default:
            only when not running as root.
        keep: leave the sandbox alive after ``close()`` (for inspection);
            ``enter_command`` says how to get in, ``kill_command`` how to end it.

    Raises:
        SandboxError: ``unshare``/``nsenter``/``ip`` is missing, or the kernel
            forbids the namespaces; the message says what is missing.
    """

    def __init__(self, *, upstream: bool = False, userns: bool | None = None, keep: bool = False) -> None:
        self.upstream = upstream
        self.userns = (os.geteuid() != 0) if userns is None else userns
        self.keep = keep
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._runner: ShRunner | None = None
        self._closed = False
        self._ready = False
        self._pristine = False

    # --- life cycle -------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Sandbox:
        """Create the namespaces and wait until the sandbox host is ready (:meth:`launch`, then wait)."""
        if self._ready:
            return self
        self.launch()
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline().decode(errors="replace").strip()
        if line != "ready":
            self._proc.wait(timeout=5)
            err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
            self._proc = None
            raise SandboxError(self._explain_failure(err))
        self._pid = self._find_holder()
        try:
            self._make_run_dirs()
        except (OSError, SandboxError) as e:
            self.keep = False
            self._kill()
            raise SandboxError(f"cannot make a sandbox: cannot make its /run/netns and /run/bridgenet ({e})") from e
        self._runner = ShRunner(self._nsenter_prefix(), sandbox=self, fs_root=f"/proc/{self._pid}/root")
        self._ready = self._pristine = True
        return self

    def launch(self) -> Sandbox:
        """Start making the sandbox and return at once; :meth:`start` waits until it is ready.

        The holder sets the sandbox up (mounts, ``lo``, the upstream) while
        this process does something else: the pytest fixtures launch the
        next test's sandbox while the current test runs.

        Raises:
            SandboxError: ``unshare``, ``nsenter`` or ``ip`` is not installed.
        """
        if self._proc is not None or self._closed:
            return self
        for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
            if _which(tool) is None:
                raise SandboxError(f"cannot make a sandbox: {tool} is not installed (Debian package {package})")
        argv = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc"]
        if self.userns:
            argv[1:1] = ["--user", "--map-root-user"]
        network = _upstream_script() if self.upstream else "ip link set lo up"
        argv += ["sh", "-c", holder_script(network, keep=self.keep)]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if self.keep else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=self.keep,
        )
        return self

    def _make_run_dirs(self) -> None:
        """Make ``/run/netns``, ``/run/bridgenet`` and the sandbox mark on the sandbox's own ``/run``.

        The directory is opened through ``/proc/HOLDER/root/run`` and used only
        once the holder is known to have been alive when it was opened (still
        a child of our ``unshare``, so its PID was not reused) and it is not
        this machine's ``/run``.
        """
        assert self._proc is not None and self._pid is not None
        fd = os.open(f"/proc/{self._pid}/root/run", os.O_RDONLY | os.O_DIRECTORY)
        try:
            if self._pid not in _children(self._proc.pid) or os.fstat(fd).st_dev == os.stat("/run").st_dev:
                raise SandboxError("the holder's /run is not the sandbox's own tmpfs")
            for d in _RUN_DIRS:
                try:
                    os.mkdir(d, 0o755, dir_fd=fd)
                except FileExistsError:
                    if d != "netns" or not self.upstream:  # `ip netns add upstream` made it
                        raise
            os.close(os.open(_MARK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd))
        finally:
            os.close(fd)

    def _kill(self) -> None:
        """End the sandbox at once (SIGKILL to its holder, PID 1 of its PID namespace)."""
        self._closed = True
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def _explain_failure(self, err: str) -> str:
        if self.userns:
            return (
                "cannot make a rootless sandbox: `unshare --user --map-root-user --net --mount --pid` failed: "
                f"{err or 'no message'}. This needs unprivileged user namespaces ({_userns_hint()}); "
                "run as root, or allow them (sysctl user.max_user_namespaces > 0, "
                "kernel.unprivileged_userns_clone=1 where that exists)."
            )
        return (
            f"cannot make a sandbox: `unshare --net --mount --pid` failed as root: {err or 'no message'}. "
            "This needs CAP_SYS_ADMIN (a container may withhold it; try --privileged or user namespaces)."
        )

    def _find_holder(self) -> int:
        assert self._proc is not None
        for _ in range(200):
            kids = _children(self._proc.pid)
            if kids:
                return kids[0]
            time.sleep(0.005)
        raise SandboxError("sandbox holder process did not appear")

    def close(self, *, wait: bool = True) -> None:
        """End every process in the sandbox; its namespaces and mounts vanish with them.

        Args:
            wait: wait (up to 5 s, then SIGKILL) until the holder has exited,
                so every process of the sandbox is gone when this returns.
                With False, return once the holder has been told to end (its
                pipe closed, ≈1.5 ms sooner); the kernel ends the sandbox on
                its own, and :meth:`wait_closed` waits for it.

        With ``keep=True`` the sandbox is left running instead, and how to
        enter and end it is printed to stderr.
        """
        if self._closed or self._proc is None:
            self._closed = True
            if wait:
                self.wait_closed()
            return
        self._closed = True
        if self.keep:
            print(f"bridgenet: sandbox kept alive; enter it with:\n  {self.enter_command}\n"
                  f"end it with:\n  {self.kill_command}", file=sys.stderr)
            return
        if self._proc.stdin:
            self._proc.stdin.close()
        if wait:
            self.wait_closed()

    def wait_closed(self, timeout: float = 5.0) -> None:
        """After ``close(wait=False)``: wait until the holder has exited (SIGKILL after ``timeout`` s)."""
        proc = self._proc
        if proc is None or self.keep:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()

    @property
    def ended(self) -> bool:
        """True once a closed sandbox's holder has exited (never for a kept one)."""
        return self._closed and not self.keep and (self._proc is None or self._proc.poll() is not None)

    # --- facts ----------------------------------------------------------------

    @property
    def pristine(self) -> bool:
        """True while the sandbox is as :meth:`start` left it, as far as this object knows.

        It turns False for good once a way to run something in it has been
        handed out: :meth:`runner`, :meth:`run`, :meth:`popen`,
        :meth:`nsenter_prefix`, :attr:`enter_command`, :attr:`pid` or
        :attr:`kill_command`. Every pristine sandbox made with the same
        arguments is in the same state: only ``lo`` up (and the upstream,
        with ``upstream=True``), nothing in ``/run/netns`` or
        ``/run/bridgenet`` but what :meth:`start` put there, the kernel's
        defaults for a new network namespace (``ip_forward=0``, no iptables
        rule). The pytest fixtures use it to reuse a plan made once, and to
        hand over a sandbox prepared meanwhile (:meth:`take_over`).
        """
        if not (self._pristine and self.alive):
            return False
        return self._looks_new()

    @property
    def pid(self) -> int | None:
        """The holder's PID (PID 1 of the sandbox), what ``nsenter --target`` enters; None before :meth:`start`."""
        self._pristine = False  # one can run something in it by hand now
        return self._pid

    def take_over(self, other: Sandbox) -> None:
        """Carry on with ``other``'s holder (and all it holds), and leave ``other`` with this one's.

        For the pytest fixtures: the next test's network was brought up in
        ``other`` meanwhile. Nothing can have seen this pristine sandbox's
        holder yet, so its user cannot tell; ``other`` gets it, still pristine.

        Raises:
            SandboxError: this one is not pristine, ``other`` not alive, either
                is kept, or their ``upstream``/``userns`` differ; nothing changed.
        """
        if not (self.pristine and other.alive and not self.keep and not other.keep
                and (self.upstream, self.userns) == (other.upstream, other.userns)):
            raise SandboxError(f"cannot take over {other!r} in {self!r}: both must be alive, of the same kind "
                               "and not kept, and this one pristine")
        for f in ("_proc", "_pid", "_runner", "_pristine"):
            mine = getattr(self, f)
            setattr(self, f, getattr(other, f))
            setattr(other, f, mine)
        self._runner.sandbox, other._runner.sandbox = self, other  # type: ignore[union-attr]  # for the guard

    def _looks_new(self) -> bool:
        """What can be seen without starting a process matches what :meth:`start` made.

        Reads the sandbox's ``/run/netns`` and ``/run/bridgenet`` (through
        ``/proc/PID/root``) and its host's links (``/proc/PID/net/dev``, proc(5)).
        """
        try:
            spaces = os.listdir(f"/proc/{self._pid}/root/run/netns")
            files = os.listdir(f"/proc/{self._pid}/root/run/bridgenet")
            with open(f"/proc/{self._pid}/net/dev") as f:
                links = sorted(line.split(":", 1)[0].strip() for line in f.readlines()[2:])
        except OSError:
            return False
        if self.upstream:
            return spaces == [UPSTREAM_NETNS] and files == [".sandbox"] and links == sorted(["lo", UPLINK_IFNAME])
        return spaces == [] and files == [".sandbox"] and links == ["lo"]

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._closed and self._pid is not None and os.path.exists(
            f"/proc/{self._pid}"
        )

    def is_isolated(self) -> bool:
        """True when the sandbox is alive and its network namespace is not the caller's.

        This is the guard's test: a command through this sandbox cannot touch
        the network namespace the caller lives in (nor the machine's, when
        ``/proc/1/ns/net`` is readable).
        """
        if not self.alive or self._pid is None:
            return False
        mine = _netns_inode(self._pid)
        if mine is None:
            return False
        if mine == _netns_inode("self"):
            return False
        init = _netns_inode(1)
        return init is None or mine != init

    def nsenter_prefix(self) -> tuple[str, ...]:
        """The argv that runs a command inside the sandbox host."""
        self._pristine = False
        return self._nsenter_prefix()

    def _nsenter_prefix(self) -> tuple[str, ...]:
        if self._pid is None:
            raise SandboxError("sandbox is not started")
        argv = ["nsenter", "--target", str(self._pid)]
        if self.userns:
            argv += ["--user", "--preserve-credentials"]
        argv += ["--net", "--mount", "--pid", "--"]
        return tuple(argv)

    @property
    def enter_command(self) -> str:
        """A shell command that opens a shell inside the sandbox host."""
        return shlex.join((*self.nsenter_prefix()[:-1], "--", "sh"))  # (not pristine any more)

    @property
    def kill_command(self) -> str:
        return f"kill -KILL {self.pid}"

    # --- running ---------------------------------------------------------------

    def runner(self) -> ShRunner:
        """A real runner whose commands run inside this sandbox."""
        if self._runner is None or not self.alive:
            raise SandboxError("sandbox is not running")
        self._pristine = False
        return self._runner

    def _argv(self, argv: Sequence[str], netns: str | None) -> tuple[str, ...]:
        argv = tuple(str(a) for a in argv)
        return ("ip", "netns", "exec", netns, *argv) if netns else argv

    def run(self, argv: Sequence[str], *, netns: str | None = None, input: str | None = None,
            check: bool = False, timeout: float | None = 30) -> Result:
        """Run ``argv`` to completion in the sandbox host, or inside ``netns``.

        Returns:
            Result with exit code, stdout and stderr (text).

        Raises:
            CommandError: when ``check`` is true and the exit code is not 0.
        """
        r = self.runner().exec(self._argv(argv, netns), input=input, check=check, timeout=timeout)
        return r

    def popen(self, argv: Sequence[str], *, netns: str | None = None, **kwargs: object) -> subprocess.Popen:
        """Start ``argv`` in the background in the sandbox host or inside ``netns``.

        The process lives in the sandbox's PID namespace, so closing the
        sandbox ends it at the latest; it leads a process group of its own, so
        :meth:`terminate` ends it together with the ``nsenter`` that started it.
        Keyword arguments go to ``subprocess.Popen``.
        """
        if not self.alive:
            raise SandboxError("sandbox is not running")
        self.runner()._guard(self._argv(argv, netns))
        full = (*self._nsenter_prefix(), *self._argv(argv, netns))
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(full, **kwargs)  # type: ignore[call-overload]

    @staticmethod
    def terminate(proc: subprocess.Popen, timeout: float = 2.0) -> int | None:
        """End a process from :meth:`popen`: SIGTERM to its process group, SIGKILL after ``timeout`` s.

        Signalling only ``proc`` would end the ``nsenter`` and leave its child
        running inside the sandbox; the process group holds both. The child
        (what ``nsenter`` started) is signalled first, so that ``nsenter``
        reaps it and exits: killed together, the child is re-parented to the
        machine's init, and the sandbox's PID namespace cannot go away until
        that init reaps it (``close()`` then took ≈1.2 s here instead of 1 ms).

        Returns:
            the exit code of ``proc`` (negative: killed by that signal).
        """
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    kids = _children(proc.pid)
                    for kid in kids:
                        os.kill(kid, sig)
                    if not kids:
                        os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    if proc.poll() is not None:
                        break
                try:
                    proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
        except (ProcessLookupError, PermissionError):
            pass
        return proc.wait()

    @property
    def upstream_address(self) -> IPv4Address:
        """The address that stands in for the internet (198.51.100.1)."""
        return UPSTREAM_ADDRESS.ip

    @property
    def upstream_address6(self) -> IPv6Address:
        """The IPv6 address that stands in for the internet (2001:db8::1, RFC 3849)."""
        return UPSTREAM_ADDRESS6.ip

    @property
    def uplink_address6(self) -> IPv6Address:
        """The sandbox host's IPv6 address on the uplink (2001:db8::2): what the upstream sees after NAT66."""
        return UPLINK_ADDRESS6.ip

    def __repr__(self) -> str:
        state = "alive" if self.alive else "closed"
        return f"<Sandbox pid={self._pid} {state}{' rootless' if self.userns else ''}>"

