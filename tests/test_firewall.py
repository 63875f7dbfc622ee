"""Fast tier: bridgenet's own FORWARD chains, isolation, their planning, and the host warnings."""

import pytest

import bridgenet
from bridgenet import Container, bridge_network, config
from bridgenet.cli import main
from bridgenet.commands import ChainAbsent, ChainPresent, command_from_dict, command_to_dict
from bridgenet.errors import ValidationError
from bridgenet.firewall import FORWARD_CHAIN, ISOLATION_CHAIN, FilterChain, Isolation
from bridgenet.hostcheck import blocks, forward_warnings, stp_warning
from bridgenet.leftovers import chain_commands, tagged_commands
from bridgenet.model import ForwardRule
from bridgenet.network import Network, with_accept_forward
from bridgenet.effects import inverse, satisfied
from bridgenet.plan import wanted_reads
from bridgenet.state import EMPTY_NS, LiveState, parse_chains, parse_links

LESSON = [c.shell() for c in bridgenet.tutorial().up_commands()]


def shop(**kw):
    return bridge_network("shop", [Container("web", "10.88.0.10")], bridge="br1", gateway="10.88.0.1/24", **kw)


def iptables_lines(net):
    return [c.shell() for c in net.up_commands() if c.tool == "iptables"]


def test_a_tagged_network_puts_its_rules_in_our_chain_jumped_to_from_the_top():
    assert iptables_lines(shop()) == [
        f"iptables -N {FORWARD_CHAIN}",
        f"iptables -I FORWARD -j {FORWARD_CHAIN}",
        f"iptables -N {ISOLATION_CHAIN}",
        f"iptables -A {ISOLATION_CHAIN} -o br1 -m comment --comment bridgenet:shop -j DROP",
        f"iptables -I {FORWARD_CHAIN} -i br1 '!' -o br1 -m comment --comment bridgenet:shop -j {ISOLATION_CHAIN}",
        f"iptables -A {FORWARD_CHAIN} -i br1 -m comment --comment bridgenet:shop -j ACCEPT",
        f"iptables -A {FORWARD_CHAIN} -o br1 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment bridgenet:shop -j ACCEPT",
        "iptables -t nat -A POSTROUTING -s 10.88.0.0/24 '!' -o br1 -m comment --comment bridgenet:shop -j MASQUERADE",
    ]
    downs = [c.shell() for c in shop().down_commands() if c.tool == "iptables"]
    assert downs[-5:] == [
        f"iptables -D {FORWARD_CHAIN} -i br1 '!' -o br1 -m comment --comment bridgenet:shop -j {ISOLATION_CHAIN}",
        f"iptables -D {ISOLATION_CHAIN} -o br1 -m comment --comment bridgenet:shop -j DROP",
        f"iptables -X {ISOLATION_CHAIN}",
        f"iptables -D FORWARD -j {FORWARD_CHAIN}",
        f"iptables -X {FORWARD_CHAIN}",
    ]


def test_chain_steps_are_shared_steps():
    keys = [s.key for s in shop().steps()]
    assert f"chain {FORWARD_CHAIN}@host" in keys and f"chain {ISOLATION_CHAIN}@host" in keys
    assert keys.index(f"chain {FORWARD_CHAIN}@host") < keys.index("isolate br1@host") < keys.index("forward br1@host")


def test_isolate_and_accept_forward_switches():
    assert not any("ISOLATION" in line for line in iptables_lines(shop(isolate=False)))
    only_iso = iptables_lines(shop(accept_forward=False))
    assert not any("ACCEPT" in line for line in only_iso) and any("ISOLATION" in line for line in only_iso)
    assert iptables_lines(shop(isolate=False, accept_forward=False, masquerade=False)) == []
    untagged = iptables_lines(shop(tag=False, accept_forward=True))
    assert f"iptables -A {FORWARD_CHAIN} -i br1 -j ACCEPT" in untagged
    assert not any("ISOLATION" in line for line in untagged)  # default isolate = tag
    with pytest.raises(ValidationError, match="isolate"):
        shop(isolate="yes")


def test_a_network_made_by_hand_gets_the_chain_its_forward_rule_needs():
    base = list(shop(accept_forward=False, isolate=False).objects)
    net = Network("hand", [*base, ForwardRule("br1")], tag=False)
    assert [type(o).__name__ for o in net.ordered[-3:]] == ["NatRule", "FilterChain", "ForwardRule"]
    twice = Network("hand", [*base, FilterChain(FORWARD_CHAIN, "FORWARD"), ForwardRule("br1")], tag=False)
    assert len(twice.of_type(FilterChain)) == 1
    with pytest.raises(ValidationError, match="bridge"):
        Network("hand", [*base, Isolation("nope0")])


