"""Fast tier: IPv6 dual stack (issue 12) without privilege.

Golden transcripts of ``examples/dualstack.toml`` (up, up --batch, down);
IPv6 commands (nodad, no brd, routes without -6, ip6tables); validation
errors naming the field and the rule; the state file round trip of IPv6
effects; live state parsing (link-local and tentative addresses, IPv6
routes of ``route show table all``); planning reads nothing more for an
IPv4-only network; leftovers in ip6tables; the accept_ra advice.
"""

from __future__ import annotations

import os
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path

import pytest

from bridgenet import config
from bridgenet.batch import plan as batch_plan
from bridgenet.cli import main
from bridgenet.commands import (
    AddrPresent, RoutePresent, RulePresent, command_from_dict, command_to_dict,
)
from bridgenet.effects import inverse, satisfied
from bridgenet.errors import ValidationError
from bridgenet.leftovers import chain_commands, tagged_commands
from bridgenet.model import Address, NatRule, Route, VethPair
from bridgenet.plan import wanted_reads
from bridgenet.state import EMPTY_NS, LiveState, NsState, parse_links, parse_routes6
from bridgenet.sysctls import ACCEPT_RA_ADVICE
from bridgenet.topology import BridgeSpec, End, Interface, LinkSpec, Node, topology
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
DUAL = ROOT / "examples" / "dualstack.toml"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"




