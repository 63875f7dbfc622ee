"""Real tier: safe apply (converge, record, roll back, clean up), in sandboxes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridgenet
from bridgenet import Container, apply, bridge_network
from bridgenet.errors import ConflictError, NamespaceBusyError, RolledBackError
from bridgenet.ledger import Ledger
from bridgenet.runners import run_all
from bridgenet.sandbox import Sandbox
from helpers import bridgenet_cli, diff, snap

from bridgenet.teardown import default_group

pytestmark = pytest.mark.real

LESSON_LINES = [c.shell() for c in bridgenet.tutorial().up_commands()]


def lines(report):
    return [c.shell() for c in report.ran]


# --- converge --------------------------------------------------------------------


def test_up_twice_down_twice(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    before = snap(sb)
    first = apply.up(net, r)
    assert lines(first) == LESSON_LINES
    second = apply.up(net, r)
    assert second.ran == () and second.in_place == 23
    d1 = apply.down(net, r)
    assert lines(d1) == [c.shell() for c in net.down_commands()]
    assert snap(sb) == before, diff(before, snap(sb))
    d2 = apply.down(net, r)
    assert d2.ran == () and d2.networks == ()
    assert snap(sb) == before


def test_down_of_a_network_never_brought_up(sb):
    before = snap(sb)
    r = bridgenet_cli(sb, "down")
    assert r.exit_code == 0, r.stderr
    assert "nothing to take down" in r.stderr
    assert snap(sb) == before


def test_plan_on_empty_half_built_and_complete(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    p = bridgenet_cli(sb, "plan", "--detailed-exitcode")
    assert p.exit_code == 2
    assert p.stdout.splitlines() == LESSON_LINES
    assert "23 to run, 0 already in place" in p.stderr
    run_all(r, net.up_commands()[:10])  # half-built by hand: container4 is plugged in
    p = bridgenet_cli(sb, "plan", "--detailed-exitcode")
    assert p.exit_code == 2
    assert p.stdout.splitlines() == LESSON_LINES[10:]
    assert "13 to run, 10 already in place" in p.stderr
    up = bridgenet_cli(sb, "up")
    assert up.exit_code == 0, up.stderr
    assert up.stdout.splitlines() == LESSON_LINES[10:]  # completes it
    p = bridgenet_cli(sb, "plan", "--detailed-exitcode")
    assert p.exit_code == 0
    assert p.stdout == ""
    assert "0 to run, 23 already in place" in p.stderr


def test_down_removes_only_what_up_created(sb):
    """br0 existed before up and stays; the hand-made half stays too; ip_forward goes back."""
    net, r = bridgenet.tutorial(), sb.runner()
    run_all(r, net.up_commands()[:2])  # someone else's br0, up
    before = snap(sb)
    apply.up(net, r)
    apply.down(net, r)
    after = snap(sb)
    assert after == before, diff(before, after)
    assert any(link["ifname"] == "br0" for link in after["host"]["links"])


def test_ip_forward_goes_back_to_the_value_it_had(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    sb.run(["sysctl", "-w", "net.ipv4.ip_forward=1"], check=True)
    apply.up(net, r)
    apply.down(net, r)
    assert snap(sb)["ip_forward"] == "1"
    sb.run(["sysctl", "-w", "net.ipv4.ip_forward=0"], check=True)
    apply.up(net, r)
    apply.down(net, r)
    assert snap(sb)["ip_forward"] == "0"


def test_a_rule_someone_else_added_is_never_removed(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    sb.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.201.0.0/24", "-j", "MASQUERADE"], check=True)
    before = snap(sb)
    report = apply.up(net, r)
    assert not any(c.tool == "iptables" for c in report.ran)  # in place: not added again
    apply.down(net, r)
    assert snap(sb) == before, diff(before, snap(sb))
    # and with no such rule: added once, removed once
    sb.run(["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "10.201.0.0/24", "-j", "MASQUERADE"], check=True)
    apply.up(net, r)
    apply.down(net, r)
    rules = sb.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout
    assert "MASQUERADE" not in rules


# --- conflicts: clear errors before any change ---------------------------------------


@pytest.mark.parametrize(
    "setup, words",
    [
        (["ip link add brid4 type bridge"], ["link brid4", "veth", "bridge"]),
        (["ip link add br0 type bridge", "ip addr add 10.9.9.1/24 dev br0"], ["br0", "10.9.9.1/24"]),
        (["ip link add other type bridge", "ip addr add 10.201.0.4/32 dev other"], ["10.201.0.4", "other"]),
        (["ip link add other type bridge", "ip link set other up", "ip addr add 10.201.0.200/16 dev other"],
         ["overlap", "10.201.0.200/16"]),
        (["ip route add 10.201.0.0/25 via 198.51.100.1"], ["10.201.0.0/25", "overlaps"]),
    ],
)
def test_conflicts_are_reported_before_any_change(sb, setup, words):
    for line in setup:
        sb.run(line.split(), check=True)
    before = snap(sb)
    with pytest.raises(ConflictError) as ei:
        apply.up(bridgenet.tutorial(), sb.runner())
    for w in words:
        assert w in str(ei.value)
    assert snap(sb) == before
    cli = bridgenet_cli(sb, "up")
    assert cli.exit_code == 1
    assert "the network wants" in cli.stderr and "but the host has" in cli.stderr
    assert snap(sb) == before


def test_stale_netns_file_gets_a_clear_error(sb):
    sb.run(["sh", "-c", "touch /run/netns/container4"], check=True)
    before = snap(sb)
    assert before["stale_netns"] == ["container4"]
    with pytest.raises(ConflictError) as ei:
        apply.up(bridgenet.tutorial(), sb.runner())
    assert "stale empty file /run/netns/container4" in str(ei.value)
    assert "ip netns del container4" in str(ei.value)
    assert snap(sb) == before
    sb.run(["ip", "netns", "del", "container4"], check=True)  # the advice works
    apply.up(bridgenet.tutorial(), sb.runner())


# --- rollback ------------------------------------------------------------------------


def test_a_failing_command_rolls_back_everything(sb):
    """A command fails half-way (brid5 appears after planning): everything done is undone."""
    net, r = bridgenet.tutorial(), sb.runner()
    before = snap(sb)
    plan = apply.plan(net, r)
    sb.run(["ip", "link", "add", "brid5", "type", "bridge"], check=True)  # too late for the plan
    before_with_brid5 = snap(sb)
    with pytest.raises(RolledBackError) as ei:
        apply.up(net, r, plan=plan)
    err = ei.value
    assert err.cause.argv == ("ip", "link", "add", "brid5", "type", "veth", "peer", "name", "veth5")
    assert err.cause.exit_code != 0
    assert "File exists" in err.cause.stderr
    assert err.leftovers == ()
    g = default_group("tutorial")  # brid5 is the user's: not in the group
    assert [c.shell() for c in err.undone] == ["ip netns del container5", f"ip link set dev brid4 group {g}",
                                               f"ip link set dev br0 group {g}", f"ip link del group {g}",
                                               "ip netns del container4"]
    assert snap(sb) == before_with_brid5, diff(before_with_brid5, snap(sb))
    assert not Ledger.open(r.fs_root, "tutorial").entries
    sb.run(["ip", "link", "del", "brid5"], check=True)
    assert snap(sb) == before


def test_cli_reports_failed_command_with_stderr(sb):
    sb.run(["sh", "-c", "ip link add brid5 type bridge"], check=True)
    r = bridgenet_cli(sb, "up", "--quiet")
    assert r.exit_code == 1  # caught by the plan as a conflict
    assert "link brid5" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_up_rolls_back(sb, sig):
    before = snap(sb)
    cmd = [*sb.nsenter_prefix(), sys.executable, "-m", "bridgenet", "up", "--quiet"]
    env = dict(os.environ, BRIDGENET_TEST_PAUSE_AFTER="12")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stderr.readline()
    assert "paused" in line
    # signal the bridgenet process itself (the child of nsenter, inside the sandbox)
    inner = sb.run(["pgrep", "-o", "-f", "bridgenet up --quiet"], timeout=None).stdout.split()
    assert inner
    sb.run(["kill", f"-{sig.name[3:]}", inner[0]], check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err  # 130 for SIGINT, 143 for SIGTERM
    assert "interrupted" in (line + err).lower()
    assert "the host is back where it was" in err
    assert snap(sb) == before, diff(before, snap(sb))


def _kill_positions():
    return list(range(1, 24))


def test_kill_9_after_each_step_then_down_or_clean_restores_the_host():
    """kill -9 of up after each command in turn; a new process's down (or clean) restores the snapshot."""
    with Sandbox(upstream=True) as s:
        before = snap(s)
        for k in _kill_positions():
            r = bridgenet_cli(s, "up", "--quiet", env={"BRIDGENET_TEST_KILL_AFTER": str(k)})
            assert r.exit_code in (-9, 137), (k, r.exit_code, r.stderr)
            fixer = "clean" if k % 2 else "down"
            d = bridgenet_cli(s, fixer, "--quiet")
            assert d.exit_code == 0, (k, d.stderr)
            now = snap(s)
            assert now == before, f"after kill at {k} and {fixer}:\n" + diff(before, now)