def test_the_lesson_is_unchanged_and_accept_forward_adds_four_commands_at_the_end():
    assert len(LESSON) == 23 and not any("FORWARD" in line for line in LESSON)
    lines = [c.shell() for c in with_accept_forward(bridgenet.tutorial()).up_commands()]
    assert lines[:23] == LESSON
    assert lines[23:] == [f"iptables -N {FORWARD_CHAIN}", f"iptables -I FORWARD -j {FORWARD_CHAIN}",
                          f"iptables -A {FORWARD_CHAIN} -i br0 -j ACCEPT", f"iptables -A {FORWARD_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    assert with_accept_forward(shop()) == shop()  # has its rule already


def test_cli_accept_forward_dry_run(capsys):
    assert main(["up", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == LESSON
    assert main(["up", "--dry-run", "--accept-forward"]) == 0
    assert capsys.readouterr().out.splitlines()[23:][-1] == f"iptables -A {FORWARD_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    assert main(["down", "--dry-run", "--accept-forward"]) == 0
    assert capsys.readouterr().out.splitlines()[:4] == [
        f"iptables -D {FORWARD_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", f"iptables -D {FORWARD_CHAIN} -i br0 -j ACCEPT",
        f"iptables -D FORWARD -j {FORWARD_CHAIN}", f"iptables -X {FORWARD_CHAIN}"]
    assert main(["up", "--dry-run", "--batch", "--accept-forward"]) == 0
    assert f"-N {FORWARD_CHAIN}\n-I FORWARD -j {FORWARD_CHAIN}\n" in capsys.readouterr().out


def test_network_file_isolate_key():
    data = {"name": "c", "containers": [{"netns": "c1", "address": "10.63.0.2"}], "gateway": "10.63.0.1/24"}
    assert any("ISOLATION" in line for line in iptables_lines(config.from_dict(dict(data))))
    assert not any("ISOLATION" in line for line in iptables_lines(config.from_dict({**data, "isolate": False})))
    with pytest.raises(ValidationError, match="isolate"):
        config.from_dict({**data, "isolate": "no"})


def test_chain_effects_round_trip_and_plan():
    for c in shop().up_commands() + shop().down_commands():
        assert command_from_dict(command_to_dict(c)) == c
        assert command_from_dict(command_to_dict(c)).effect == c.effect
    unknown = LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {})
    known = LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {}, {("filter", None): frozenset({"FORWARD"})})
    present = ChainPresent("filter", FORWARD_CHAIN)
    absent = ChainAbsent("filter", FORWARD_CHAIN)
    assert not satisfied(present, unknown) and not satisfied(absent, unknown)  # not read: run it
    assert not satisfied(present, known) and satisfied(absent, known)
    make = next(c for c in shop().up_commands() if c.effect == present)
    assert [c.shell() for c in inverse(make, known)] == [f"iptables -X {FORWARD_CHAIN}"]
    reads = wanted_reads(shop())["rules"]
    assert {("filter", "FORWARD", None), ("filter", FORWARD_CHAIN, None), ("filter", ISOLATION_CHAIN, None)} <= set(reads)


def test_parse_chains_and_bridge_stp():
    text = "-P INPUT ACCEPT\n-P FORWARD DROP\n-N BRIDGENET-FORWARD\n-A FORWARD -j BRIDGENET-FORWARD\n"
    assert parse_chains(text) == {"INPUT", "FORWARD", "BRIDGENET-FORWARD"}
    links = parse_links([
        {"ifname": "br1", "ifindex": 3, "linkinfo": {"info_kind": "bridge",
                                                     "info_data": {"stp_state": 1, "forward_delay": 1500}}},
        {"ifname": "v", "ifindex": 4, "linkinfo": {"info_kind": "veth", "info_data": {"stp_state": 1}}},
    ])
    assert (links["br1"].stp_state, links["br1"].forward_delay) == (1, 1500)
    assert (links["v"].stp_state, links["v"].forward_delay) == (None, None)
    text = stp_warning(links["br1"])
    assert "forward_delay 15 s" in text and "= 30 s" in text


@pytest.mark.parametrize("rule, hits", [
    ("-j REJECT --reject-with icmp-port-unreachable", True),
    ("-j DROP", True),
    ("-o br1 -j DROP", True),
    ("-i br+ -j DROP", True),
    ("! -i eth9 -j DROP", True),
    ("-p tcp --dport 25 -j REJECT --reject-with tcp-reset", True),
    ("-i eth9 -j DROP", False),
    ("-o docker0 -j DROP", False),
    ("-m conntrack --ctstate INVALID -j DROP", False),
    ("-j ACCEPT", False),
    ("-j DOCKER-USER", False),
])
def test_which_forward_rules_count_as_dropping_ours(rule, hits):
    assert blocks(rule.split(), ["br1"]) is hits


def test_forward_warnings():
    lesson = bridgenet.tutorial()
    drop = ["-P FORWARD DROP"]
    (w,) = forward_warnings(lesson, drop, True)
    assert "FORWARD policy here is DROP" in w and "bridgenet up --accept-forward" in w
    assert "br_netfilter is on" in w and "between the containers on br0 is dropped too" in w
    assert "where br_netfilter is on" in forward_warnings(lesson, drop, False)[0]
    reject = ["-P FORWARD ACCEPT", "-A FORWARD -j REJECT --reject-with icmp-port-unreachable"]
    (w,) = forward_warnings(lesson, reject, True)
    assert "`-A FORWARD -j REJECT --reject-with icmp-port-unreachable`" in w
    # a network with its own rules: policy DROP and a REJECT after our jump are no matter
    ours = ["-P FORWARD DROP", f"-A FORWARD -j {FORWARD_CHAIN}", "-A FORWARD -j REJECT"]
    assert forward_warnings(shop(), ours, True) == []
    assert forward_warnings(shop(), ["-A FORWARD -j REJECT"], True) == []  # the jump goes in at the top
    (w,) = forward_warnings(shop(), ["-A FORWARD -j DROP", f"-A FORWARD -j {FORWARD_CHAIN}"], True)
    assert "`-A FORWARD -j DROP` before bridgenet's jump" in w


def _state(rules, chains):
    return LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, rules, {("filter", None): frozenset(chains)})


