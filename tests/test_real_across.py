"""Real tier: a network across hosts run for real by ``bridgenet.across`` (up_all, down_all, rollback, signals).

The hosts are ``bridgenet.testing.hosts`` (namespaces in a sandbox on an
underlay bridge, 198.51.100.11, .12, ...), each run through its nsenter
runner (``host.runner()``, with the host's own ``/run/bridgenet``). Checked
as a person would: containers on different hosts ping each other and carry
TCP; a second ``up_all`` runs nothing on any host; ``down_all`` leaves every
host exactly as before (``state.snapshot`` per host); a real command failure
on the second host, or SIGTERM, rolls back every host (a converging run:
only what it added). Nothing leaves the sandbox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bridgenet import across, cli, interrupts, state
from bridgenet.errors import CommandError, ConflictError, HostsRolledBackError
from bridgenet.hosts import HostSpec
from bridgenet.interrupts import Interrupted
from bridgenet.stretch import Member, Stretch, stretch
from bridgenet.testing import factories

pytestmark = pytest.mark.real

hosts2 = factories.hosts(2)
hosts3 = factories.hosts(3)


def build(hosts, extra=(), names: bool = True) -> Stretch:  # noqa: ANN001
    members = [Member(h.name, f"c{i}", f"10.40.0.{10 + i}") for i, h in enumerate(hosts, 1)]
    return stretch("mh", gateway="10.40.0.1/24", hosts=[HostSpec(h.name, f"root@{h.address.ip}") for h in hosts],
                   containers=[*members, *extra], names=names)


def runners(hosts) -> dict:  # noqa: ANN001
    return {h.name: h.runner() for h in hosts}


def snaps(hosts) -> dict:  # noqa: ANN001
    return {h.name: state.snapshot(h.runner()) for h in hosts}


def state_file(host) -> str:  # noqa: ANN001
    return f"{host.fs_root}/run/bridgenet/mh.json"


def ping(host, netns: str, dst: str):  # noqa: ANN001, ANN201
    return host.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "2", dst], check=False)


class Faulty:
    """A host's runner whose ``n``-th ``run`` fails for real (``sh -c 'exit 1'`` in the host instead), or
    first sends this process ``sig`` (then runs the command); ``exec`` as the host's runner."""

    def __init__(self, inner, n: int, sig: int | None = None) -> None:  # noqa: ANN001
        self.inner, self.n, self.sig, self.count = inner, n, sig, 0
        self.fs_root = inner.fs_root
        if hasattr(inner, "state_store"):  # an SshRunner: its state files through it
            self.state_store = inner.state_store

    def run(self, command):  # noqa: ANN001, ANN201
        self.count += 1
        if self.count == self.n:
            if self.sig is None:
                return self.inner.exec(["sh", "-c", "echo injected failure >&2; exit 1"])
            os.kill(os.getpid(), self.sig)
        return self.inner.run(command)

    def exec(self, argv, **kw):  # noqa: ANN001, ANN003, ANN201
        return self.inner.exec(argv, **kw)


