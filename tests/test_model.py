"""Fast tier: objects, validation rules, network assembly (no privilege, nothing runs)."""

from ipaddress import IPv4Address, IPv4Interface

import pytest

import bridgenet
from bridgenet import (
    Address,
    Bridge,
    Container,
    Namespace,
    NatRule,
    Network,
    Route,
    Sysctl,
    ValidationError,
    VethPair,
    bridge_network,
)


def rule_of(excinfo) -> tuple[str, str, str]:
    e = excinfo.value
    return e.obj, e.field, e.rule


# --- interface names -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "not empty"),
        ("a" * 16, "at most 15 bytes"),
        ("é" * 8, "at most 15 bytes"),  # 16 bytes in UTF-8
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("br/0", "no '/'"),
        ("br:0", "no ':'"),
        ("br 0", "no whitespace"),
        ("br\t0", "no whitespace"),
        ("br\x010", "printable"),
        ("br#0", "'#'"),
        ("br'0", "quote"),
        ("br%d", "'%'"),
        ("lo", "loopback"),
        ("all", "conf/all"),
        ("default", "conf/default"),
        ("type", "ip-link keyword"),
        ("m", "ip-link keyword"),  # ip link add m type bridge: m reads as a keyword (measured)
        ("addr", "'address'"),
        ("up", "'up'"),
    ],
)
def test_bad_interface_names_are_rejected_naming_field_and_rule(name, words):
    with pytest.raises(ValidationError) as ei:
        Bridge(name)
    obj, field, rule = rule_of(ei)
    assert obj.startswith("Bridge")
    assert field == "name"
    assert words in rule


def test_fifteen_bytes_is_the_limit():
    assert Bridge("a" * 15).name == "a" * 15
    assert Bridge("é" * 7 + "x").name  # 15 bytes


def test_veth_error_names_the_peer_field():
    with pytest.raises(ValidationError) as ei:
        VethPair("brid4", "veth4-is-much-too-long", netns="container4")
    assert ei.value.field == "peer"
    assert "15 bytes" in ei.value.rule
    assert "VethPair brid4" in str(ei.value)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "-n", "x\x7f", "a#b"])
def test_bad_netns_names(name):
    with pytest.raises(ValidationError) as ei:
        Namespace(name)
    assert ei.value.field == "name"


def test_netns_name_may_be_long_but_not_over_name_max():
    Namespace("n" * 255)
    with pytest.raises(ValidationError, match="255 bytes"):
        Namespace("n" * 256)


# --- addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "addr, words",
    [
        ("10.201.0.4", "prefix length"),
        ("10.201.0.400/24", "IPv4 address with a prefix length"),
        ("127.0.0.2/8", "loopback"),
        ("224.0.0.1/24", "multicast"),
        ("0.0.0.1/24", "0.0.0.0/8"),
        ("250.0.0.1/24", "reserved"),
    ],
)
def test_bad_addresses(addr, words):
    with pytest.raises(ValidationError) as ei:
        VethPair("brid4", "veth4", address=addr)
    assert ei.value.field == "address"
    assert words in ei.value.rule


def test_address_converts_text():
    v = VethPair("brid4", "veth4", address="10.201.0.4/24")
    assert v.address == IPv4Interface("10.201.0.4/24")
    assert Route("c", "10.201.0.1").via == IPv4Address("10.201.0.1")


def test_gateway_must_not_be_network_or_broadcast():
    with pytest.raises(ValidationError, match="network address"):
        Address("br0", "10.201.0.0/24")
    with pytest.raises(ValidationError, match="broadcast"):
        Address("br0", "10.201.0.255/24")


def test_sysctl_keys_are_per_netns_only():
    with pytest.raises(ValidationError) as ei:
        Sysctl("kernel.panic", "1")
    assert ei.value.field == "key"
    assert "net.ipv4" in ei.value.rule
    assert Sysctl("net.ipv4.ip_forward", 1).value == "1"


