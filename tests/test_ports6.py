"""Fast tier: published ports over IPv6 (issue 12, "IPv6 host addresses in brackets").

``examples/ports6.toml``: a dual-stack bridge br6p; ``web`` (both families)
publishes ``8080:80`` (both families) and ``[2001:db8::2]:8443:443`` (IPv6
only); ``v6only`` publishes ``8081:80`` (IPv6 only).
"""

from __future__ import annotations

import os
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from bridgenet import config, leftovers
from bridgenet.cli import main
from bridgenet.errors import ConflictError, ValidationError
from bridgenet.plan import wanted_reads
from bridgenet.ports import DNAT_CHAIN, DnatChain, PortMapping, PublishedPort, check_port_conflicts, parse_port
from bridgenet.state import EMPTY_NS, LiveState
from bridgenet.topology import BridgeSpec, Node, topology
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ports6.toml"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"
TAG = "-m comment --comment bridgenet:shop6"




def shop(web=("8080:80",), *, v4=True, v6=True, db=()):
    kw = {"address": "10.31.0.10" if v4 else None, "address6": "fd00:31::10" if v6 else None}
    return topology("shop6", bridges=[BridgeSpec("br6p", "10.31.0.1/24", address6="fd00:31::1/64")],
                    containers=[Node("web", ports=web, **kw),
                                Node("db", "10.31.0.20", address6="fd00:31::20", ports=db)])


def lines(net):
    return [c.shell() for c in net.up_commands()]


def test_bracketed_ipv6_and_the_any_addresses_parse():
    assert parse_port("[2001:db8::2]:8080:80").family == 6
    assert parse_port("[::]:8080:80").every and parse_port("[::]:8080:80").family == 6
    assert parse_port("8080:80").family is None
    assert parse_port("8080:80").families([4, 6]) == [4, 6]
    assert parse_port("8080:80").families([6]) == [6]
    assert parse_port("10.0.0.1:8080:80").families([6]) == []
    assert parse_port("0.0.0.0:8080:80").families([4, 6]) == [4] and parse_port("0.0.0.0:8080:80").every


def test_the_rules_exactly():
    got = lines(config.load(EXAMPLE))
    for want in (
        f"ip6tables -t nat -N {DNAT_CHAIN}",
        f"ip6tables -t nat -I PREROUTING -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"ip6tables -t nat -I OUTPUT -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"iptables -t nat -A {DNAT_CHAIN} -p tcp -m tcp --dport 8080 {TAG} -j DNAT --to-destination 10.31.0.10:80",
        f"ip6tables -t nat -A {DNAT_CHAIN} -p tcp -m tcp --dport 8080 {TAG} -j DNAT "
        "--to-destination '[fd00:31::10]:80'",
        f"ip6tables -A BRIDGENET-FORWARD -d fd00:31::10/128 '!' -i br6p -o br6p -p tcp -m tcp --dport 80 {TAG} "
        "-j ACCEPT",
        f"ip6tables -t nat -A POSTROUTING -s fd00:31::10/128 -d fd00:31::10/128 -p tcp -m tcp --dport 80 {TAG} "
        "-j MASQUERADE",
        f"ip6tables -t nat -A {DNAT_CHAIN} -d 2001:db8::2/128 -p tcp -m tcp --dport 8443 {TAG} -j DNAT "
        "--to-destination '[fd00:31::10]:443'",
        f"ip6tables -t nat -A {DNAT_CHAIN} -p tcp -m tcp --dport 8081 {TAG} -j DNAT "
        "--to-destination '[fd00:31::30]:80'",
        "bridge link set dev v-web hairpin on",
        "bridge link set dev v-v6only hairpin on",
    ):
        assert want in got, want
    assert not any("8443" in line for line in got if line.startswith("iptables "))  # IPv6 host address: v6 only
    assert not any("8081" in line for line in got if line.startswith("iptables "))  # an IPv6-only container
    assert got.count("bridge link set dev v-web hairpin on") == 1  # per container, whatever the families


def test_the_dnat_rule_is_what_ip6tables_prints_back():
    """ip6tables -S prints ``--to-destination [fd00:30::10]:80`` (measured, iptables 1.8.9): converge compares it."""
    p = PublishedPort("web", "fd00:30::10", "br6", parse_port("8080:80"))
    (_, chain, rule), *_ = p.rules()
    assert (chain, rule[-2:]) == (DNAT_CHAIN, ("--to-destination", "[fd00:30::10]:80"))
    assert p.family == 6 and p.step_key == "publish tcp *:8080@host ip6"


def test_the_shared_chain_has_its_own_key_per_family():
    assert DnatChain().step_key == "chain nat BRIDGENET-DNAT@host"
    assert DnatChain(family=6).step_key == "chain nat BRIDGENET-DNAT@host ip6"


def test_an_ipv4_only_container_publishes_ipv4_only():
    got = lines(shop(v6=False))
    assert not any(DNAT_CHAIN in line for line in got if line.startswith("ip6tables"))
    assert any("--to-destination 10.31.0.10:80" in line for line in got)