@pytest.mark.parametrize("kill_after", [0, 1])
def test_kill_9_around_a_batch_then_clean(sb, kill_after):
    before = snap(sb)
    r = bridgenet_cli(sb, "up", "--batch", "--quiet", env={"BRIDGENET_TEST_KILL_AFTER": str(kill_after)})
    assert r.exit_code in (-9, 137), r.stderr
    d = bridgenet_cli(sb, "clean", "--quiet")
    assert d.exit_code == 0, d.stderr
    assert snap(sb) == before, diff(before, snap(sb))


# --- namespaces with processes ---------------------------------------------------------


def test_deleting_a_busy_namespace_is_refused_unless_forced(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    apply.up(net, r)
    sleeper = sb.popen(["sleep", "300"], netns="container4")
    try:
        time.sleep(0.2)
        before = snap(sb)
        with pytest.raises(NamespaceBusyError) as ei:
            apply.down(net, r)
        assert ei.value.netns == "container4" and ei.value.pids
        assert snap(sb) == before  # nothing was changed
        cli = bridgenet_cli(sb, "down")
        assert cli.exit_code == 1 and "PIDs" in cli.stderr and "--force" in cli.stderr
        cli = bridgenet_cli(sb, "down", "--force")
        assert cli.exit_code == 0, cli.stderr
        assert sleeper.wait(timeout=10) is not None
        assert "container4" not in snap(sb)["netns"]
    finally:
        Sandbox.terminate(sleeper)


# --- ownership without the state file ---------------------------------------------------


def test_clean_finds_tagged_leftovers_without_the_state_file(sb):
    net = bridge_network("demo", [Container("web", "10.88.0.10"), Container("db", "10.88.0.11")],
                         bridge="br1", gateway="10.88.0.1/24")
    r = sb.runner()
    before = snap(sb)
    apply.up(net, r)
    os.unlink(os.path.join(r.fs_root, "run/bridgenet/demo.json"))
    report = apply.clean(r)
    assert report.networks == ()
    after = snap(sb)
    # the tagged links, namespaces and rule are gone; only ip_forward cannot be tagged
    before["ip_forward"] = after["ip_forward"]
    assert after == before, diff(before, after)


def test_two_networks_down_independently(sb):
    r = sb.runner()
    a = bridgenet.tutorial()
    b = bridge_network("other", [Container("web", "10.88.0.10")], bridge="br1", gateway="10.88.0.1/24")
    before = snap(sb)
    apply.up(a, r)
    mid = snap(sb)
    apply.up(b, r)
    apply.down(b, r)
    assert snap(sb) == mid, diff(mid, snap(sb))
    apply.down(a, r)
    assert snap(sb) == before


# --- loops -------------------------------------------------------------------------------


@pytest.mark.slow
def test_teardown_and_immediate_rebuild_50_times(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    before = snap(sb)
    for i in range(50):
        apply.up(net, r, batch=bool(i % 2))
        apply.down(net, r, batch=bool(i % 2))
    assert snap(sb) == before


small_networks = st.builds(
    lambda n, third, fwd, nat, tag: bridge_network(
        "prop",
        [Container(f"ns{i}", f"10.77.{third}.{10 + i}") for i in range(n)],
        bridge=f"brp{third}", gateway=f"10.77.{third}.1/24", forward=fwd, masquerade=nat, tag=tag,
    ),
    n=st.integers(1, 3), third=st.integers(0, 255), fwd=st.booleans(), nat=st.booleans(), tag=st.booleans(),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=small_networks, batch=st.booleans())
def test_property_up_down_restores_and_plan_after_up_is_empty(net, batch):
    with Sandbox() as s:
        r = s.runner()
        before = snap(s)
        apply.up(net, r, batch=batch)
        assert apply.plan(net, r).empty
        apply.down(net, r, batch=batch)
        after = snap(s)
        assert after == before, json.dumps(diff(before, after))


def test_ip_forward_stays_on_while_another_network_needs_it(sb):
    r = sb.runner()
    a = bridgenet.tutorial()
    b = bridge_network("other", [Container("web", "10.88.0.10")], bridge="br1", gateway="10.88.0.1/24")
    before = snap(sb)
    assert before["ip_forward"] == "0"
    apply.up(a, r)
    apply.up(b, r)  # finds ip_forward=1 already
    apply.down(a, r)
    assert snap(sb)["ip_forward"] == "1"  # b still routes
    apply.down(b, r)
    assert snap(sb) == before, diff(before, snap(sb))


def test_forward_policy_drop_stops_the_lesson_and_a_forward_rule_fixes_it(sb):
    """Docker sets the FORWARD policy to DROP; the lesson's network then routes nothing out."""
    from bridgenet import checks

    r = sb.runner()
    sb.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    before = snap(sb)
    lesson = bridgenet.tutorial()
    p = apply.plan(lesson, r)
    assert any("FORWARD policy here is DROP" in w for w in p.warnings)
    apply.up(lesson, r, plan=p)
    assert not checks.ping(sb, "198.51.100.1", netns="container4").ok
    apply.down(lesson, r)
    net = bridge_network("fwd", [Container("c4", "10.77.0.4"), Container("c5", "10.77.0.5")],
                         bridge="br7", gateway="10.77.0.1/24")
    assert apply.plan(net, r).warnings == ()
    apply.up(net, r)
    assert checks.ping(sb, "198.51.100.1", netns="c4").ok
    with checks.tcp_server(sb, "198.51.100.1", 8080, netns="upstream", mode="whois") as srv:
        checks.tcp_request(sb, "198.51.100.1", 8080, netns="c4")
        assert srv.seen_peers() == ["198.51.100.2"]
    # Docker-style NAT (! -o br7): bridged traffic keeps its source address
    with checks.tcp_server(sb, "10.77.0.5", 8081, netns="c5", mode="whois") as srv:
        checks.tcp_request(sb, "10.77.0.5", 8081, netns="c4")
        assert srv.seen_peers() == ["10.77.0.4"]
    apply.down(net, r)
    assert snap(sb) == before, diff(before, snap(sb))


def test_a_second_up_while_one_runs_is_refused(sb):
    """Two processes changing one network at once: the second is refused, the first finishes."""
    before = snap(sb)
    cmd = [*sb.nsenter_prefix(), sys.executable, "-m", "bridgenet", "up", "--quiet"]
    env = dict(os.environ, BRIDGENET_TEST_PAUSE_AFTER="5")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert "paused" in proc.stderr.readline()
        second = bridgenet_cli(sb, "up", "--quiet")
        assert second.exit_code == 1
        assert "another bridgenet process" in second.stderr and "is changing network tutorial" in second.stderr
        third = bridgenet_cli(sb, "down", "--quiet")
        assert third.exit_code == 1 and "another bridgenet process" in third.stderr
    finally:
        inner = sb.run(["pgrep", "-o", "-f", "bridgenet up --quiet"], timeout=None).stdout.split()
        sb.run(["kill", "-TERM", *inner])
        proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert snap(sb) == before, diff(before, snap(sb))


def test_a_host_link_named_like_a_peer_is_no_conflict(sb):
    """Most hosts have an eth0; peers named eth0 are created inside their namespaces at once."""
    sb.run(["ip", "link", "add", "eth0", "type", "bridge"], check=True)
    before = snap(sb)
    net = bridge_network("shop", [Container("web", "10.88.0.10"), Container("db", "10.88.0.20")],
                         bridge="br1", gateway="10.88.0.1/24")
    report = apply.up(net, sb.runner())
    assert "ip link add v-web type veth peer name eth0 netns web" in lines(report)
    assert sb.run(["ping", "-c", "1", "-W", "1", "10.88.0.20"], netns="web").ok
    apply.down(net, sb.runner())
    assert snap(sb) == before, diff(before, snap(sb))


def test_down_explains_when_bridgenet_created_nothing(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    run_all(r, net.up_commands())  # built by hand
    assert apply.up(net, r).ran == ()
    cli = bridgenet_cli(sb, "down")
    assert cli.exit_code == 0
    assert "bridgenet created nothing of tutorial here" in cli.stderr
    assert "container4" in snap(sb)["netns"]  # left alone


def test_a_lesson_veth_not_moved_yet_is_completed_in_batch_form(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    before = snap(sb)
    run_all(r, net.up_commands()[:4])  # brid4/veth4 made, veth4 still in the host
    report = apply.up(net, r, batch=True)
    assert "ip link set veth4 netns container4" in lines(report)
    assert sb.run(["ping", "-c", "1", "-W", "1", "10.201.0.5"], netns="container4").ok
    assert apply.plan(net, r).empty
    apply.down(net, r)
    run_all(r, net.down_commands(net.steps()[:3]))  # what was made by hand
    assert snap(sb) == before, diff(before, snap(sb))