def test_clean_removes_tagged_rules_then_the_empty_chains():
    tag = ("-m", "comment", "--comment", "bridgenet:a")
    rules = {
        ("filter", "FORWARD", None): [("-j", FORWARD_CHAIN)],
        ("filter", FORWARD_CHAIN, None): [("-i", "bra", "!", "-o", "bra", *tag, "-j", ISOLATION_CHAIN),
                                          ("-i", "bra", *tag, "-j", "ACCEPT")],
        ("filter", ISOLATION_CHAIN, None): [("-o", "bra", *tag, "-j", "DROP")],
    }
    st = _state(rules, {"FORWARD", FORWARD_CHAIN, ISOLATION_CHAIN})
    assert [c.shell() for c in tagged_commands(st)] == [
        f"iptables -t filter -D {FORWARD_CHAIN} -i bra '!' -o bra -m comment --comment bridgenet:a -j {ISOLATION_CHAIN}",
        f"iptables -t filter -D {FORWARD_CHAIN} -i bra -m comment --comment bridgenet:a -j ACCEPT",
        f"iptables -t filter -D {ISOLATION_CHAIN} -o bra -m comment --comment bridgenet:a -j DROP",
    ]
    assert [c.shell() for c in chain_commands(st)] == [
        f"iptables -X {ISOLATION_CHAIN}", f"iptables -D FORWARD -j {FORWARD_CHAIN}", f"iptables -X {FORWARD_CHAIN}"]
    rules[("filter", FORWARD_CHAIN, None)].append(("-i", "br0", "-j", "ACCEPT"))  # untagged: the lesson's
    assert [c.shell() for c in chain_commands(_state(rules, {FORWARD_CHAIN, ISOLATION_CHAIN}))] == [
        f"iptables -X {ISOLATION_CHAIN}"]


@pytest.mark.parametrize("chain, jump_from, field", [
    (None, 5, "chain"), ("FORWARD", "FORWARD", "chain"), ("INPUT", None, "chain"), ("X -j DROP", "FORWARD", "chain"),
    ("", None, "chain"), ("a" * 29, None, "chain"), ("OK", "nosuch", "jump_from"), ("OK", 5, "jump_from"),
])
def test_filter_chain_fields_are_checked(chain, jump_from, field):
    from bridgenet.errors import ValidationError
    from bridgenet.firewall import FilterChain

    with pytest.raises(ValidationError) as ei:
        FilterChain(chain, jump_from)
    assert ei.value.field == field
