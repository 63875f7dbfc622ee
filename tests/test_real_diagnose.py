"""Real tier: ``bridgenet diagnose`` names the fault injected into a real network, one row per kind.

One sandbox (with the upstream at 198.51.100.1) holds the network ``d``
(bridge ``bra``, ``a1`` 10.61.0.2, ``a2`` 10.61.0.3) for all rows of a
worker: each row injects its fault with plain ``ip``/``iptables``/``sysctl``
commands, diagnoses, puts the network back with the row's undo commands,
and checks that it is healthy again before the next row. (A stale conntrack
entry is checked in the fast tier, on conntrack's output: an un-NATed UDP
entry made here before MASQUERADE returned did not show up reliably.)
"""

import json

import pytest

from bridgenet import Container, apply, bridge_network
from bridgenet.diagnose import diagnose
from bridgenet.sandbox import Sandbox
from helpers import bridgenet_cli

pytestmark = pytest.mark.real

UP = "198.51.100.1"
MASQ = ["-s", "10.61.0.0/24", "!", "-o", "bra", "-m", "comment", "--comment", "bridgenet:d", "-j", "MASQUERADE"]
DEFAULT = ["ip", "-n", "a1", "route", "replace", "default", "via", "10.61.0.1"]


def network():
    return bridge_network("d", [Container("a1", "10.61.0.2"), Container("a2", "10.61.0.3")],
                          bridge="bra", gateway="10.61.0.1/24")


@pytest.fixture(scope="module")
def net_sb():
    with Sandbox(upstream=True) as sb:
        apply.up(network(), sb.runner())
        yield sb


def run_all(sb, commands):
    for argv in commands:
        netns = None
        if argv and argv[0] == "@":  # ["@", NS, ...]: run inside NS
            netns, argv = argv[1], argv[2:]
        sb.run(argv, netns=netns, check=True)


# kind: (source, destination, diagnose keywords, inject, undo)
ROWS = {
    "link-down": ("a1", "a2", {}, [["ip", "-n", "a1", "link", "set", "dev", "eth0", "down"]],
                  [["ip", "-n", "a1", "link", "set", "dev", "eth0", "up"], DEFAULT]),
    "port-down": ("a1", "a2", {}, [["ip", "link", "set", "dev", "v-a1", "down"]],
                  [["ip", "link", "set", "dev", "v-a1", "up"]]),
    "port-detached": ("a1", "a2", {}, [["ip", "link", "set", "dev", "v-a1", "nomaster"]],
                      [["ip", "link", "set", "dev", "v-a1", "master", "bra"]]),
    "bridge-down": ("host", "a1", {}, [["ip", "link", "set", "dev", "bra", "down"]],
                    [["ip", "link", "set", "dev", "bra", "up"]]),
    "no-carrier": ("a1", "a2", {"network": True}, [["ip", "link", "set", "dev", "v-a1", "netns", "upstream"]],
                   [["ip", "-n", "upstream", "link", "set", "dev", "v-a1", "netns", "1"],
                    ["ip", "link", "set", "dev", "v-a1", "master", "bra", "up"]]),
    "no-address": ("a1", "a2", {}, [["ip", "-n", "a1", "addr", "flush", "dev", "eth0"]],
                   [["ip", "-n", "a1", "addr", "add", "10.61.0.2/24", "dev", "eth0"], DEFAULT]),
    "no-default-route": ("a1", UP, {}, [["ip", "-n", "a1", "route", "del", "default"]], [DEFAULT]),
    "gateway-unreachable": ("a1", UP, {}, [["ip", "-n", "a1", "route", "replace", "default", "via", "10.61.0.254"]],
                            [DEFAULT]),
    "ip-forward-off": ("a1", UP, {}, [["sysctl", "-w", "net.ipv4.ip_forward=0"]],
                       [["sysctl", "-w", "net.ipv4.ip_forward=1"]]),
    "forward-rule": ("a1", "a2", {}, [["iptables", "-I", "FORWARD", "-s", "10.61.0.2", "-j", "DROP"]],
                     [["iptables", "-D", "FORWARD", "-s", "10.61.0.2", "-j", "DROP"]]),
    "forward-policy": ("a1", UP, {}, [["iptables", "-P", "FORWARD", "DROP"],
                                      ["iptables", "-D", "FORWARD", "-j", "BRIDGENET-FORWARD"]],
                       [["iptables", "-I", "FORWARD", "-j", "BRIDGENET-FORWARD"], ["iptables", "-P", "FORWARD", "ACCEPT"]]),
    "firewall-rule": ("a1", "a2", {}, [["@", "a2", "iptables", "-A", "INPUT", "-p", "icmp", "-j", "DROP"]],
                      [["@", "a2", "iptables", "-D", "INPUT", "-p", "icmp", "-j", "DROP"]]),
    "no-masquerade": ("a1", UP, {}, [["iptables", "-t", "nat", "-D", "POSTROUTING", *MASQ]],
                      [["iptables", "-t", "nat", "-A", "POSTROUTING", *MASQ]]),
    "rp-filter": ("a1", UP, {}, [["sysctl", "-w", "net.ipv4.conf.all.rp_filter=1"],
                                 ["ip", "route", "add", "10.61.0.2/32", "dev", "uplink"]],
                  [["ip", "route", "del", "10.61.0.2/32", "dev", "uplink"],
                   ["sysctl", "-w", "net.ipv4.conf.all.rp_filter=0"]]),
    "mtu-mismatch": ("a1", "a2", {}, [["ip", "link", "set", "dev", "v-a1", "mtu", "1400"]],
                     [["ip", "link", "set", "dev", "v-a1", "mtu", "1500"]]),
    "port-not-forwarding": ("a1", "a2", {}, [["ip", "link", "set", "dev", "bra", "type", "bridge", "stp_state", "1"],
                                             ["ip", "link", "set", "dev", "v-a1", "down"],
                                             ["ip", "link", "set", "dev", "v-a1", "up"]],
                            [["ip", "link", "set", "dev", "bra", "type", "bridge", "stp_state", "0"],
                             ["ip", "link", "set", "dev", "v-a1", "down"], ["ip", "link", "set", "dev", "v-a1", "up"]]),
    "port-closed": ("a1", "a2", {"port": 9}, [], []),
    "iptables-legacy": ("a1", UP, {}, [["iptables-legacy", "-I", "FORWARD", "-s", "10.61.0.2", "-j", "DROP"]],
                        [["iptables-legacy", "-D", "FORWARD", "-s", "10.61.0.2", "-j", "DROP"]]),
}