@pytest.mark.parametrize("web, v4, v6, words", [
    (("8080:80", "[2001:db8::2]:8080:80"), True, False, "address6"),
    (("8080:80", "198.51.100.2:8080:80"), False, True, "IPv6-only"),
])
def test_a_host_address_of_a_family_the_container_lacks_is_refused(web, v4, v6, words):
    with pytest.raises(ValidationError) as ei:
        shop(web, v4=v4, v6=v6)
    assert (ei.value.obj, ei.value.field, ei.value.value) == ("Container web", "ports[1]", web[1])
    assert words in ei.value.rule


def test_the_ipv6_loopback_is_refused():
    with pytest.raises(ValidationError) as ei:
        shop(("[::1]:8080:80",))
    assert ei.value.field == "ports[0]" and "route_localnet" in ei.value.rule and "[::1]" in ei.value.rule


@pytest.mark.parametrize("web, db, refused", [
    (("8080:80",), ("[2001:db8::2]:8080:80",), True),  # web's 8080 is on every IPv6 address too
    (("[::]:8080:80",), ("[2001:db8::2]:8080:80",), True),
    (("[::]:8080:80",), ("10.31.0.1:8080:80",), False),  # IPv6 any and an IPv4 address
    (("[2001:db8::2]:8080:80",), ("0.0.0.0:8080:80",), False),  # 0.0.0.0: every IPv4 address (Docker's)
    (("0.0.0.0:8080:80",), ("10.31.0.1:8080:80",), True),
    (("[2001:db8::2]:8080:80",), ("[2001:db8::3]:8080:80",), False),
])
def test_overlaps_within_a_network_consider_the_family(web, db, refused):
    if refused:
        with pytest.raises(ValidationError) as ei:
            shop(web, db=db)
        assert "each host port is published once" in ei.value.rule
    else:
        shop(web, db=db)


def live(rules4=(), rules6=()):
    return LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {("nat", DNAT_CHAIN, None): list(rules4)},
                     rules6={("nat", DNAT_CHAIN, None): list(rules6)})


def other(spec, to="[fd00:99::10]:80"):
    return (*spec, "-m", "comment", "--comment", "bridgenet:other", "-j", "DNAT", "--to-destination", to)


ANY = ("-p", "tcp", "-m", "tcp", "--dport", "8080")


def test_ipv4_any_and_ipv6_any_do_not_conflict():
    v6 = shop(("[::]:8080:80",))
    check_port_conflicts(v6.ordered, v6.tag_text, live(rules4=[other(ANY, "10.99.0.10:80")]))
    v4 = shop(("8080:80",), v6=False)
    check_port_conflicts(v4.ordered, v4.tag_text, live(rules6=[other(ANY)]))


@pytest.mark.parametrize("web, spec", [
    (("8080:80",), ANY),
    (("[::]:8080:80",), ("-d", "2001:db8::2/128", *ANY)),
    (("[2001:db8::2]:8080:80",), ANY),
    (("[2001:db8::2]:8080:80",), ("-d", "2001:db8::2/128", *ANY)),
])
def test_an_ipv6_binding_another_network_holds_is_a_conflict(web, spec):
    net = shop(web)
    with pytest.raises(ConflictError) as ei:
        check_port_conflicts(net.ordered, net.tag_text, live(rules6=[other(spec)]))
    assert "bridgenet network other" in str(ei.value) and "ip6tables" in str(ei.value)


def test_an_other_ipv6_address_is_no_conflict():
    net = shop(("[2001:db8::2]:8080:80",))
    check_port_conflicts(net.ordered, net.tag_text, live(rules6=[other(("-d", "2001:db8::3/128", *ANY))]))


def test_planning_reads_the_ip6tables_dnat_chain():
    reads = wanted_reads(config.load(EXAMPLE))
    assert ("nat", DNAT_CHAIN, None) in reads["rules6"] and ("nat", DNAT_CHAIN, None) in reads["rules"]
    assert ("nat", "OUTPUT", None) in reads["rules6"]


def test_clean_removes_tagged_ip6tables_dnat_rules_and_the_empty_chain():
    jump = ("-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT_CHAIN)
    tagged = other(ANY)
    state = LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {},
                      rules6={("nat", DNAT_CHAIN, None): [tagged], ("nat", "PREROUTING", None): [jump],
                              ("nat", "OUTPUT", None): [jump]},
                      chains6={("nat", None): frozenset({DNAT_CHAIN}), ("filter", None): frozenset()})
    got = [c.shell() for c in leftovers.tagged_commands(state) + leftovers.chain_commands(state)]
    assert got == [
        f"ip6tables -t nat -D {DNAT_CHAIN} -p tcp -m tcp --dport 8080 -m comment --comment bridgenet:other -j DNAT "
        "--to-destination '[fd00:99::10]:80'",
        f"ip6tables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"ip6tables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"ip6tables -t nat -X {DNAT_CHAIN}",
    ]


def test_an_address_is_an_ipv6address():
    assert PortMapping(1, 2, "tcp", IPv6Address("::")).every


@pytest.mark.parametrize("argv, golden", [
    (["up", "--dry-run"], "ports6-up.txt"),
    (["up", "--dry-run", "--batch"], "ports6-up-batch.txt"),
    (["down", "--dry-run"], "ports6-down.txt"),
])
def test_ports6_dry_run_matches_golden(capsys, argv, golden):
    assert main([*argv, "-f", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    check_golden(golden, out)
