"""Fast tier: bridgenet diagnose's arguments, JSON shape, message rendering, firewall evaluator, conntrack."""

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bridgenet import ValidationError, cli
from bridgenet.diagnose import Diagnosis
from bridgenet.diagnose_args import check_args
from bridgenet.diagnose_checks import KINDS, Checker, Hop, Problem
from bridgenet.diagnose_firewall import Packet, Table, blocking_hits, delete_command, verdict
from bridgenet.diagnose_probe import Probe
from bridgenet.diagnose_state import NsView, View

EXAMPLES = Path(__file__).parent.parent / "examples"
A, B = IPv4Address("10.61.0.2"), IPv4Address("198.51.100.1")


def sample(problem=None, reachable=True):
    return Diagnosis("a1", "upstream", "198.51.100.1", "upstream", None, "icmp", reachable, problem,
                     (Hop("a1", "link eth0", True, "10.61.0.2/24"), Hop("host", "ip_forward", False, "0")),
                     Probe("ping", "198.51.100.1", reachable, "2/2 replies" if reachable else "0/2 replies"))


@pytest.mark.parametrize("argv", [
    ["diagnose"], ["diagnose", "a1"], ["diagnose", "a1", "a2", "--port", "0"], ["diagnose", "a1", "a2", "--port", "x"],
    ["diagnose", "a1", "a2", "--port", "65536"], ["diagnose", "a1", "a2", "--udp"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2


@pytest.mark.parametrize("args", [("", "a2", None, False), ("host", "host", None, False), ("a1", "a2", 0, False),
                                  ("a1", "a2", True, False), ("a1", "a2", None, True), (None, "a2", None, False),
                                  ("a1", "a2", 80, "yes")])
def test_api_refuses_bad_arguments(args):
    with pytest.raises(ValidationError):
        check_args(*args)


def test_json_shape():
    p = Problem("ip-forward-off", "host does not forward", "sysctl -w net.ipv4.ip_forward=1", None)
    doc = json.loads(sample(p, reachable=False).to_json())
    assert set(doc) == {"source", "destination", "address", "destination_netns", "protocol", "port", "reachable",
                        "problem", "hops", "probe"}
    assert doc["problem"] == {"kind": "ip-forward-off", "message": "host does not forward",
                              "fix": "sysctl -w net.ipv4.ip_forward=1", "where": "host"}
    assert doc["hops"][1] == {"where": "host", "what": "ip_forward", "ok": False, "detail": "0"}
    assert doc["probe"] == {"method": "ping", "target": "198.51.100.1", "passed": False, "summary": "0/2 replies"}
    assert doc["reachable"] is False


def test_rendering():
    p = Problem("ip-forward-off", "host does not forward", "sysctl -w net.ipv4.ip_forward=1", None)
    text = sample(p, reachable=False).render()
    assert text.splitlines() == [
        "diagnose a1 -> 198.51.100.1 (upstream) by ping",
        "  ✓ a1: link eth0: 10.61.0.2/24",
        "  ✗ host: ip_forward: 0",
        "problem (ip-forward-off): host does not forward",
        "fix: sysctl -w net.ipv4.ip_forward=1",
        "probe: ping 198.51.100.1 from a1: 0/2 replies",
        "NOT reachable: a1 -> upstream",
    ]
    assert sample().render().endswith("reachable: a1 -> upstream\n")


def test_problem_kind_is_checked():
    assert len(KINDS) >= 12
    with pytest.raises(ValueError):
        Problem("no-such-kind", "x")


RULES = """# Warning: iptables-legacy tables present, use iptables-legacy to see them
-P INPUT ACCEPT
-P FORWARD DROP
-N BRIDGENET-FORWARD
-A FORWARD -j BRIDGENET-FORWARD
-A FORWARD -s 10.61.0.9/32 -j DROP
-A BRIDGENET-FORWARD -i bra -m comment --comment "bridgenet:d" -j ACCEPT
-A BRIDGENET-FORWARD -o bra -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
"""


def test_firewall_evaluator():
    t = Table.parse(RULES)
    assert verdict(t, "FORWARD", Packet(A, B, "bra", "uplink")).action == "ACCEPT"
    back = verdict(t, "FORWARD", Packet(B, A, "uplink", "bra", state="ESTABLISHED"))
    assert back.action == "ACCEPT" and "--ctstate" in back.rule
    new_in = verdict(t, "FORWARD", Packet(B, A, "uplink", "bra"))
    assert (new_in.action, new_in.rule) == ("DROP", None)  # the policy
    dropped = verdict(t, "FORWARD", Packet(IPv4Address("10.61.0.9"), B, "brx", "uplink"))
    assert dropped.rule == "-A FORWARD -s 10.61.0.9/32 -j DROP"
    assert delete_command(dropped.rule) == "iptables -D FORWARD -s 10.61.0.9/32 -j DROP"
    unknown = Table.parse("-P FORWARD ACCEPT\n-A FORWARD -m physdev --physdev-in v1 -j DROP\n")
    assert verdict(unknown, "FORWARD", Packet(A, B, "bra", "bra")).action == "unknown"


def test_counters_that_rose_name_the_rule():
    before = ("Chain INPUT (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in out source "
              "destination\n       0        0 DROP       1    --  *      *       0.0.0.0/0            0.0.0.0/0\n")
    after = before.replace("       0        0 DROP", "       2      168 DROP")
    hits = blocking_hits(before, after, "-P INPUT ACCEPT\n-A INPUT -p icmp -j DROP\n")
    assert [(h.chain, h.rule) for h in hits] == [("INPUT", "-A INPUT -p icmp -j DROP")]
    assert blocking_hits(before, before, "-A INPUT -p icmp -j DROP\n") == []


def test_stale_conntrack_entry_is_found():
    ct = ("udp      17 29 src=10.61.0.2 dst=198.51.100.1 sport=40000 dport=5353 [UNREPLIED] src=198.51.100.1 "
          "dst=10.61.0.2 sport=5353 dport=40000 mark=0 use=1\n"
          "udp      17 29 src=10.61.0.2 dst=198.51.100.1 sport=40001 dport=5353 [UNREPLIED] src=198.51.100.1 "
          "dst=198.51.100.2 sport=5353 dport=40001 mark=0 use=1\n")
    view = View({None: NsView(None, {}, [], [], {})}, conntrack=ct)
    found = Checker(view).stale_conntrack(A, B, "udp", 5353)
    assert found is not None and found[1] == 40000
    assert Checker(view).stale_conntrack(A, B, "udp", 53) is None
    assert Checker(View({None: NsView(None, {}, [], [], {})}, conntrack=ct.splitlines()[1])).stale_conntrack(
        A, B, "udp", 5353) is None  # NATed: not stale


@pytest.mark.parametrize("dst,rule", [
    ("2001:db8::1", "IPv4 paths only"), ("224.0.0.1", "a unicast address"), ("255.255.255.255", "a unicast address"),
    ("0.0.0.0", "a unicast address"), ("127.0.0.1", "a unicast address"), ("127.9.9.9", "a unicast address"),
])
def test_a_destination_no_ipv4_path_leads_to_is_a_usage_error(dst, rule, capsys):
    with pytest.raises(ValidationError) as e:
        check_args("a1", dst, None, False)
    assert e.value.field == "destination" and rule in str(e.value)
    assert cli.main(["diagnose", "a1", dst]) == 2  # before the privilege check: no root needed to be told
    err = capsys.readouterr().err
    assert rule in err and dst in err


def test_a_namespace_the_file_lacks_is_a_usage_error(capsys):
    from bridgenet.config import load
    from bridgenet.diagnose_args import check_network

    net = load(EXAMPLES / "services.toml")
    names = [n.name for n in net.namespaces]
    check_network(net, names[0], "host")  # fine
    check_network(net, "host", "198.51.100.1")  # an address needs no namespace of the file
    with pytest.raises(ValidationError) as e:
        check_network(net, "ghost", names[0])
    assert e.value.field == "source" and "-f" in str(e.value) and names[0] in str(e.value)
    with pytest.raises(ValidationError) as e:
        check_network(net, names[0], "ghost")
    assert e.value.field == "destination"
    assert cli.main(["diagnose", "ghost", names[0], "-f", str(EXAMPLES / "services.toml")]) == 2
    assert "ghost" in capsys.readouterr().err
