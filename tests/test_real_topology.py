"""Real tier: beyond one bridge (routers, bare veths, routes, MTU), in sandboxes.

The network is ``examples/campus.toml``: lan0 (10.10.0.0/24, the host's
address, NAT) with ``a`` and the router ``r1``; lan1 (10.20.0.0/24, MTU
1400, no host address) with ``r1`` and ``b``; a bare veth b <-> c
(10.99.0.0/30, MTU 1400); the host reaches lan1 through r1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridgenet import apply, config
from bridgenet.batch import BatchRunner
from bridgenet.runners import run_all
from helpers import bridgenet_cli, diff, snap

pytestmark = pytest.mark.real

CAMPUS = Path(__file__).resolve().parent.parent / "examples" / "campus.toml"


def ping(sb, netns, address, *extra):
    argv = ["ping", "-c", "1", "-W", "2", *extra, address]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    return sb.run(argv, check=False, timeout=20)


def ttl(result) -> int:
    m = re.search(r"ttl=(\d+)", result.stdout)
    assert m, result.stdout + result.stderr
    return int(m.group(1))


@pytest.fixture
def campus(sb):
    net = config.load(CAMPUS)
    before = snap(sb)
    report = apply.up(net, sb.runner())
    yield net, before, report


def test_two_subnets_through_a_router(sb, campus):
    """a (lan0) and b (lan1) reach each other through r1: one hop, so the TTL arrives one lower."""
    near = ping(sb, "a", "10.10.0.254")  # r1 on a's own subnet: no router in between
    far = ping(sb, "a", "10.20.0.10")  # b, behind r1
    assert near.exit_code == 0 and far.exit_code == 0, far.stdout + far.stderr
    assert ttl(far) == ttl(near) - 1
    back = ping(sb, "b", "10.10.0.10")
    assert back.exit_code == 0, back.stdout + back.stderr
    # the host reaches both subnets (lan1 through its route via r1, though it has no address there)
    assert ping(sb, None, "10.10.0.10").exit_code == 0
    host_to_b = ping(sb, None, "10.20.0.10")
    assert host_to_b.exit_code == 0, host_to_b.stdout + host_to_b.stderr


def test_router_needs_forwarding(sb, campus):
    """Turn r1's forwarding off and the far subnet is gone (what forward = true is for)."""
    sb.run(["ip", "netns", "exec", "r1", "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
    assert ping(sb, "a", "10.20.0.10").exit_code != 0
    assert ping(sb, "a", "10.10.0.254").exit_code == 0


def test_bare_veth_carries_its_traffic_and_nothing_else(sb, campus):
    assert ping(sb, "b", "10.99.0.2").exit_code == 0
    assert ping(sb, "c", "10.99.0.1").exit_code == 0
    # c has no route anywhere else: neither lan1 nor lan0 is reachable from it
    assert ping(sb, "c", "10.20.0.10").exit_code != 0
    assert ping(sb, "c", "10.10.0.10").exit_code != 0
    links = json.loads(sb.run(["ip", "-n", "c", "-json", "link", "show"], check=True).stdout)
    assert sorted(ln["ifname"] for ln in links) == ["lo", "to-b"]
    assert [ln["mtu"] for ln in links if ln["ifname"] == "to-b"] == [1400]


def test_mtu_1400_on_one_segment(sb, campus):
    """lan1 has MTU 1400: 1372 bytes of ICMP data (+ 8 ICMP + 20 IP = 1400) cross it unfragmented, 1373 do not."""
    fits = ping(sb, "b", "10.20.0.1", "-M", "do", "-s", "1372")
    assert fits.exit_code == 0, fits.stdout + fits.stderr
    big = ping(sb, "b", "10.20.0.1", "-M", "do", "-s", "1373")
    assert big.exit_code != 0
    assert re.search(r"message too long|Frag needed", big.stdout + big.stderr, re.I), big.stdout + big.stderr
    # lan0 keeps 1500: the same size crosses it
    assert ping(sb, "a", "10.10.0.254", "-M", "do", "-s", "1373").exit_code == 0
    mtus = {ln["ifname"]: ln["mtu"] for ln in json.loads(sb.run(["ip", "-json", "link", "show"], check=True).stdout)}
    assert mtus["lan1"] == mtus["v-b"] == mtus["v-r1-1"] == 1400
    assert mtus["lan0"] == mtus["v-a"] == 1500


def test_up_twice_runs_nothing_and_down_restores_the_snapshot(sb, campus):
    net, before, first = campus
    assert first.ran
    second = apply.up(net, sb.runner())
    assert second.ran == ()
    apply.down(net, sb.runner())
    after = snap(sb)
    assert after == before, diff(before, after)


def test_plan_sees_mtu_and_route_drift(sb, campus):
    net, _, _ = campus
    sb.run(["ip", "link", "set", "dev", "lan1", "mtu", "1300"], check=True)
    sb.run(["ip", "-n", "a", "route", "del", "10.20.0.0/24"], check=True)
    p = bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", str(CAMPUS))
    assert p.exit_code == 2, p.stderr
    assert p.stdout.splitlines() == ["ip link set dev lan1 mtu 1400",
                                     "ip netns exec a ip route add 10.20.0.0/24 via 10.10.0.254"]
    up = bridgenet_cli(sb, "up", "-f", str(CAMPUS))
    assert up.exit_code == 0, up.stderr
    assert bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", str(CAMPUS)).exit_code == 0


def test_batch_and_cli_build_what_the_dry_run_prints(sb):
    """The printed step-by-step commands, run by sh, give the same state as `bridgenet up --batch`."""
    from bridgenet.sandbox import Sandbox

    printed = bridgenet_cli(sb, "up", "--dry-run", "-f", str(CAMPUS), check=True).stdout
    sb.run(["sh", "-e", "-c", printed], check=True)
    by_hand = snap(sb)
    with Sandbox(upstream=sb.upstream) as other:
        up = bridgenet_cli(other, "up", "--batch", "-q", "-f", str(CAMPUS))
        assert up.exit_code == 0, up.stderr
        batched = snap(other)
    assert batched == by_hand, diff(by_hand, batched)


def test_batch_runner_then_cli_down_leaves_nothing(sb):
    net = config.load(CAMPUS)
    before = snap(sb)
    BatchRunner(sb.runner()).execute(net.up_commands(fast=True))
    assert ping(sb, "a", "10.20.0.10").exit_code == 0
    run_all(sb.runner(), net.down_commands())
    after = snap(sb)
    assert after == before, diff(before, after)


@pytest.mark.parametrize("batch", [False, True], ids=["step", "batch"])
def test_a_failure_late_in_up_rolls_everything_back(sb, batch):
    """A link made in the way after planning (the bare veth's end in b): up fails there, and rolls back every
    bridge, router, link, route and rule it made, down to the sandbox's snapshot."""
    from bridgenet.errors import RolledBackError

    net, r = config.load(CAMPUS), sb.runner()
    before = snap(sb)
    plan = apply.plan(net, r, batch=batch)
    sb.run(["ip", "netns", "add", "b"], check=True)  # too late for the plan: netns add b fails
    with pytest.raises(RolledBackError) as ei:
        apply.up(net, r, plan=plan, batch=batch)
    assert ei.value.leftovers == ()
    sb.run(["ip", "netns", "del", "b"], check=True)
    after = snap(sb)
    assert after == before, diff(before, after)