def healthy(sb):
    for dst in ("a2", UP):
        d = diagnose("a1", dst, runner=sb.runner(), network=network())
        if not d.reachable:
            return d
    return None


def test_healthy_network_is_reachable_every_way(net_sb):
    net = network()
    for src, dst in [("a1", "a2"), ("a2", "a1"), ("a1", UP), ("host", "a1"), ("a1", "host")]:
        d = diagnose(src, dst, runner=net_sb.runner(), network=net)
        assert d.reachable and d.problem is None, d.render()
    tcp = diagnose("host", "a1", port=9, runner=net_sb.runner())
    assert tcp.problem is not None and tcp.problem.kind == "port-closed", tcp.render()


@pytest.mark.parametrize("kind", list(ROWS))
def test_diagnose_names_the_fault(net_sb, kind):
    src, dst, kw, inject, undo = ROWS[kind]
    kw = dict(kw)
    if kw.pop("network", False):
        kw["network"] = network()
    if kind == "iptables-legacy" and not net_sb.run(["iptables-legacy", "-S", "FORWARD"]).ok:
        pytest.skip("iptables-legacy cannot make a table here")
    if kind == "iptables-legacy" and not net_sb.run(["cat", "/proc/net/ip_tables_names"]).ok:
        # rootless: owned by the real root, mode 0440 (as in test_real_firewall.py)
        pytest.skip("in a user namespace /proc/net/ip_tables_names is unreadable: legacy tables cannot be seen")
    try:
        run_all(net_sb, inject)
        d = diagnose(src, dst, runner=net_sb.runner(), **kw)
    finally:
        run_all(net_sb, undo)
    assert d.problem is not None and d.problem.kind == kind, d.render()
    assert d.reachable is False, d.render()
    assert d.problem.message
    broken = healthy(net_sb)
    assert broken is None, f"row {kind} did not undo its fault:\n{broken.render()}"


def test_cli_exit_codes_and_json(net_sb):
    ok = bridgenet_cli(net_sb, "diagnose", "a1", "a2", "--json")
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["reachable"] is True and doc["problem"] is None and doc["probe"]["passed"] is True
    net_sb.run(["sysctl", "-w", "net.ipv4.ip_forward=0"], check=True)
    try:
        bad = bridgenet_cli(net_sb, "diagnose", "a1", UP)
    finally:
        net_sb.run(["sysctl", "-w", "net.ipv4.ip_forward=1"], check=True)
    assert bad.exit_code == 1 and "problem (ip-forward-off)" in bad.stdout, bad.stdout + bad.stderr
    assert "fix: sysctl -w net.ipv4.ip_forward=1" in bad.stdout
    usage = bridgenet_cli(net_sb, "diagnose", "nosuchns", "a2")
    assert usage.exit_code == 2 and "source" in usage.stderr
