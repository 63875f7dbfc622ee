"""Fast tier: published ports (issue 12): the parser, the checks, the commands, conflicts, goldens."""

from __future__ import annotations

import os
import tomllib
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from bridgenet import config
from bridgenet.cli import main
from bridgenet.errors import ConflictError, ValidationError
from bridgenet.network import Network
from bridgenet.ports import DNAT_CHAIN, LOOPBACK6_REFUSED, PortMapping, PublishedPort, check_port_conflicts, parse_port
from bridgenet.shape import Container, bridge_network
from bridgenet.state import EMPTY_NS, LiveState
from bridgenet.topology import BridgeSpec, Interface, Node, topology
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ports.toml"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"




@pytest.mark.parametrize("text, want", [
    ("8080:80", PortMapping(8080, 80, "tcp", None, "8080:80")),
    ("127.0.0.1:8081:80", PortMapping(8081, 80, "tcp", IPv4Address("127.0.0.1"), "127.0.0.1:8081:80")),
    ("5353:53/udp", PortMapping(5353, 53, "udp", None, "5353:53/udp")),
    ("8080:80/tcp", PortMapping(8080, 80, "tcp", None, "8080:80/tcp")),
    ("0.0.0.0:8080:80", PortMapping(8080, 80, "tcp", IPv4Address("0.0.0.0"), "0.0.0.0:8080:80")),
    ("[::]:8082:80", PortMapping(8082, 80, "tcp", IPv6Address("::"), "[::]:8082:80")),
    ("[2001:db8::2]:8080:80/udp", PortMapping(8080, 80, "udp", IPv6Address("2001:db8::2"), "[2001:db8::2]:8080:80/udp")),
    ("1:65535", PortMapping(1, 65535, "tcp", None, "1:65535")),
])
def test_parse_docker_syntax(text, want):
    got = parse_port(text)
    assert got == want
    assert got.family == (None if want.host_ip is None else want.host_ip.version)


@pytest.mark.parametrize("text, rule", [
    ("80", "HOST_PORT:CONTAINER_PORT"),
    ("0:80", "1-65535"),
    ("8080:65536", "1-65535"),
    ("8080:80/sctp", "tcp (the default) or udp"),
    ("8080:80/TCP", "tcp (the default) or udp"),
    ("::1:8082:80", "in brackets"),
    ("[10.0.0.1]:80:80", "only an IPv6 host address goes in brackets"),
    ("host:80:80", "HOST_IP is an IPv4 address"),
    ("8080-8090:80", "not a range"),
    ("224.0.0.1:80:80", "unicast"),
    ("255.255.255.255:80:80", "limited broadcast"),  # was accepted
    ("a:b", "1-65535"),
    ("8080:\u00b2", "ASCII digits"),  # '²'.isdigit() is true, int('²') fails: was a traceback
    ("\uff18\uff10\uff18\uff10:80", "ASCII digits"),  # full-width 8080: was taken as 8080
    ("8080:\u0668\u0660", "ASCII digits"),  # Arabic-Indic 80
    (8080, "text"),
    ("", "HOST_PORT:CONTAINER_PORT"),
])
def test_parse_refuses_bad_entries(text, rule):
    with pytest.raises(ValidationError) as ei:
        parse_port(text, "Container web", "ports[1]")
    assert ei.value.field == "ports[1]" and ei.value.obj == "Container web"
    assert rule in ei.value.rule


def shop(ports=("8080:80",), db_ports=()):
    return topology("shop", bridges=[BridgeSpec("br1", "10.88.0.1/24")],
                    containers=[Node("web", "10.88.0.10", ports=ports), Node("db", "10.88.0.20", ports=db_ports)])


def test_a_bad_entry_names_the_container_and_the_index():
    with pytest.raises(ValidationError) as ei:
        shop(("8080:80", "8081:0"))
    assert (ei.value.obj, ei.value.field) == ("Container web", "ports[1]")
    assert "1-65535" in ei.value.rule


def test_a_bad_entry_in_a_file_names_the_key(tmp_path):
    text = EXAMPLE.read_text().replace('"5353:53/udp"', '"5353:53/icmp"')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValidationError) as ei:
        config.load(path)
    assert ei.value.field == "ports[2]" and "web" in ei.value.obj and str(path) in ei.value.obj
    assert main(["up", "--dry-run", "-f", str(path)]) == 2


