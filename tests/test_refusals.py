"""Fast tier: what issue 9 says is "refused before any change", and the lesson's reserved name."""

from ipaddress import IPv4Address, IPv4Interface

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bridgenet
from bridgenet import (
    Address,
    Bridge,
    Container,
    ForwardRule,
    Namespace,
    NatRule,
    Network,
    Route,
    Sysctl,
    ValidationError,
    VethPair,
    bridge_network,
    config,
)
from bridgenet.rules import BR_MAX_PORTS, MAX_BRIDGE_PORTS


def containers(n, prefix="c"):
    return [Container(f"{prefix}{i}", str(IPv4Address(int(IPv4Address("10.50.0.2")) + i))) for i in range(n)]


# --- 1. ports per bridge ------------------------------------------------------------


def test_the_kernel_limit_is_1023_ports():
    assert BR_MAX_PORTS == 1024 and MAX_BRIDGE_PORTS == 1023


def test_bridge_network_refuses_more_ports_than_a_bridge_takes():
    bridge_network("big", containers(1023), gateway="10.50.0.1/16")  # the most the kernel takes
    with pytest.raises(ValidationError) as ei:
        bridge_network("big", containers(1024), gateway="10.50.0.1/16")
    e = ei.value
    assert e.field == "containers" and e.value == 1024
    assert "at most 1023 ports" in e.rule and "BR_MAX_PORTS" in e.rule and "br_private.h" in e.rule


def test_network_refuses_more_ports_than_a_bridge_takes():
    objs = [Bridge("br0"), Address("br0", "10.50.0.1/16")]
    for i in range(1024):
        objs += [Namespace(f"c{i}"), VethPair(f"h{i}", "eth0", f"c{i}", "br0")]
    with pytest.raises(ValidationError) as ei:
        Network("big", objs)
    assert ei.value.obj == "Bridge br0" and ei.value.field == "ports"
    assert "at most 1023 ports (br0 would have 1024)" in ei.value.rule and "Exchange full" in ei.value.rule
    # 1024 veths over two bridges are fine
    objs2 = [*objs, Bridge("br1")]
    objs2[-2] = VethPair("h1023", "eth0", "c1023", "br1")
    Network("big", objs2)


def test_a_file_with_too_many_containers_is_refused():
    data = {"name": "big", "gateway": "10.50.0.1/16",
            "containers": [{"netns": f"c{i}", "address": f"10.50.{i // 250}.{i % 250 + 2}"} for i in range(1024)]}
    with pytest.raises(ValidationError, match="at most 1023 ports"):
        config.from_dict(data, "network file big.toml")


# --- 2. lesson_form without forwarding ----------------------------------------------------


def test_lesson_form_without_forward_is_refused():
    with pytest.raises(ValidationError) as ei:
        bridge_network("demo", [Container("c4", "10.88.0.4")], gateway="10.88.0.1/24", lesson_form=True, forward=False)
    assert ei.value.field == "lesson_form"
    assert "br_netfilter" in ei.value.rule and "cannot reach each other" in ei.value.rule
    with pytest.raises(ValidationError, match="lesson_form = true needs forward = true"):
        config.from_dict({"name": "demo", "gateway": "10.88.0.1/24", "lesson_form": True, "forward": False,
                          "containers": [{"netns": "c4", "address": "10.88.0.4"}]})
    # without MASQUERADE nothing is rewritten, so nothing needs routing back
    bridge_network("demo", [Container("c4", "10.88.0.4")], gateway="10.88.0.1/24", lesson_form=True, forward=False,
                   masquerade=False)


# --- 3. overlapping subnets ----------------------------------------------------------------


def two_bridges(gw0, gw1, dev1="br1"):
    return [Bridge("br0"), Bridge("br1"), Address("br0", gw0), Address(dev1, gw1)]


@pytest.mark.parametrize("gw0, gw1", [("10.60.0.1/16", "10.60.7.1/24"), ("10.60.7.1/24", "10.60.0.1/16"),
                                      ("10.60.0.1/24", "10.60.0.129/25"), ("10.60.0.1/24", "10.60.0.2/24")])
def test_two_bridges_with_overlapping_subnets_are_refused(gw0, gw1):
    with pytest.raises(ValidationError) as ei:
        Network("t", two_bridges(gw0, gw1))
    assert ei.value.obj == f"Address {gw1} dev br1" and ei.value.field == "address"
    assert "overlaps" in ei.value.rule and "on br0" in ei.value.rule