@pytest.mark.parametrize("argv, golden", [
    (["up", "--dry-run"], "dualstack-up.txt"),
    (["up", "--dry-run", "--batch"], "dualstack-up-batch.txt"),
    (["down", "--dry-run"], "dualstack-down.txt"),
])
def test_dualstack_dry_run_matches_golden(capsys, argv, golden):
    code = main([*argv, "-f", str(DUAL)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    check_golden(golden, out)


def test_dualstack_transcript_says_what_the_file_says():
    up = (GOLDEN / "dualstack-up.txt").read_text().splitlines()
    for line in (
        "ip netns exec web ip addr add fd00:30::10/64 dev eth0 nodad",
        "ip netns exec v6only ip addr add fd00:30::30/64 dev eth0 nodad",
        "ip addr add fd00:30::1/64 dev br6 nodad",  # no brd for IPv6
        "ip netns exec v6only ip route add default via fd00:30::1",  # no -6: ip takes the family from the address
        "ip netns exec web ip route add 2001:db8:5::/64 via fd00:30::20",
        "ip netns exec db sysctl -w net.ipv6.conf.all.forwarding=1",
        "sysctl -w net.ipv6.conf.all.forwarding=1",
        "ip6tables -N BRIDGENET-FORWARD",
        "ip6tables -A BRIDGENET-FORWARD -i br6 -m comment --comment bridgenet:dual -j ACCEPT",
        "ip6tables -t nat -A POSTROUTING -s fd00:30::/64 '!' -o br6 -m comment --comment bridgenet:dual -j MASQUERADE",
    ):
        assert line in up, line
    assert not any(line.startswith("ip netns exec v6only ip route add default via 10.") for line in up)
    batch = (GOLDEN / "dualstack-up-batch.txt").read_text()
    assert "ip6tables-restore --noflush -w" in batch
    down = (GOLDEN / "dualstack-down.txt").read_text().splitlines()
    assert "sysctl -w net.ipv6.conf.all.forwarding=0" in down
    assert "ip6tables -X BRIDGENET-FORWARD" in down


def test_batch_plan_puts_ip6tables_in_one_restore():
    invs = batch_plan(config.load(DUAL).up_commands(fast=True))
    kinds = [i.kind for i in invs]
    assert kinds.count("ip6tables") == 1 and kinds.count("iptables") == 1
    (six,) = [i for i in invs if i.kind == "ip6tables"]
    assert six.argv == ("ip6tables-restore", "--noflush", "-w")
    assert six.input.startswith("*filter\n-N BRIDGENET-FORWARD\n") and "*nat\n" in six.input


def test_the_accept_ra_advice_comes_with_ipv6_forwarding_in_the_host():
    assert ACCEPT_RA_ADVICE in config.load(DUAL).advice
    four = topology("four", bridges=[BridgeSpec("br4", "10.4.0.1/24")], containers=[Node("x", address="10.4.0.2")])
    assert ACCEPT_RA_ADVICE not in four.advice
    off = topology("off", bridges=[BridgeSpec("br5", address6="fd00:5::1/64")], containers=[Node("y", address6="fd00:5::2")],
                   forward=False)
    assert ACCEPT_RA_ADVICE not in off.advice


def test_an_ipv4_only_network_reads_nothing_more():
    four = topology("four", bridges=[BridgeSpec("br4", "10.4.0.1/24")], containers=[Node("x", address="10.4.0.2")])
    assert not four.has_ipv6 and "v6" not in wanted_reads(four) and "rules6" not in wanted_reads(four)
    dual = config.load(DUAL)
    reads = wanted_reads(dual)
    assert dual.has_ipv6 and reads["v6"] and ("nat", "POSTROUTING", None) in reads["rules6"]


def test_masquerade6_defaults_to_ula_only():
    glob = topology("g", bridges=[BridgeSpec("brg", address6="2001:db8:7::1/64")],
                    containers=[Node("g1", address6="2001:db8:7::10")])
    assert not glob.of_type(NatRule)
    forced = topology("f", bridges=[BridgeSpec("brf", address6="2001:db8:8::1/64", masquerade6=True)],
                      containers=[Node("f1", address6="2001:db8:8::10")])
    assert [n.family for n in forced.of_type(NatRule)] == [6]


def test_links_and_interfaces_take_address6():
    net = topology("l6", bridges=[BridgeSpec("brl", address6="fd00:9::1/64")],
                   containers=[Node("r", forward=True, interfaces=[Interface("brl", address6="fd00:9::2")])],
                   links=[LinkSpec((End("r", "to-s", address6="fd00:99::1/64"), End("s", "to-r", address6="fd00:99::2/64")))])
    cmds = [str(c) for c in net.up_commands()]
    assert "ip netns exec r ip addr add fd00:9::2/64 dev eth0 nodad" in cmds
    assert "ip netns exec s ip addr add fd00:99::2/64 dev to-r nodad" in cmds
    assert "ip netns exec r ip addr add fd00:99::1/64 dev to-s nodad" in cmds
    assert "ip netns exec r sysctl -w net.ipv6.conf.all.forwarding=1" in cmds


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize("make, field, rule", [
    (lambda: VethPair("vx1", "px1", netns="n", address="fd00::2/64"), "address", "IPv6 address is given where an IPv4"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="10.0.0.2/24"), "address6", "IPv4 address is given where an IPv6"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="fe80::2/64"), "address6", "not link-local"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="ff02::2/64"), "address6", "not a multicast"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="fd00::2/0"), "address6", "prefix length of 1-128"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="fd00::2"), "address6", "needs its prefix length"),
    (lambda: Address("br0", "fd00::/64"), "address", "subnet-router anycast"),
    (lambda: Route("n", "fd00::1", "10.9.0.0/16"), "dst", "of one family"),
    (lambda: Route("n", "fe80::1"), "via", "not link-local"),
    (lambda: VethPair("vx1", "px1", netns="n", address6="fd00::2%eth0/64"), "address6", "no scope id"),
    (lambda: Address("br0", "fd00::1%br0/64"), "address", "no scope id"),
    (lambda: Route("n", "fd00::1%eth0"), "via", "no scope id"),
])
def test_model_refuses_bad_ipv6(make, field, rule):
    with pytest.raises(ValidationError) as e:
        make()
    assert e.value.field == field and rule in e.value.rule, e.value


def _bad(**kw):
    bridges = kw.pop("bridges", [BridgeSpec("br6", "10.6.0.1/24", address6="fd00:6::1/64")])
    return lambda: topology("bad", bridges=bridges, **kw)