class SecondSignal:
    """A host's runner that sends SIGINT once while a first signal is pending (i.e. during the rollback)."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.sent = inner, False
        self.fs_root = inner.fs_root

    def run(self, command):  # noqa: ANN001, ANN201
        self._maybe()
        return self.inner.run(command)

    def exec(self, argv, **kw):  # noqa: ANN001, ANN003, ANN201
        self._maybe()
        return self.inner.exec(argv, **kw)

    def _maybe(self) -> None:
        if not self.sent and interrupts.pending() is not None:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5000)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); data = c.recv(100); c.sendall(data.upper()); c.close()
"""
CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], 5000), timeout=5); c.sendall(b"across hosts")
print(c.recv(100).decode())
"""


def assert_tcp_across(server_host, server_ns: str, address: str, client_host, client_ns: str) -> None:  # noqa: ANN001
    """A TCP exchange from ``client_ns`` on one host to a server at ``address`` in ``server_ns`` on another."""
    server = subprocess.Popen([*server_host.nsenter_prefix(), "ip", "netns", "exec", server_ns, sys.executable,
                               "-c", SERVER, address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        r = client_host.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT, address], check=False)
        assert (r.exit_code, r.stdout.strip()) == (0, "ACROSS HOSTS"), r.stderr
    finally:
        server.kill()
        server.wait()


def test_three_hosts_up_all_ping_tcp_twice_runs_nothing_down_all_restores(hosts3) -> None:  # noqa: ANN001
    h1, h2, h3 = hosts3
    s, rs = build(hosts3), runners(hosts3)
    before = snaps(hosts3)
    seen = []
    reports = across.up_all(s, rs, on_host=lambda h: seen.append(h.name))
    assert seen == ["h1", "h2", "h3"] and all(r.report.ran for r in reports)
    assert all(os.path.exists(state_file(h)) for h in hosts3)  # each host keeps its own state file
    for src, ns, dst in ((h1, "c1", "10.40.0.12"), (h2, "c2", "10.40.0.13"), (h3, "c3", "10.40.0.11"),
                         (h3, "c3", "10.40.0.1")):
        r = ping(src, ns, dst)
        assert r.exit_code == 0, f"{ns} -> {dst}: {r.stdout}{r.stderr}"
    assert_tcp_across(h3, "c3", "10.40.0.13", h1, "c1")
    again = across.up_all(s, rs)
    assert [(r.host.name, r.report.ran) for r in again] == [("h1", ()), ("h2", ()), ("h3", ())]
    plans = across.plan_all(s, rs)
    assert all(p.plan.empty for p in plans)
    down = across.down_all(s, rs)
    assert [r.host.name for r in down] == ["h3", "h2", "h1"]  # the gateway host last
    assert snaps(hosts3) == before
    assert not any(os.path.exists(state_file(h)) for h in hosts3)


def test_batch_up_all_converges_and_down_all_restores(hosts2) -> None:  # noqa: ANN001
    s, rs = build(hosts2), runners(hosts2)
    before = snaps(hosts2)
    assert all(r.report.ran for r in across.up_all(s, rs, batch=True))
    r = ping(hosts2[1], "c2", "10.40.0.11")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert [r.report.ran for r in across.up_all(s, rs, batch=True)] == [(), ()]
    across.down_all(s, rs)
    assert snaps(hosts2) == before


def test_a_failure_on_the_second_host_rolls_back_every_host(hosts2) -> None:  # noqa: ANN001
    before = snaps(hosts2)
    rs = runners(hosts2)
    rs["h2"] = Faulty(rs["h2"], 5)
    with pytest.raises(HostsRolledBackError) as ei:
        across.up_all(build(hosts2), rs)
    e = ei.value
    assert e.host == "h2" and isinstance(e.cause, CommandError) and "injected failure" in str(e)
    assert [h for h, _ in e.per_host] == ["h2", "h1"] and all(u for _, u in e.per_host) and not e.leftovers
    assert snaps(hosts2) == before
    assert not any(os.path.exists(state_file(h)) for h in hosts2)


def test_a_failing_converging_run_rolls_back_only_what_it_added(hosts2) -> None:  # noqa: ANN001
    # names = false: a converging run rewrites the hosts files of containers already there, and a rollback
    # does not put their old text back (apply.up's own rollback neither; README, "Running across hosts")
    s1, rs = build(hosts2, names=False), runners(hosts2)
    across.up_all(s1, rs)
    up = snaps(hosts2)
    files = {h.name: open(state_file(h)).read() for h in hosts2}
    s2 = build(hosts2, extra=[Member("h1", "d1", "10.40.0.21"), Member("h2", "d2", "10.40.0.22")], names=False)
    assert [p.plan.empty for p in across.plan_all(s2, rs)] == [False, False]
    rs["h2"] = Faulty(rs["h2"], 3)
    with pytest.raises(HostsRolledBackError) as ei:
        across.up_all(s2, rs)
    assert ei.value.host == "h2" and not ei.value.leftovers
    now = snaps(hosts2)
    assert now == up, {h: state.difference(up[h], now[h]) for h in now if now[h] != up[h]}
    # the first run's network stands, the new containers are gone
    assert {h.name: open(state_file(h)).read() for h in hosts2} == files
    r = ping(hosts2[1], "c2", "10.40.0.11")
    assert r.exit_code == 0, r.stdout + r.stderr
    across.down_all(s1, runners(hosts2))


def test_sigterm_during_up_all_rolls_back_every_host_and_a_second_signal_waits(hosts2) -> None:  # noqa: ANN001
    before = snaps(hosts2)
    rs = runners(hosts2)
    rs["h1"] = SecondSignal(rs["h1"])
    rs["h2"] = Faulty(rs["h2"], 4, sig=signal.SIGTERM)
    with pytest.raises(HostsRolledBackError) as ei:
        across.up_all(build(hosts2), rs)
    e = ei.value
    assert e.host == "h2" and isinstance(e.cause, Interrupted) and e.cause.signum == signal.SIGTERM
    assert rs["h1"].sent  # SIGINT arrived while rolling back, and the rollback finished
    assert snaps(hosts2) == before and not e.leftovers
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # handlers given back


SIGNALLED = r"""
import json, sys, time
from bridgenet import across, interrupts
from bridgenet.errors import HostsRolledBackError
from bridgenet.holder import _netns_inode
from bridgenet.hosts import HostSpec
from bridgenet.runners import ShRunner
from bridgenet.stretch import Member, stretch