def test_the_ipv6_loopback_is_refused_with_its_reason():
    with pytest.raises(ValidationError) as ei:
        shop(("8080:80", "[::1]:8082:80"))
    assert (ei.value.obj, ei.value.field, ei.value.rule) == ("Container web", "ports[1]", LOOPBACK6_REFUSED)
    assert "route_localnet" in ei.value.rule


def test_an_ipv6_host_address_needs_the_containers_address6():
    with pytest.raises(ValidationError) as ei:
        shop(("8080:80", "[2001:db8::2]:8082:80"))
    assert (ei.value.obj, ei.value.field) == ("Container web", "ports[1]")
    assert "address6" in ei.value.rule and ei.value.value == "[2001:db8::2]:8082:80"


@pytest.mark.parametrize("web, db", [
    (("8080:80", "8080:81"), ()),
    (("8080:80",), ("8080:80",)),
    (("8080:80",), ("127.0.0.1:8080:80",)),  # every address vs one of them
    (("198.51.100.2:8080:80",), ("0.0.0.0:8080:80",)),
])
def test_the_same_host_port_twice_in_a_network_is_refused(web, db):
    with pytest.raises(ValidationError) as ei:
        shop(web, db)
    assert "each host port is published once" in ei.value.rule


@pytest.mark.parametrize("web, db", [
    (("8080:80", "8080:80/udp"), ()),
    (("127.0.0.1:8080:80",), ("198.51.100.2:8080:80",)),
    (("8080:80",), ("8081:80",)),
])
def test_other_protocols_and_other_addresses_are_no_overlap(web, db):
    shop(web, db)


def test_a_port_on_a_bridge_without_the_hosts_address_is_refused():
    # was: the rules installed, the host with no route to 10.66.0.10 (the connection timed out)
    with pytest.raises(ValidationError) as ei:
        topology("cut", bridges=[BridgeSpec("tb0")],
                 containers=[Node("web", "10.66.0.10/24", default_route=False, ports=["7070:80"])])
    assert (ei.value.obj, ei.value.field, ei.value.value) == ("Container web", "ports[0]", "7070:80")
    assert "bridge to have the host's address in the port's family" in ei.value.rule and "tb0 has no address" \
        in ei.value.rule


def test_a_dual_stack_container_publishes_on_the_family_its_bridge_routes():
    net = topology("half", bridges=[BridgeSpec("tb0", "10.66.0.1/24")],
                   containers=[Node("web", "10.66.0.10", address6="fd00:66::10/64", ports=["7070:80"])])
    assert [p.family for p in net.of_type(PublishedPort)] == [4]
    with pytest.raises(ValidationError, match="tb0 has no address6"):
        topology("half", bridges=[BridgeSpec("tb0", "10.66.0.1/24")],
                 containers=[Node("web", "10.66.0.10", address6="fd00:66::10/64", ports=["[::]:7070:80"])])


@pytest.mark.parametrize("host", ["10.88.0.10", "10.88.0.20"])
def test_a_host_address_that_is_a_containers_is_refused(host):
    with pytest.raises(ValidationError) as ei:
        shop((f"{host}:8080:80",))
    assert (ei.value.obj, ei.value.field) == ("Container web", "ports[0]")
    assert "not of a container" in ei.value.rule and host in ei.value.rule


def test_a_container_without_an_address_cannot_publish():
    with pytest.raises(ValidationError) as ei:
        topology("x", bridges=[BridgeSpec("sw0")],
                 containers=[Node("a", default_route=False, ports=["8080:80"],
                                  interfaces=[Interface("sw0")])])
    assert (ei.value.obj, ei.value.field) == ("Container a", "ports[0]") and "address" in ei.value.rule


def test_ports_go_to_the_first_interface_with_an_address():
    net = topology("x", bridges=[BridgeSpec("sw0"), BridgeSpec("lan0", "10.10.0.1/24")],
                   containers=[Node("a", ports=["8080:80"], interfaces=[
                       Interface("sw0"), Interface("lan0", "10.10.0.10")])])
    lines = [c.shell() for c in net.up_commands()]
    assert any("--to-destination 10.10.0.10:80" in line for line in lines)
    assert "bridge link set dev v-a-1 hairpin on" in lines


def test_ports_is_a_list():
    with pytest.raises(ValidationError) as ei:
        Node("web", "10.88.0.10", ports="8080:80")
    assert ei.value.field == "ports"
    with pytest.raises(ValidationError):
        Container("web", "10.88.0.10", ports="8080:80")