def test_nat_source_must_be_a_subnet():
    with pytest.raises(ValidationError) as ei:
        NatRule("10.201.0.4/24")
    assert ei.value.field == "source"


def test_objects_are_frozen():
    b = Bridge("br0")
    with pytest.raises(AttributeError):
        b.name = "br1"  # type: ignore[misc]


# --- network-level rules ------------------------------------------------------------


def net(*objs, name="t"):
    return Network(name, objs)


def test_address_must_lie_in_its_bridges_subnet():
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), Namespace("c4"), VethPair("brid4", "veth4", "c4", "br0", "10.9.0.4/24"),
            Address("br0", "10.201.0.1/24"))
    assert ei.value.field == "address"
    assert "bridge's subnet" in ei.value.rule
    assert "10.201.0.0/24" in ei.value.rule


def test_address_must_not_be_the_gateway():
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), Namespace("c4"), VethPair("brid4", "veth4", "c4", "br0", "10.201.0.1/24"),
            Address("br0", "10.201.0.1/24"))
    assert "already used" in ei.value.rule or "gateway" in ei.value.rule


@pytest.mark.parametrize("addr, which", [("10.201.0.0/24", "network"), ("10.201.0.255/24", "broadcast")])
def test_address_must_not_be_network_or_broadcast(addr, which):
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), Namespace("c4"), VethPair("brid4", "veth4", "c4", "br0", addr))
    assert which in ei.value.rule


def test_duplicate_addresses_are_caught():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("c4", "10.201.0.4"), Container("c5", "10.201.0.4")])
    assert "already used by VethPair v-c4" in ei.value.rule


def test_duplicate_interface_names_are_caught():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("c4", "10.201.0.4", veth="hx"), Container("c5", "10.201.0.5", veth="hx")])
    assert ei.value.field == "objects"
    assert "appears twice" in ei.value.rule


def test_duplicate_created_by_deriving_names_is_caught():
    # both derive the host end "v-" + the netns name cut to 15 bytes
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("averyverylongname1", "10.201.0.4"),
                             Container("averyverylongname2", "10.201.0.5")])
    assert "v-averyverylong" in str(ei.value)
    # and a derived name that equals a name given by hand
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("c4", "10.201.0.4"), Container("c5", "10.201.0.5", veth="v-c4")])
    assert "v-c4" in str(ei.value)


def test_peer_must_not_clash_with_a_host_link_when_moved():
    objs = (Bridge("br0"), Namespace("c4"), VethPair("brid4", "br0", "c4", "br0"))
    with pytest.raises(ValidationError) as ei:
        Network("t", objs, move_peers=True)
    assert ei.value.field == "peer"
    assert "created in the host first" in ei.value.rule
    Network("t", objs)  # created in its namespace at once: no clash


def test_percent_in_names_is_rejected():
    with pytest.raises(ValidationError, match="%d"):
        Bridge("br%d")


def test_two_default_routes_in_one_namespace_are_rejected():
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), Namespace("c4"), VethPair("brid4", "veth4", "c4", "br0", "10.201.0.4/24"),
            Address("br0", "10.201.0.1/24"), Route("c4", "10.201.0.1"), Route("c4", "10.201.0.2"))
    assert ei.value.field == "dst"


def test_prefix_length_mismatch_is_named():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("c4", "10.88.0.10/16")], gateway="10.88.0.1/24")
    assert "prefix length" in ei.value.rule and "/24" in ei.value.rule


def test_derived_names_that_collide_name_the_veth_field():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("averyverylongns1", "10.201.0.4"), Container("averyverylongns2", "10.201.0.5")])
    assert ei.value.field == "veth"
    assert "give one of them its own veth name" in ei.value.rule


def test_ip_forward_value_is_0_or_1():
    with pytest.raises(ValidationError) as ei:
        Sysctl("net.ipv4.ip_forward", "1 2")
    assert ei.value.field == "value"


