"""Real tier: ``bridgenet show`` reports a real network beside what ``up`` makes, and names each drift.

One sandbox holds ``examples/services.toml`` (dual stack on ``svc0``, a
published port, names) for the module: each row of :data:`ROWS` changes the
live network with plain ``ip``/``iptables``/``sysctl`` commands, checks that
``show`` names that drift (kind, place, object), puts it back, and checks
that ``show`` finds no drift again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bridgenet
from bridgenet import apply, config
from helpers import bridgenet_cli

pytestmark = pytest.mark.real

SERVICES = Path(__file__).resolve().parent.parent / "examples" / "services.toml"
TAG = ["-m", "comment", "--comment", "bridgenet:services"]
STRAY = ["iptables", "-A", "BRIDGENET-FORWARD", "-s", "10.40.0.99", *TAG, "-j", "DROP"]


@pytest.fixture(scope="module")
def up_sb():
    from bridgenet.sandbox import Sandbox

    with Sandbox(upstream=True) as sb:
        apply.up(config.load(SERVICES), sb.runner())
        yield sb


def statuses(sb):
    return [s.to_dict() for s in bridgenet.show(runner=sb.runner())]


def test_a_healthy_network_as_show_prints_it(up_sb):
    r = bridgenet_cli(up_sb, "show")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"network services ({SERVICES}; state file /run/bridgenet/services.json)\n")
    assert "drift: none" in r.stdout and "✗" not in r.stdout and "MISSING" not in r.stdout, r.stdout
    r = bridgenet_cli(up_sb, "show", "--json")
    assert r.exit_code == 0, r.stderr
    (net,) = json.loads(r.stdout)
    assert net == statuses(up_sb)[0]  # the CLI prints what bridgenet.show() returns
    assert net["network"] == "services" and net["source"] == str(SERVICES) and not net["drifted"]
    assert net["state_file"] == "/run/bridgenet/services.json"
    assert net["drift"] == []
    host = {link["ifname"]: link for link in net["host"]["links"]}
    assert host["svc0"]["info_kind"] == "bridge" and host["svc0"]["operstate"] == "UP"
    assert {(a["family"], a["local"], a["prefixlen"]) for a in host["svc0"]["addr_info"]} == {
        ("inet", "10.40.0.1", 24), ("inet6", "fd00:40::1", 64)}
    assert net["bridges"] == [{"ifname": "svc0", "ports": ["v-web", "v-db", "v-cache"]}]
    spaces = {ns["name"]: ns for ns in net["namespaces"]}
    assert list(spaces) == ["web", "db", "cache"]
    (eth0,) = spaces["web"]["links"]
    assert eth0["ifname"] == "eth0" and eth0["carrier"] and eth0["mtu"] == 1500
    assert {"dst": "default", "gateway": "10.40.0.1", "dev": "eth0"}.items() <= spaces["web"]["routes"][0].items()
    assert {"key": "net.ipv4.ip_forward", "netns": None, "value": "1", "wanted": "1"} in net["sysctls"]
    assert net["rules"] and all(rule["present"] for rule in net["rules"])
    assert {rule["family"] for rule in net["rules"]} == {"inet", "inet6"}
    assert [(p["container"], p["publish"], p["family"], p["present"]) for p in net["ports"]] == [
        ("web", "8080:80", "inet", True), ("web", "8080:80", "inet6", True), ("web", "127.0.0.1:8081:80", "inet", True)]
    assert [f["path"] for f in net["files"]] == [f"/etc/netns/{ns}/{f}" for ns in ("web", "db", "cache")
                                                 for f in ("hosts", "resolv.conf")]
    assert all(f["present"] for f in net["files"])
    assert "forwarding=1" in net["warnings"][0]  # plan's warnings (accept_ra), seen here too


# kind: (inject, undo, (drift kind, where, what))
ROWS = {
    # down, the link loses its routes and its IPv6 addresses (keep_addr_on_down=0): up puts them back
    "link-down": ([["ip", "-n", "web", "link", "set", "eth0", "down"]], "up", ("changed", "web", "link eth0")),
    "mtu": ([["ip", "link", "set", "svc0", "mtu", "1400"]], [["ip", "link", "set", "svc0", "mtu", "1500"]],
            None),  # the bridge's MTU is the kernel's (the lowest of its ports'): no MTU set, no drift
    "port-detached": ([["ip", "link", "set", "v-db", "nomaster"]], [["ip", "link", "set", "v-db", "master", "svc0"]],
                      ("changed", "host", "link v-db")),
    "address-gone": ([["ip", "-n", "db", "addr", "del", "10.40.0.20/24", "dev", "eth0"]],
                     [["ip", "-n", "db", "addr", "add", "10.40.0.20/24", "dev", "eth0"],
                      ["ip", "-n", "db", "route", "add", "default", "via", "10.40.0.1"]],
                     ("missing", "db", "address 10.40.0.20/24 on eth0")),
    "route-gone": ([["ip", "-n", "db", "route", "del", "default"]],
                   [["ip", "-n", "db", "route", "add", "default", "via", "10.40.0.1"]],
                   ("missing", "db", "route default via 10.40.0.1")),
    "sysctl": ([["sysctl", "-qw", "net.ipv4.ip_forward=0"]], [["sysctl", "-qw", "net.ipv4.ip_forward=1"]],
               ("changed", "host", "net.ipv4.ip_forward")),
    "rule-gone": ([["iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "10.40.0.0/24", "!", "-o", "svc0", *TAG,
                    "-j", "MASQUERADE"]],
                  [["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.40.0.0/24", "!", "-o", "svc0", *TAG,
                    "-j", "MASQUERADE"]],
                  ("missing", "host", "iptables rule nat POSTROUTING")),
    "namespace-gone": ([["ip", "netns", "del", "cache"]], "up", ("missing", "cache", "namespace cache")),
    "file-changed": ([["sh", "-c", "echo '10.9.9.9 intruder' >> /etc/netns/web/hosts"]], "up",
                     ("changed", "web", "file /etc/netns/web/hosts")),
    "extra-link": ([["ip", "-n", "web", "link", "add", "side0", "type", "veth", "peer", "name", "side1"]],
                   [["ip", "-n", "web", "link", "del", "side0"]], ("extra", "web", "link side0")),
    "extra-address": ([["ip", "-n", "web", "addr", "add", "10.9.9.9/24", "dev", "eth0"]],
                      [["ip", "-n", "web", "addr", "del", "10.9.9.9/24", "dev", "eth0"]],
                      ("extra", "web", "address 10.9.9.9/24 on eth0")),
    "extra-port": ([["ip", "link", "add", "stray0", "type", "veth", "peer", "name", "stray1"],
                    ["ip", "link", "set", "stray0", "master", "svc0"]], [["ip", "link", "del", "stray0"]],
                   ("extra", "host", "port stray0 of svc0")),
    "extra-route": ([["ip", "-n", "web", "route", "add", "203.0.113.0/24", "via", "10.40.0.20"]],
                    [["ip", "-n", "web", "route", "del", "203.0.113.0/24"]],
                    ("extra", "web", "route 203.0.113.0/24 via 10.40.0.20")),
    "extra-tagged-rule": ([STRAY], [["iptables", "-D", *STRAY[2:]]], ("extra", "host", "iptables rule filter BRIDGENET-FORWARD")),
}


def _run(sb, commands):
    if commands == "up":
        apply.up(config.load(SERVICES), sb.runner())
        return
    for argv in commands:
        sb.run(argv, check=True)


@pytest.mark.parametrize("kind", list(ROWS))
def test_show_names_the_drift(up_sb, kind):
    inject, undo, want = ROWS[kind]
    _run(up_sb, inject)
    try:
        (net,) = statuses(up_sb)
        found = [(d["kind"], d["where"], d["what"]) for d in net["drift"]]
        if want is None:
            assert found == [], net["drift"]
        else:
            assert want in found, net["drift"]
            assert net["drifted"]
            r = bridgenet_cli(up_sb, "show", "services")
            assert r.exit_code == 2 and f"{want[0]:<8} {want[1]}: {want[2]}" in r.stdout, r.stdout + r.stderr
            fixes = [d["fix"] for d in net["drift"] if (d["kind"], d["where"], d["what"]) == want]
            assert fixes[0], net["drift"]  # each of these has the command that mends it
    finally:
        _run(up_sb, undo)
    (net,) = statuses(up_sb)
    assert net["drift"] == [], net["drift"]


def test_show_lists_every_network_and_nothing_once_down(up_sb):
    lesson = bridgenet.tutorial()
    apply.up(lesson, up_sb.runner())
    try:
        r = bridgenet_cli(up_sb, "show", "--json")
        assert r.exit_code == 0, r.stderr
        assert [n["network"] for n in json.loads(r.stdout)] == ["services", "tutorial"]
        r = bridgenet_cli(up_sb, "show", "nosuch")
        assert r.exit_code == 1 and "known: services, tutorial" in r.stderr, r.stderr
        # a file that is not up: everything missing, no state file
        r = bridgenet_cli(up_sb, "show", "-f", str(Path(__file__).parent.parent / "examples" / "campus.toml"),
                          "--json")
        (net,) = json.loads(r.stdout)
        assert r.exit_code == 2 and net["state_file"] is None
        assert {d["kind"] for d in net["drift"]} == {"missing"}, net["drift"]
    finally:
        apply.down("tutorial", up_sb.runner())
    apply.down("services", up_sb.runner())
    try:
        r = bridgenet_cli(up_sb, "show", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout) == [], r.stdout
    finally:
        apply.up(config.load(SERVICES), up_sb.runner())
