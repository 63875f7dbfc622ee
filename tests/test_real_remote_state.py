"""Real tier: plan/up/down/show through SSH on a host whose files bridgenet cannot see; state and locks there.

One host (network and mount namespaces in a sandbox, a real sshd); the
controller is the sandbox's own namespace. What the host holds is checked
through the host's own runner (nsenter), never through ssh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import attrs
import pytest

from bridgenet import apply, show
from bridgenet.errors import HostUnreachableError, LockedError
from bridgenet.ledger import Ledger
from bridgenet.sandbox import _children
from bridgenet.snapshots import difference, snapshot
from bridgenet.testhooks import KILL_AFTER_ENV, PAUSE_AFTER_ENV
from bridgenet.testing import factories
from bridgenet.testing.hosts import Hosts

pytestmark = pytest.mark.real

ssh_hosts = factories.hosts(1, sshd=True)

NET = 'bridge_network("far", [Container("a", "10.61.0.10"), Container("b", "10.61.0.11")], gateway="10.61.0.1/24")'


def far():  # noqa: ANN201
    from bridgenet import Container, bridge_network  # noqa: F401

    return eval(NET)


CONTROLLER = f"""
import json, os, socket, sys
from bridgenet import Container, apply, bridge_network
from bridgenet.runners import SshRunner, SshTarget
print(os.getpid(), socket.gethostname(), flush=True)
with SshRunner(SshTarget(**json.loads(sys.argv[1]))) as r:
    apply.up({NET}, r)
"""


def start_controller(hosts: Hosts, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Another bridgenet process, in the controller namespace, running ``up`` over its own ssh connection."""
    target = json.dumps(attrs.asdict(hosts[0].ssh_target(), recurse=False))
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-c", CONTROLLER, target]
    proc = hosts.sandbox.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid, host = proc.stdout.readline().split()
    return proc, f"PID {pid} on {host}"


def state_dir(hosts: Hosts) -> list[str]:
    d = f"{hosts[0].fs_root}/run/bridgenet"
    return sorted(f for f in os.listdir(d) if f != ".sandbox")


def links(hosts: Hosts) -> set[str]:
    return {x["ifname"] for x in json.loads(hosts[0].run(["ip", "-json", "link"]).stdout)}


def test_up_plan_show_down_over_ssh_keep_the_state_on_the_host(ssh_hosts: Hosts) -> None:
    h = ssh_hosts[0]
    before = snapshot(h.runner())
    net = far()
    with h.ssh_runner() as r:
        report = apply.up(net, r)
        assert report.ran and {"br0"} <= links(ssh_hosts)
        assert state_dir(ssh_hosts) == ["far.json"]  # on the host, lock released and removed
        assert not os.path.exists("/run/bridgenet/far.json")  # nothing on the controller's side (this process)
        mine = Ledger.open(h.fs_root, "far")  # read locally for comparison: what ssh wrote is a real state file
        assert mine.recorded and mine.identity == net.identity() and all(e.status == "done" for e in mine.entries)
        ping = h.run(["ip", "netns", "exec", "a", "ping", "-c", "1", "-W", "2", "10.61.0.11"], check=False)
        assert ping.exit_code == 0, ping.stdout + ping.stderr
        assert [s.step.key for s in apply.plan(net, r).steps if s.run] == []
        assert apply.up(net, r).ran == ()  # nothing the second time
        status = show([net], r)[0]
        assert status.drift == () and status.state_file == "/run/bridgenet/far.json"
        listed = show(runner=r)  # every network with a state file there (this one was built in Python: not compared)
        assert [(x.network, x.compared) for x in listed] == [("far", False)]
        down = apply.down(net, r)
        assert down.ran and down.networks == ("far",)
        assert state_dir(ssh_hosts) == []
        assert apply.down("far", r).note.startswith("no record of far")
    after = snapshot(h.runner())
    assert after == before, difference(before, after)


def test_a_second_up_over_ssh_while_one_runs_is_refused_naming_the_first(ssh_hosts: Hosts) -> None:
    h = ssh_hosts[0]
    before = snapshot(h.runner())
    first, holder = start_controller(ssh_hosts, {PAUSE_AFTER_ENV: "2"})
    try:
        assert first.stderr.readline().strip() == "bridgenet: paused"
        with h.ssh_runner() as r:
            with pytest.raises(LockedError) as err:
                apply.up(far(), r)
            assert f"({holder}) is changing network far on host root@{h.address.ip}" in str(err.value)
            with pytest.raises(LockedError, match=f"{holder}.*on this host"):
                apply.up(far(), h.runner())  # a local run on that host takes the same flock(2) locks
            assert state_dir(ssh_hosts) == ["far.json", "far.lock"]
            os.kill(_children(first.pid)[0], signal.SIGTERM)  # the first up rolls back
            _, err_text = first.communicate(timeout=60)
            assert first.returncode != 0 and "rolling back" in err_text, err_text
            assert state_dir(ssh_hosts) == []
            assert apply.up(far(), r).ran  # the lock is free again
            apply.down("far", r)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    after = snapshot(h.runner())
    assert after == before, difference(before, after)


def test_a_controller_killed_mid_up_leaves_the_lock_free_and_a_later_up_converges(ssh_hosts: Hosts) -> None:
    h = ssh_hosts[0]
    before = snapshot(h.runner())
    killed, _ = start_controller(ssh_hosts, {KILL_AFTER_ENV: "4"})
    killed.communicate(timeout=60)
    assert killed.returncode in (-9, 128 + 9)
    assert "far.json" in state_dir(ssh_hosts)  # it died with its steps recorded
    with h.ssh_runner() as r:
        report = apply.up(far(), r)
        assert report.in_place >= 1 and report.ran  # finished what the killed run began
        assert [s.step.key for s in apply.plan(far(), r).steps if s.run] == []
        assert show([far()], r)[0].drift == ()
        assert apply.clean(r).networks == ("far",)  # clean, as down, from the host's state files
    assert state_dir(ssh_hosts) == []
    after = snapshot(h.runner())
    assert after == before, difference(before, after)


def test_an_unreachable_host_fails_before_anything_with_ssh_s_reason(ssh_hosts: Hosts) -> None:
    h = ssh_hosts[0]
    before = snapshot(h.runner())
    with h.ssh_runner(destination="root@198.51.100.99", connect_timeout=2) as r:  # nobody holds .99
        with pytest.raises(HostUnreachableError) as err:
            apply.up(far(), r)
    assert err.value.hosts == ("root@198.51.100.99",) and "198.51.100.99" in str(err.value)
    assert snapshot(h.runner()) == before and state_dir(ssh_hosts) == []