def test_peers_may_share_a_name_in_different_namespaces():
    n = bridge_network("t", [Container("c4", "10.201.0.4"), Container("c5", "10.201.0.5")])
    assert [v.peer for v in n.veths] == ["eth0", "eth0"]


def test_route_gateway_must_be_on_link():
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), Namespace("c4"), VethPair("brid4", "veth4", "c4", "br0", "10.201.0.4/24"),
            Address("br0", "10.201.0.1/24"), Route("c4", "10.9.9.1"))
    assert ei.value.field == "via"
    assert "on-link" in ei.value.rule


def test_references_must_exist():
    with pytest.raises(ValidationError) as ei:
        net(Bridge("br0"), VethPair("brid4", "veth4", "nowhere", "br0"))
    assert ei.value.field == "netns"
    with pytest.raises(ValidationError) as ei:
        net(Namespace("c4"), VethPair("brid4", "veth4", "c4", "br9"))
    assert ei.value.field == "master"


def test_network_name_rule():
    with pytest.raises(ValidationError) as ei:
        Network("bad name", [Bridge("br0")])
    assert ei.value.field == "name"


def test_objects_are_ordered_by_dependency():
    n = net(Route("c4", "10.201.0.1"), VethPair("brid4", "veth4", "c4", "br0", "10.201.0.4/24"),
            Address("br0", "10.201.0.1/24"), Namespace("c4"), Bridge("br0"))
    kinds = [type(o).__name__ for o in n.ordered]
    assert kinds.index("Namespace") < kinds.index("VethPair") < kinds.index("Route")
    assert kinds.index("Bridge") < kinds.index("VethPair")
    assert kinds.index("Bridge") < kinds.index("Address")


def test_tagged_network_tags_links_and_rules():
    n = bridge_network("demo", [Container("c4", "10.88.0.4")], gateway="10.88.0.1/24")
    lines = [c.shell() for c in n.up_commands()]
    assert "ip link set dev br0 alias bridgenet:demo" in lines
    assert "ip link set dev v-c4 alias bridgenet:demo" in lines
    assert ("iptables -t nat -A POSTROUTING -s 10.88.0.0/24 '!' -o br0 -m comment --comment bridgenet:demo "
            "-j MASQUERADE") in lines
    assert "iptables -A BRIDGENET-FORWARD -i br0 -m comment --comment bridgenet:demo -j ACCEPT" in lines
    assert ("iptables -I BRIDGENET-FORWARD -i br0 '!' -o br0 -m comment --comment bridgenet:demo "
            "-j BRIDGENET-ISOLATION") in lines


def test_lesson_nat_and_forward_rule_switches():
    n = bridge_network("demo", [Container("c4", "10.88.0.4")], gateway="10.88.0.1/24", tag=False,
                       lesson_form=True)
    lines = [c.shell() for c in n.up_commands()]
    assert lines[-1] == "iptables -t nat -A POSTROUTING -s 10.88.0.0/24 -j MASQUERADE"
    assert not any("FORWARD" in line for line in lines)
    n = bridge_network("demo", [Container("c4", "10.88.0.4")], gateway="10.88.0.1/24", tag=False,
                       accept_forward=True)
    assert "iptables -A BRIDGENET-FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in [c.shell() for c in n.up_commands()]


def test_fast_form_creates_peer_in_place():
    lines = [c.shell() for c in bridgenet.tutorial().up_commands(fast=True)]
    assert "ip link add brid4 type veth peer name veth4 netns container4" in lines
    assert not any("set veth4 netns" in line for line in lines)


def test_commands_are_argv_tuples():
    c = bridgenet.tutorial().up_commands()[5]
    assert c.argv == ("ip", "netns", "exec", "container4", "ip", "addr", "add", "10.201.0.4/24", "dev", "veth4")
    assert c.netns == "container4"
    assert c.step == "addr veth4@container4"