@pytest.mark.parametrize("make, field, rule", [
    (_bad(bridges=[BridgeSpec("br6", address6="fd00:6::1")], containers=[Node("a", address6="fd00:6::2")]),
     "address6", "needs its prefix length"),
    (_bad(bridges=[BridgeSpec("br6", address6="10.6.0.1/24")], containers=[Node("a", address6="fd00:6::2")]),
     "address6", "address takes the IPv4 one"),
    (_bad(bridges=[BridgeSpec("br6", address6="fd00:6::1/127")], containers=[Node("a", address6="fd00:6::2")]),
     "address6", "prefix length of 1-126"),
    (_bad(bridges=[BridgeSpec("br6", "10.6.0.1/24")], containers=[Node("a", address="10.6.0.2", address6="fd00:6::2")]),
     "address6", "needs its prefix length"),
    (_bad(containers=[Node("a", address6="fd00:7::2")]), "address6", "in its bridge's IPv6 subnet"),
    (_bad(containers=[Node("a", address6="fd00:6::1")]), "address6", "not the gateway"),
    (_bad(containers=[Node("a", address6="fd00:6::2"), Node("b", address6="fd00:6::2")]), "address6", "already used"),
    (_bad(bridges=[BridgeSpec("br6", address6="fd00:6::1/64")], containers=[Node("a")]),
     "address6", "at least one of its subnets"),
    (_bad(bridges=[BridgeSpec("b1", address6="fd00:6::1/64"), BridgeSpec("b2", address6="fd00:6:0:0:1::1/80")],
          containers=[Node("a", bridge="b1", address6="fd00:6::2")]), "address6", "IPv6 subnets do not overlap"),
    (_bad(bridges=[BridgeSpec("br6", masquerade6=True)], containers=[Node("a", address6="fd00:6::2/64")]),
     "masquerade6", "needs the bridge's address6"),
    (_bad(containers=[Node("a", address6="fd00:6::2", default_route6="10.6.0.1")]), "default_route6", "IPv6 address"),
    (_bad(containers=[Node("a", address="10.6.0.2", routes=[__import__("bridgenet.topology").topology.RouteSpec(
        "fd00:40::/64", "fd00:7::9")])]), "via", "on-link subnet"),
    # scope ids (RFC 4007 '%zone', which ipaddress accepts) were printed into ip addr/route and ip6tables
    (_bad(containers=[Node("a", address6="fd00:6::2%eth0")]), "address6", "no scope id"),
    (_bad(bridges=[BridgeSpec("br6", address6="fd00:6::1%br6/64")], containers=[Node("a", address6="fd00:6::2")]),
     "address6", "no scope id"),
    (_bad(containers=[Node("a", address6="fd00:6::2", default_route6="fd00:6::1%eth0")]), "via", "no scope id"),
    (_bad(containers=[Node("a", address6="fd00:6::2", routes=[__import__("bridgenet.topology").topology.RouteSpec(
        "fd00:40::/64", "fd00:6::1%eth0")])]), "via", "no scope id"),
    (_bad(containers=[Node("a", address6="fd00:6::2", routes=[__import__("bridgenet.topology").topology.RouteSpec(
        "fd00:40::%eth0/64", "fd00:6::1")])]), "routes", "no scope id"),
    (_bad(containers=[Node("a", address6="fd00:6::2", ports=["[fd00:6::1%br6]:8080:80"])]), "ports[0]", "no scope id"),
])
def test_topology_refuses_bad_ipv6(make, field, rule):
    with pytest.raises(ValidationError) as e:
        make()
    assert e.value.field == field and rule in e.value.rule, e.value


def test_an_ipv6_only_container_is_allowed_on_a_dual_stack_bridge():
    net = topology("ok", bridges=[BridgeSpec("br6", "10.6.0.1/24", address6="fd00:6::1/64")],
                   containers=[Node("a", address6="fd00:6::2")])
    routes = [str(c) for c in net.up_commands() if c.args[:2] == ("route", "add")]
    assert routes == ["ip netns exec a ip route add default via fd00:6::1"]


@pytest.mark.parametrize("bridge, node, field", [
    (BridgeSpec("br6", "10.6.0.1/24"), Node("a", address6="fd00:6::2/64"), "address6"),  # was cut off: no gateway
    (BridgeSpec("br6", address6="fd00:6::1/64"), Node("a", address="10.6.0.2/24", default_route=False), "address"),
])
def test_a_container_has_an_address_in_one_of_its_bridges_families(bridge, node, field):
    with pytest.raises(ValidationError) as e:
        topology("cut", bridges=[bridge], containers=[node])
    assert (e.value.obj, e.value.field) == ("Container a", field)
    assert "at least one of the bridge's families" in e.value.rule and "br6" in e.value.rule


def test_file_keys_are_checked():
    with pytest.raises(ValidationError) as e:
        config.from_dict({"name": "x", "bridges": [{"name": "b", "address6": 6}], "containers": [{"netns": "a"}]})
    assert e.value.field == "address6"