def test_the_python_model_builds_what_the_file_builds():
    from_file = config.load(EXAMPLE)
    ports = ["8080:80", "127.0.0.1:8081:80", "5353:53/udp"]
    # a file with ports is read by topology() (names on, README "Names"); the one-bridge shape takes ports too
    shape = topology("shop", bridges=[BridgeSpec("br1", "10.88.0.1/24")],
                     containers=[Node("web", "10.88.0.10", ports=ports), Node("db", "10.88.0.20")])
    assert shape == from_file
    plain = bridge_network("shop", [Container("web", "10.88.0.10", ports=ports), Container("db", "10.88.0.20")],
                           bridge="br1", gateway="10.88.0.1/24")
    assert plain == topology("shop", bridges=[BridgeSpec("br1", "10.88.0.1/24")], names=False,
                             containers=[Node("web", "10.88.0.10", ports=ports), Node("db", "10.88.0.20")])
    assert [c.argv for c in shape.up_commands()] == [c.argv for c in from_file.up_commands()]


def test_the_rules_exactly():
    lines = [c.shell() for c in config.load(EXAMPLE).up_commands()]
    tag = "-m comment --comment bridgenet:shop"
    for want in (
        f"iptables -t nat -N {DNAT_CHAIN}",
        f"iptables -t nat -I PREROUTING -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"iptables -t nat -I OUTPUT -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}",
        f"iptables -t nat -A {DNAT_CHAIN} -p tcp -m tcp --dport 8080 {tag} -j DNAT --to-destination 10.88.0.10:80",
        f"iptables -A BRIDGENET-FORWARD -d 10.88.0.10/32 '!' -i br1 -o br1 -p tcp -m tcp --dport 80 {tag} -j ACCEPT",
        f"iptables -t nat -A POSTROUTING -s 10.88.0.10/32 -d 10.88.0.10/32 -p tcp -m tcp --dport 80 {tag} "
        "-j MASQUERADE",
        f"iptables -t nat -A {DNAT_CHAIN} -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -m addrtype --src-type LOCAL "
        f"{tag} -j DNAT --to-destination 10.88.0.10:80",
        f"iptables -t nat -A {DNAT_CHAIN} -p udp -m udp --dport 5353 {tag} -j DNAT --to-destination 10.88.0.10:53",
        "bridge link set dev v-web hairpin on",
        "sysctl -w net.ipv4.conf.br1.route_localnet=1",
        f"iptables -t nat -A POSTROUTING -s 127.0.0.0/8 -o br1 {tag} -j MASQUERADE",
        "iptables -A BRIDGENET-INPUT '!' -s 127.0.0.0/8 -d 127.0.0.0/8 -i br1 -m conntrack '!' --ctstate "
        f"RELATED,ESTABLISHED,DNAT {tag} -j DROP",
    ):
        assert want in lines
    assert lines.count("bridge link set dev v-web hairpin on") == 1  # one per container, not per port


def test_no_route_localnet_without_a_loopback_publish():
    lines = [c.shell() for c in shop(("8080:80",)).up_commands()]
    assert not any("route_localnet" in line or "BRIDGENET-INPUT" in line for line in lines)


def test_a_network_without_ports_renders_as_before():
    net = shop(())
    assert not any(DNAT_CHAIN in c.shell() or "hairpin" in c.shell() for c in net.up_commands())