def test_disjoint_subnets_and_two_addresses_on_one_link_are_fine():
    Network("t", two_bridges("10.60.0.1/24", "10.60.1.1/24"))
    Network("t", [*two_bridges("10.60.0.1/24", "10.60.1.1/24"), Address("br0", "10.60.0.2/24")])
    Network("t", two_bridges("10.60.0.1/24", "10.60.0.9/25", dev1="br0"))


# --- 4. gateways with no room --------------------------------------------------------------


def test_prefix_length_0_is_refused_for_any_address():
    for make in (lambda: Address("br0", "10.70.0.1/0"), lambda: VethPair("hx", "px", address="10.70.0.1/0")):
        with pytest.raises(ValidationError) as ei:
            make()
        assert ei.value.field == "address" and "/0" in ei.value.rule


@pytest.mark.parametrize("gw", ["10.70.0.1/0", "10.70.0.1/31", "10.70.0.1/32"])
def test_a_bridge_gateway_leaves_room_for_a_container(gw):
    with pytest.raises(ValidationError) as ei:
        bridge_network("demo", [Container("c4", "10.70.0.2")], gateway=gw)
    assert ei.value.field == "gateway"
    if not gw.endswith("/0"):
        assert "1-30" in ei.value.rule
        with pytest.raises(ValidationError, match="room for the gateway"):
            Network("t", [Bridge("br0"), Address("br0", gw)])


def test_a_30_is_the_smallest_bridge_subnet():
    n = bridge_network("demo", [Container("c4", "10.70.0.2")], gateway="10.70.0.1/30")
    assert "ip addr add 10.70.0.1/30 brd 10.70.0.3 dev br0" in [c.shell() for c in n.up_commands()]
    Network("t", [Bridge("br0"), Namespace("c"), VethPair("hx", "px", "c", address="10.71.0.1/31")])  # not a bridge


# --- 5. wrong types: always ValidationError --------------------------------------------------

BAD = [None, 0, 7, True, 1.5, [], ["a"], {}, {"a": 1}, b"br0", object()]

# (constructor, valid keyword arguments, values that ARE valid for some field)
CASES = {
    "Bridge": (Bridge, {"name": "br0"}, {}),
    "Namespace": (Namespace, {"name": "c4"}, {}),
    "VethPair": (VethPair, {"name": "brid4", "peer": "veth4", "netns": "c4", "master": "br0",
                            "address": "10.201.0.4/24"}, {"netns": [None], "master": [None], "address": [None]}),
    "Address": (Address, {"dev": "br0", "address": "10.201.0.1/24", "netns": None, "brd": True},
                {"netns": [None], "brd": [True]}),
    "Route": (Route, {"netns": "c4", "via": "10.201.0.1", "dst": "default"}, {"netns": [None]}),
    "Sysctl": (Sysctl, {"key": "net.ipv4.ip_forward", "value": "1", "default": "0", "netns": None},
               {"netns": [None], "value": [0], "default": [0]}),
    "NatRule": (NatRule, {"source": "10.201.0.0/24", "out_interface": "eth0", "not_out_interface": "br0",
                          "comment": "x", "netns": None},
                {"out_interface": [None], "not_out_interface": [None], "comment": [None], "netns": [None]}),
    "ForwardRule": (ForwardRule, {"bridge": "br0", "comment": "x", "netns": None},
                    {"comment": [None], "netns": [None]}),
    "Container": (Container, {"netns": "c4", "address": "10.201.0.4", "veth": "brid4", "peer": "veth4"},
                  {"veth": [None]}),
    "Network": (Network, {"name": "t", "objects": [Bridge("br0")], "tag": False, "move_peers": False},
                {"tag": [True, False], "move_peers": [True, False]}),
    "bridge_network": (bridge_network, {"name": "t", "containers": [Container("c4", "10.201.0.4")], "bridge": "br0",
                                        "gateway": "10.201.0.1/24", "default_routes": True, "forward": True,
                                        "masquerade": True, "tag": True, "lesson_form": False,
                                        "accept_forward": None},
                       {k: [True, False] for k in ("default_routes", "forward", "masquerade", "tag",
                                                   "lesson_form")} | {"accept_forward": [None, True, False]}),
}


def _is_allowed(value, allowed):
    return any(value is a or (type(value) is type(a) and value == a) for a in allowed)


def _shown(value):
    return "object()" if type(value) is object else repr(value)


SWEEP = [(name, field, bad) for name, (_, kwargs, ok) in CASES.items() for field in kwargs
         for bad in BAD if not _is_allowed(bad, ok.get(field, []))]


