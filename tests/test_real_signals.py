"""Real tier: SIGTERM and SIGINT at many points of `bridgenet up`, with commands in flight, and twice."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bridgenet.sandbox import _children
from helpers import bridgenet_cli, diff, snap
from netfiles import bridge_file, state_files, write

pytestmark = pytest.mark.real


def start_cli(sb, *argv, env=None):
    """Start the CLI inside ``sb``; return (the nsenter Popen, the PID of bridgenet itself)."""
    full = ["env", *(f"{k}={v}" for k, v in (env or {}).items()), sys.executable, "-m", "bridgenet", *argv]
    proc = sb.popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = _children(proc.pid)  # nsenter forks the command into the sandbox's PID namespace
        if kids:
            return proc, kids[0]
        time.sleep(0.001)
    raise AssertionError("the CLI did not start")


def wait_for_file(sb, name, timeout=10.0):
    path = os.path.join(sb.runner().fs_root, "run/bridgenet", name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.0005)


def settle(sb, proc, sig, before, path):
    """After a signal: exit 128+sig and the host as before; or, if up had finished, down restores it."""
    out, err = proc.communicate(timeout=90)
    if proc.returncode == 0:  # up had finished before the signal reached it
        d = bridgenet_cli(sb, "down", "-q", "-f", path)
        assert d.exit_code == 0, d.stderr
    else:
        assert proc.returncode == 128 + sig, err
        assert "the host is back where it was" in err, err
    now = snap(sb)
    assert now == before, diff(before, now)
    assert state_files(sb) == [], state_files(sb)
    return err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay", [0.0, 0.004, 0.012, 0.03, 0.06, 0.1])
def test_a_signal_during_a_batch_up_of_50_containers_leaves_nothing(sb, sig, delay):
    """Seen: the batch in flight went on after the rollback and left a namespace with 35 veths."""
    path = write(sb, "many.toml", bridge_file("many", "brm", 90, 50))
    before = snap(sb)
    proc, pid = start_cli(sb, "up", "--batch", "-q", "-f", path)
    wait_for_file(sb, "many.json")  # recorded: the batch starts now
    time.sleep(delay)
    os.kill(pid, sig)
    settle(sb, proc, sig, before, path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01, 0.02, 0.05])
def test_a_signal_during_a_step_by_step_up_leaves_nothing(sb, sig, delay):
    path = write(sb, "few.toml", bridge_file("few", "brf", 91, 3))
    before = snap(sb)
    proc, pid = start_cli(sb, "up", "-q", "-f", path)
    wait_for_file(sb, "few.json")
    time.sleep(delay)
    os.kill(pid, sig)
    settle(sb, proc, sig, before, path)


def signal_after(sb, after, *argv, warnings=0):
    """``bridgenet up -q ARGV`` paused after command ``after``, then SIGTERM (odd) or SIGINT (even):
    exit 128+sig, and the host as before. ``warnings``: lines plan prints on stderr before the pause."""
    sig = signal.SIGTERM if after % 2 else signal.SIGINT
    before = snap(sb)
    proc, pid = start_cli(sb, "up", "-q", *argv, env={"BRIDGENET_TEST_PAUSE_AFTER": str(after)})
    for _ in range(warnings):
        assert "warning" in proc.stderr.readline()
    assert "paused" in proc.stderr.readline()
    os.kill(pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "the host is back where it was" in err
    assert snap(sb) == before, diff(before, snap(sb))
    assert state_files(sb) == []


@pytest.mark.parametrize("after", [1, 2, 4, 7, 9, 11, 14, 17, 19, 21, 22, 23])
def test_a_signal_after_each_kind_of_lesson_step_leaves_nothing(sb, after):
    signal_after(sb, after)


SERVICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "services.toml")


@pytest.mark.parametrize("after", [9, 37, 44, 50, 58, 63, 68, 70, 71, 73, 74, 80, 83])
def test_a_signal_at_each_kind_of_step_of_the_complete_example_leaves_nothing(sb, after):
    """examples/services.toml (issue 12): IPv6 addresses, both families' forwarding, ip6tables chains and
    NAT66, the published port's chains and route_localnet, the name files; SIGTERM or SIGINT after each kind."""
    with open(SERVICES) as f:
        path = write(sb, "services.toml", f.read())
    signal_after(sb, after, "-f", path, warnings=1)  # plan's accept_ra warning: IPv6 forwarding in the host


@pytest.mark.parametrize("gap", [0.0, 0.002, 0.02])
def test_a_second_signal_does_not_abandon_the_rollback(sb, gap):
    """Seen: a double SIGINT left NAME.json.PID.tmp behind."""
    path = write(sb, "many.toml", bridge_file("many", "brm", 90, 30))
    before = snap(sb)
    proc, pid = start_cli(sb, "up", "--batch", "-q", "-f", path)
    wait_for_file(sb, "many.json")
    time.sleep(0.01)
    os.kill(pid, signal.SIGINT)
    time.sleep(gap)
    os.kill(pid, signal.SIGINT)
    err = settle(sb, proc, signal.SIGINT, before, path)
    if "back where it was" in err:
        assert proc.returncode == 130


def test_down_interrupted_finishes_and_leaves_nothing(sb):
    path = write(sb, "many.toml", bridge_file("many", "brm", 90, 20))
    before = snap(sb)
    assert bridgenet_cli(sb, "up", "-q", "--batch", "-f", path).exit_code == 0
    proc, pid = start_cli(sb, "down", "-f", path)
    wait_for_file(sb, "many.lock")  # down has begun
    os.kill(pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 143), err
    assert snap(sb) == before, diff(before, snap(sb))
    assert state_files(sb) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_up_removes_what_the_file_dropped_stops_after_the_removal(sb, sig):
    """Seen: Ctrl-C during the removals of a converging up was ignored; it went on to build the new network."""
    path = write(sb, "net.toml", bridge_file("net", "brn", 92, 20, netns_prefix="old"))
    assert bridgenet_cli(sb, "up", "-q", "--batch", "-f", path).exit_code == 0
    write(sb, "net.toml", bridge_file("net", "brn", 92, 20, netns_prefix="new"))  # 20 to remove, 20 to add
    proc, pid = start_cli(sb, "up", "-q", "-f", path)
    wait_for_file(sb, "net.lock")
    deadline = time.monotonic() + 20

    def netns():  # `ip netns list` enters no namespace: a snapshot would, and up would find old19 busy
        return sb.run(["ip", "netns", "list"]).stdout.split()  # (seen: "netns old5 still has processes in it")

    while "old19" in netns():  # removals run in reverse: the last container goes first
        if proc.poll() is not None:
            pytest.fail(f"up ended ({proc.returncode}) before its first removal: {proc.communicate()}")
        assert time.monotonic() < deadline, f"old19 still there after 20 s; ip netns: {netns()}"
        time.sleep(0.002)
    os.kill(pid, sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + sig, err
    names = snap(sb)["netns"]
    assert not any(n.startswith("old") for n in names), names  # the removal finished
    assert not any(n.startswith("new") for n in names), names  # nothing new was built
    assert bridgenet_cli(sb, "down", "-q", "-f", path).exit_code == 0
    assert state_files(sb) == []