hosts = json.loads(sys.argv[1])  # [[name, pid, underlay, nsenter prefix], ...]

class Host:  # the guard's sandbox: the host's network namespace is neither ours nor the machine's
    def __init__(self, pid): self.pid = pid
    def is_isolated(self):
        mine = _netns_inode(self.pid)
        return mine is not None and mine not in (_netns_inode("self"), _netns_inode(1))

class PauseAt:  # the host's runner, paused before its n-th command until a signal arrives
    def __init__(self, inner, n): self.inner, self.n, self.count, self.fs_root = inner, n, 0, inner.fs_root
    def run(self, command):
        self.count += 1
        if self.count == self.n:
            print("paused", flush=True)
            while interrupts.pending() is None:
                time.sleep(0.01)
        return self.inner.run(command)
    def exec(self, argv, **kw): return self.inner.exec(argv, **kw)

runners = {n: ShRunner(prefix, sandbox=Host(pid), fs_root=f"/proc/{pid}/root") for n, pid, _, prefix in hosts}
runners[hosts[-1][0]] = PauseAt(runners[hosts[-1][0]], 6)
s = stretch("mh", gateway="10.40.0.1/24", hosts=[HostSpec(n, f"root@{a}") for n, _, a, _ in hosts],
            containers=[Member(n, f"c{i}", f"10.40.0.{10 + i}") for i, (n, *_) in enumerate(hosts, 1)])
try:
    across.up_all(s, runners)
except HostsRolledBackError as e:
    print(json.dumps({"host": e.host, "signum": getattr(e.cause, "signum", None), "leftovers": e.leftovers,
                      "per_host": [[h, len(u)] for h, u in e.per_host]}), flush=True)