@pytest.mark.parametrize("name, field, bad", SWEEP, ids=[f"{n}.{f}={_shown(b)}" for n, f, b in SWEEP])
def test_wrong_types_raise_validation_error_naming_the_field(name, field, bad):
    make, kwargs, _ = CASES[name]
    make(**kwargs)  # the valid form builds
    with pytest.raises(ValidationError) as ei:
        make(**dict(kwargs, **{field: bad}))
    e = ei.value
    assert e.rule and e.field.split("[")[0] == field, (e.obj, e.field, e.rule)
    assert e.obj.split()[0] == name, e.obj


def test_wrong_types_the_issue_names():
    for call, field in [(lambda: bridge_network("x", None), "containers"),
                        (lambda: bridge_network("x", ["a"]), "containers[0]"),
                        (lambda: bridge_network("x", []), "containers"),
                        (lambda: bridge_network("x", "c4"), "containers"),
                        (lambda: Container("a", None), "address"),
                        (lambda: Container(None, "10.0.0.2"), "netns"),
                        (lambda: Network("x", None), "objects"),
                        (lambda: bridge_network("x", [Container("a", "10.201.0.2")], bridge=5), "bridge"),
                        (lambda: bridge_network("x", [Container("a", "10.201.0.2")], gateway=None), "gateway"),
                        (lambda: bridge_network("x", [Container("a", "10.201.0.2")], gateway="10.1.1.1"), "gateway"),
                        (lambda: bridge_network("x", [Container("a", "10.201.0.2")], tag="yes"), "tag")]:
        with pytest.raises(ValidationError) as ei:
            call()
        assert ei.value.field == field, (ei.value, field)
    with pytest.raises(ValidationError) as ei:
        Container("a", None)
    assert str(ei.value).startswith("Container a: address: ")
    with pytest.raises(ValidationError) as ei:
        bridge_network("x", None)
    assert str(ei.value).startswith("bridge_network x: containers: ")


values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                   st.just("10.201.0.4/24"), st.just(IPv4Interface("10.201.0.4/24")), st.just("br0"))


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(sorted(CASES)), data=st.data())
def test_any_value_in_any_field_builds_or_raises_validation_error(case, data):
    make, kwargs, _ = CASES[case]
    field = data.draw(st.sampled_from(sorted(kwargs)))
    try:
        make(**dict(kwargs, **{field: data.draw(values)}))
    except ValidationError as e:
        assert e.field and e.rule


# --- 6. messages that name the real cause ---------------------------------------------------


def test_a_namespace_given_twice_is_named_as_such():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("web", "10.201.0.4"), Container("web", "10.201.0.5")])
    assert str(ei.value).startswith("Container web: netns: appears twice")
    # before: "Container web: veth: the host end's default name ... is 'v-web', the same as for container 'web'"
    assert "veth" not in str(ei.value)
    with pytest.raises(ValidationError, match="Container web.*netns: appears twice"):
        config.from_dict({"name": "t", "containers": [{"netns": "web", "address": "10.201.0.4"},
                                                      {"netns": "web", "address": "10.201.0.5", "veth": "v2"}]})


def test_an_address_used_twice_names_both_containers():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("web", "10.201.0.4"), Container("db", "10.201.0.4")])
    assert ei.value.obj == "VethPair v-db" and ei.value.field == "address"
    assert "address 10.201.0.4 is already used by VethPair v-web in netns web" in ei.value.rule


def test_a_container_at_the_gateway_address_is_named_as_such():
    with pytest.raises(ValidationError) as ei:
        bridge_network("t", [Container("web", "10.201.0.1")])
    # before: "Address 10.201.0.1/24 dev br0: address: address 10.201.0.1 is already used by VethPair v-web"
    assert ei.value.obj == "VethPair v-web"
    assert ei.value.rule == "an address is not the gateway 10.201.0.1 of bridge br0"


# --- 8. the lesson's name is reserved ----------------------------------------------------------


def test_the_lessons_name_is_reserved_for_the_lesson():
    with pytest.raises(ValidationError) as ei:
        bridge_network("tutorial", [Container("web", "10.88.0.10")], gateway="10.88.0.1/24")
    assert ei.value.field == "name" and "reserved for the lesson" in ei.value.rule
    with pytest.raises(ValidationError) as ei:
        config.from_dict({"name": "tutorial", "containers": [{"netns": "web", "address": "10.201.0.10"}]},
                         "network file t.toml")
    assert str(ei.value).startswith("network file t.toml: bridge_network tutorial: name: ")
    assert "reserved for the lesson" in str(ei.value)
    lesson = bridgenet.tutorial()
    assert lesson.name == "tutorial" and len(lesson.up_commands()) == 23