# --- state file, live state, effects ---------------------------------------------------------


def test_ipv6_effects_round_trip_through_the_state_file():
    net = config.load(DUAL)
    for c in net.up_commands():
        back = command_from_dict(command_to_dict(c))
        assert back == c and back.effect == c.effect, c


LINKS = [{"ifindex": 2, "ifname": "eth0", "flags": ["UP"], "mtu": 1500, "addr_info": [
    {"family": "inet", "local": "10.30.0.10", "prefixlen": 24, "broadcast": "10.30.0.255"},
    {"family": "inet6", "local": "fd00:30::10", "prefixlen": 64, "scope": "global", "nodad": True},
    {"family": "inet6", "local": "fd00:30::99", "prefixlen": 64, "scope": "global", "tentative": True},
    {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link", "tentative": True}]}]
ROUTES_ALL = [
    {"dst": "default", "gateway": "10.30.0.1", "dev": "eth0", "flags": []},
    {"type": "local", "dst": "10.30.0.10", "dev": "eth0", "table": "local"},
    {"dst": "fe80::/64", "dev": "eth0", "protocol": "kernel", "metric": 256, "pref": "medium"},
    {"dst": "default", "gateway": "fd00:30::1", "dev": "eth0", "table": "main", "metric": 1024, "pref": "medium"},
    {"type": "local", "dst": "fd00:30::10", "dev": "eth0", "table": "local", "pref": "medium"}]


def test_live_state_keeps_link_local_out_and_tentative_in():
    link = parse_links(LINKS)["eth0"]
    assert [str(a) for a in link.addresses] == ["10.30.0.10/24"]
    assert [str(a) for a in link.addresses6] == ["fd00:30::10/64", "fd00:30::99/64"]
    assert [(r.dst, r.gateway) for r in parse_routes6(ROUTES_ALL)] == [("fe80::/64", None), ("default", "fd00:30::1")]


def _state(ns: NsState | None = None, **kw) -> LiveState:
    return LiveState(ns or EMPTY_NS, {}, frozenset(), frozenset(), {}, {}, **kw)


def test_effects_compare_each_family_with_its_own_state():
    host = NsState(parse_links(LINKS), (), parse_routes6(ROUTES_ALL))
    st = _state(host)
    assert satisfied(AddrPresent("eth0", IPv6Interface("fd00:30::10/64")), st)
    assert not satisfied(AddrPresent("eth0", IPv6Interface("fd00:30::11/64")), st)
    assert satisfied(RoutePresent("default", IPv6Address("fd00:30::1")), st)
    rule = ("-s", "fd00:30::/64", "-j", "MASQUERADE")
    six = _state(rules6={("nat", "POSTROUTING", None): [rule]})
    assert satisfied(RulePresent("nat", "POSTROUTING", rule, None, 6), six)
    assert not satisfied(RulePresent("nat", "POSTROUTING", rule), six)  # not in iptables' own
    (undo,) = inverse(NatRule("fd00:30::/64").steps(config.load(DUAL).context())[0].up[0], six)
    assert undo.tool == "ip6tables" and undo.effect.family == 6


def test_clean_finds_tagged_rules_and_chains_in_ip6tables():
    tagged = ("-s", "fd00:30::/64", "-m", "comment", "--comment", "bridgenet:dual", "-j", "MASQUERADE")
    st = _state(rules6={("nat", "POSTROUTING", None): [tagged], ("filter", "BRIDGENET-FORWARD", None): [],
                        ("filter", "FORWARD", None): [("-j", "BRIDGENET-FORWARD")]},
                chains6={("filter", None): frozenset({"FORWARD", "BRIDGENET-FORWARD"})})
    assert [str(c) for c in tagged_commands(st)] == [
        "ip6tables -t nat -D POSTROUTING -s fd00:30::/64 -m comment --comment bridgenet:dual -j MASQUERADE"]
    assert [str(c) for c in chain_commands(st)] == ["ip6tables -D FORWARD -j BRIDGENET-FORWARD",
                                                     "ip6tables -X BRIDGENET-FORWARD"]


def test_legacy_ip6tables_tables_are_warned_about_for_ipv6_networks_only():
    from bridgenet.hostcheck import READS, reads_for, warnings

    dual = config.load(DUAL)
    four = topology("four", bridges=[BridgeSpec("br4", "10.4.0.1/24")], containers=[Node("x", address="10.4.0.2")])
    assert reads_for(four) == READS and len(reads_for(dual)) == len(READS) + 1
    line = "# Warning: ip6tables-legacy tables present, use ip6tables-legacy to see them"
    got = warnings(dual, None, [(0, ""), (1, ""), (0, "1"), (0, line + "\n-P FORWARD ACCEPT\n")])
    assert any("both ip6tables-legacy and ip6tables-nft" in w and "ip6tables-legacy -S" in w for w in got), got


def test_a_live_ipv6_address_in_the_way_is_a_conflict_and_link_local_is_not():
    from bridgenet.conflicts import check_conflicts
    from bridgenet.errors import ConflictError

    dual = config.load(DUAL)
    other = [{"ifindex": 5, "ifname": "wlan0", "flags": ["UP"], "mtu": 1500, "addr_info": [
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
        {"family": "inet6", "local": "fd00:30::1", "prefixlen": 64, "scope": "global", "tentative": True}]}]
    with pytest.raises(ConflictError, match="fd00:30::1"):
        check_conflicts(dual, _state(NsState(parse_links(other), ())))
    other[0]["addr_info"].pop()  # only the kernel's link-local address left: no conflict
    check_conflicts(dual, _state(NsState(parse_links(other), (), parse_routes6(ROUTES_ALL[2:3]))))
    overlapping = [{"dst": "fd00:30::/48", "dev": "wlan0", "pref": "medium"}]
    with pytest.raises(ConflictError, match="overlaps"):
        check_conflicts(dual, _state(NsState(parse_links(other), (), parse_routes6(overlapping))))


def _dual(*nodes, bridges=None):
    return topology("t", bridges=bridges or [BridgeSpec("tb0", "10.50.0.1/24", address6="fd00:50::1/64")],
                    containers=list(nodes))


@pytest.mark.parametrize("node, field, rule, value", [
    # was "Route default via fd00:50::1: ... on-link subnet" / "objects: appears twice"
    (Node("web", "10.50.0.10", default_route="fd00:50::1"), "default_route",
     "default_route is an IPv4 address (default_route6 takes the IPv6 one)", "fd00:50::1"),
    # was "an IPv6 address is an IPv6 address with a prefix length ... (got '10.50.0.10/64')"
    (Node("web", "10.50.0.10", address6="10.50.0.11"), "address6",
     "address6 is an IPv6 address (address takes the IPv4 one)", "10.50.0.11"),
    (Node("web", "fd00:50::10"), "address", "address is an IPv4 address (address6 takes the IPv6 one)",
     "fd00:50::10"),
    (Node("web", "10.50.0.10", address6=""), "address6", "address6 is an IPv6 address, as in", ""),
    (Node("web", "10.50.0.10", address6="fd00:50::10%eth0"), "address6", "no scope id", "fd00:50::10%eth0"),
])
def test_messages_name_the_key_and_show_the_value_as_written(node, field, rule, value):
    with pytest.raises(ValidationError) as e:
        _dual(node)
    assert (e.value.obj, e.value.field, e.value.value) == ("Container web", field, value)
    assert rule in e.value.rule, e.value


def test_an_overlap_through_a_containers_address6_names_the_container():
    # was "BridgeSpec tb1: address6: ...": tb1 has no address6, the container's made its subnet
    with pytest.raises(ValidationError) as e:
        _dual(Node("web", bridge="tb1", address6="fd00:50::77/64"),
              bridges=[BridgeSpec("tb0", "10.50.0.1/24", address6="fd00:50::1/64"), BridgeSpec("tb1")])
    assert (e.value.obj, e.value.field, e.value.value) == ("Container web", "address6", "fd00:50::77/64")
    assert "tb1" in e.value.rule and "tb0" in e.value.rule


@pytest.mark.parametrize("node, says", [
    (Node("web", "10.50.0.10", address6="fd00:50::10", ports=["[::1]:8080:80"]), "IPv6 loopback"),
    (Node("web", address6="fd00:50::10", ports=["10.50.0.1:8080:80"]), "has no IPv4 address"),
])
def test_port_messages_say_what_the_container_lacks(node, says):
    with pytest.raises(ValidationError) as e:
        _dual(node)
    assert e.value.field == "ports[0]" and says in e.value.rule and "not give yet" not in e.value.rule