"""


def test_sigterm_from_outside_during_up_all_rolls_back_every_host(hosts3) -> None:  # noqa: ANN001
    """A real SIGTERM to a process running up_all, paused in the third host's up: all three roll back."""
    import json

    before = snaps(hosts3)
    arg = json.dumps([[h.name, h.pid, str(h.address.ip), list(h.nsenter_prefix())] for h in hosts3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
        assert line == "paused", proc.stderr.read()
        assert all(os.path.exists(state_file(h)) for h in hosts3)  # h1 and h2 are up, h3 part-way
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out)
    assert (result["host"], result["signum"], result["leftovers"]) == ("h3", signal.SIGTERM, []), err
    assert [h for h, _ in result["per_host"]] == ["h3", "h2", "h1"] and all(n for _, n in result["per_host"])
    assert snaps(hosts3) == before
    assert not any(os.path.exists(state_file(h)) for h in hosts3)


def test_a_conflict_on_the_second_host_changes_nothing_anywhere(hosts2) -> None:  # noqa: ANN001
    h1, h2 = hosts2
    h2.run(["ip", "link", "add", "br0", "type", "veth", "peer", "name", "br0p"])
    before = snaps(hosts2)
    with pytest.raises(ConflictError) as ei:
        across.up_all(build(hosts2), runners(hosts2))
    assert str(ei.value).startswith("host h2: link br0") and ei.value.host == "h2"
    assert snaps(hosts2) == before


def test_cli_up_plan_show_down_across_hosts_with_injected_runners(hosts2, tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    text = ('name = "mh"\ngateway = "10.40.0.1/24"\n'
            + "".join(f'[[hosts]]\nname = "{h.name}"\nssh = "root@{h.address.ip}"\n' for h in hosts2)
            + "".join(f'[[containers]]\nnetns = "c{i}"\nhost = "{h.name}"\naddress = "10.40.0.{10 + i}"\n'
                      for i, h in enumerate(hosts2, 1)))
    made = {}

    def fake(s, *, echo=None, session=False):  # noqa: ANN001, ANN202
        from bridgenet.runners import ShRunner

        made.update({h.name: ShRunner(h.nsenter_prefix(), sandbox=h, fs_root=h.fs_root, echo=echo) for h in hosts2})
        return dict(made)

    monkeypatch.setattr(across, "default_runners", fake)
    p = tmp_path / "two.toml"
    p.write_text(text)
    before = snaps(hosts2)
    assert cli.main(["plan", "--detailed-exitcode", "-f", str(p)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("# host h1 (") and "\n# host h2 (" in out and "total:" in err
    assert cli.main(["up", "-f", str(p)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# host h1 (") and "\n# host h2 (" in out and "ip link add" in out
    assert "is up on h1" in err and "is up on h2" in err
    assert cli.main(["plan", "--detailed-exitcode", "-f", str(p)]) == 0
    assert cli.main(["show", "-f", str(p)]) == 0
    out, _ = capsys.readouterr()
    assert "# host h2 (" in out
    assert cli.main(["down", "-f", str(p)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# host h2 (") and "is down on h1" in err
    assert snaps(hosts2) == before


ssh_hosts2 = factories.hosts(2, sshd=True)


def test_over_ssh_plan_all_and_show_all_read_each_host_and_change_nothing(ssh_hosts2) -> None:  # noqa: ANN001
    """Over real ssh (a sshd per host): planning and showing read each host and change nothing."""
    s = build(ssh_hosts2)
    before = snaps(ssh_hosts2)
    rs = {h.name: h.ssh_runner() for h in ssh_hosts2}
    try:
        plans = across.plan_all(s, rs)
        assert [p.host.name for p in plans] == ["h1", "h2"] and not any(p.plan.empty for p in plans)
        assert any(c.argv[:3] == ("ip", "link", "add") for c in plans[1].plan.commands)
        statuses = across.show_all(s, rs)
        assert [h.name for h, _ in statuses] == ["h1", "h2"] and all(st.drifted for _, st in statuses)
    finally:
        across.close(rs)
    assert snaps(ssh_hosts2) == before
    assert all(h.accepted_logins() >= 1 for h in ssh_hosts2)


def test_a_dry_run_runner_cannot_change_hosts(hosts2) -> None:  # noqa: ANN001
    from bridgenet.errors import UnsupportedError
    from bridgenet.runners import RecordingRunner

    s = build(hosts2)
    rs = {h.name: RecordingRunner() for h in hosts2}
    with pytest.raises(UnsupportedError, match="h1, h2"):
        across.up_all(s, rs)


def test_over_ssh_up_all_ping_and_down_all_restores(ssh_hosts2) -> None:  # noqa: ANN001
    """Over real ssh: each host's state file kept on it (through the SshRunner), pings across, up twice
    runs nothing, down restores every host."""
    s = build(ssh_hosts2)
    before = snaps(ssh_hosts2)
    rs = {h.name: h.ssh_runner() for h in ssh_hosts2}
    try:
        across.up_all(s, rs)
        r = ping(ssh_hosts2[1], "c2", "10.40.0.11")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert [r.report.ran for r in across.up_all(s, rs)] == [(), ()]
        across.down_all(s, rs)
    finally:
        across.close(rs)
    assert snaps(ssh_hosts2) == before


def test_over_ssh_a_failure_on_the_second_host_rolls_back_the_first(ssh_hosts2) -> None:  # noqa: ANN001
    """Seen by a tryout: over SSH the done host's rollback read no state file (it looked for a local one),
    undid nothing and still said every host was back where it was."""
    before = snaps(ssh_hosts2)
    rs = {h.name: h.ssh_runner() for h in ssh_hosts2}
    rs["h2"] = Faulty(rs["h2"], 5)
    try:
        with pytest.raises(HostsRolledBackError) as ei:
            across.up_all(build(ssh_hosts2), rs)
        assert ei.value.host == "h2" and all(u for _, u in ei.value.per_host), ei.value.per_host
    finally:
        across.close({"h1": rs["h1"], "h2": rs["h2"].inner})
    assert snaps(ssh_hosts2) == before
    assert not any(os.path.exists(state_file(h)) for h in ssh_hosts2)