@pytest.mark.parametrize("argv, golden", [
    (["up", "--dry-run"], "ports-up.txt"),
    (["up", "--dry-run", "--batch"], "ports-up-batch.txt"),
    (["down", "--dry-run"], "ports-down.txt"),
])
def test_ports_dry_run_matches_golden(capsys, argv, golden):
    assert main([*argv, "-f", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    check_golden(golden, out)


def live(rules):
    return LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {("nat", DNAT_CHAIN, None): rules})


def other_rule(spec, tag="bridgenet:other"):
    return (*spec, "-m", "comment", "--comment", tag, "-j", "DNAT", "--to-destination", "10.89.0.10:80")


@pytest.mark.parametrize("spec", [
    ("-p", "tcp", "-m", "tcp", "--dport", "8080"),
    ("-d", "198.51.100.2/32", "-p", "tcp", "-m", "tcp", "--dport", "8080"),
])
def test_a_host_port_another_network_takes_is_a_conflict(spec):
    net = shop(("8080:80",))
    with pytest.raises(ConflictError) as ei:
        check_port_conflicts(net.ordered, net.tag_text, live([other_rule(spec)]))
    assert "bridgenet network other" in str(ei.value) and "tcp *:8080" in str(ei.value)


@pytest.mark.parametrize("spec", [
    ("-p", "udp", "-m", "udp", "--dport", "8080"),
    ("-d", "198.51.100.2/32", "-p", "tcp", "-m", "tcp", "--dport", "8081"),
])
def test_other_bindings_are_no_conflict(spec):
    net = shop(("127.0.0.1:8080:80",))
    check_port_conflicts(net.ordered, net.tag_text, live([other_rule(spec)]))


def test_the_networks_own_rules_are_no_conflict():
    net = shop(("8080:80",))
    own = [r for o in net.ordered if hasattr(o, "rules") and type(o).__name__ == "PublishedPort"
           for t, c, r in o.rules(net.tag_text) if c == DNAT_CHAIN]
    check_port_conflicts(net.ordered, net.tag_text, live(own))
    stale = other_rule(("-p", "tcp", "-m", "tcp", "--dport", "8080"), tag="bridgenet:shop")
    check_port_conflicts(net.ordered, net.tag_text, live([stale]))  # an older file of its own: replaced


def test_the_lesson_network_is_unchanged_by_the_ports_code():
    from bridgenet.tutorial import tutorial

    assert isinstance(tutorial(), Network)
    assert not any("hairpin" in c.shell() or DNAT_CHAIN in c.shell() for c in tutorial().up_commands())


def test_a_port_file_is_toml():
    assert tomllib.loads(EXAMPLE.read_text())["containers"][0]["ports"][2] == "5353:53/udp"


def without_pictures(text: str) -> str:
    """``text`` without the tutorial's diagrams (a blank line, "The network so far", ..., the legend)."""
    out, skipping = [], False
    for line in text.split("\n"):
        if line == "   The network so far (bridgenet graph):":
            skipping = True
            out.pop()  # the blank line before it
            continue
        if skipping:
            skipping = not line.startswith("   ─ PORT ─┤")
            continue
        out.append(line)
    return "\n".join(out)


def test_plain_tutorial_dry_run_is_unchanged(capsys):
    """tutorial-dry-run.txt was printed by the code before published ports (commit 24fa9b4), never rewritten;
    the diagrams (issue 13) come on top: tutorial-dry-run-pictures.txt."""
    assert main(["tutorial", "--dry-run"]) == 0
    out = capsys.readouterr().out
    check_golden("tutorial-dry-run-pictures.txt", out)
    assert out.count("The network so far") == 3
    assert without_pictures(out) == (GOLDEN / "tutorial-dry-run.txt").read_text()


def test_tutorial_publish_dry_run_prints_the_exact_rules(capsys):
    assert main(["tutorial", "--dry-run", "--publish"]) == 0
    out = capsys.readouterr().out
    check_golden("tutorial-publish-dry-run.txt", out)
    assert "   $ iptables -t nat -A BRIDGENET-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.201.0.5:80" \
        in out.splitlines()
    plain = (GOLDEN / "tutorial-dry-run.txt").read_text()
    head = plain.split("\nTake the network down:")[0]
    assert without_pictures(out).startswith(head)  # the lesson's part, word for word


def test_the_shared_chains_come_from_the_objects_needing_them():
    """The network puts each chain a published port needs before it (needed_chains), as for ForwardRule:
    untagged (no ForwardRule), BRIDGENET-FORWARD comes once for the published flow; a 127.x publish needs
    only BRIDGENET-DNAT and BRIDGENET-INPUT (it has no filter rule)."""
    def chains(ports):
        net = bridge_network("shop", [Container("web", "10.88.0.10", ports=ports)], bridge="br1",
                             gateway="10.88.0.1/24", tag=False)
        return [c.shell() for c in net.up_commands() if c.args[:1] in (("-N",), ("-t",)) and "-N" in c.args]
    assert chains(["8080:80", "8081:80"]) == ["iptables -t nat -N BRIDGENET-DNAT", "iptables -N BRIDGENET-FORWARD"]
    assert chains(["127.0.0.1:8081:80"]) == ["iptables -t nat -N BRIDGENET-DNAT", "iptables -N BRIDGENET-INPUT"]
