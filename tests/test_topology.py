"""Fast tier: beyond one bridge (issue 11) without privilege.

Golden transcripts of ``examples/campus.toml``; the file and the Python
builder make the same network, and one bridge made either way is the
lesson's shape; files in the lesson's shape are read as before; every rule
is an error naming its key (exit code 2 from the CLI, nothing printed);
the advice about routers that do not forward; parallel jobs keep a bare
veth's two namespaces together and run each command once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

import bridgenet
from bridgenet import config, topology_file
from bridgenet.batch import ip_batch_line, iptables_restore_rule, plan, render_shell
from bridgenet.cli import main
from bridgenet.errors import ValidationError
from bridgenet.jobs import PARALLEL_MIN, partition
from bridgenet.topology import BridgeSpec, End, Interface, LinkSpec, Node, RouteSpec, topology
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
CAMPUS = ROOT / "examples" / "campus.toml"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"




def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def campus_in_python() -> bridgenet.Network:
    """examples/campus.toml, written with the builder (topology.py's docstring)."""
    to_lan1 = RouteSpec("10.20.0.0/24", "10.10.0.254")
    return topology(
        "campus",
        bridges=[BridgeSpec("lan0", address="10.10.0.1/24"), BridgeSpec("lan1", mtu=1400)],
        containers=[
            Node("a", bridge="lan0", address="10.10.0.10", routes=[to_lan1]),
            Node("r1", forward=True, default_route=False, interfaces=[
                Interface("lan0", "10.10.0.254/24"), Interface("lan1", "10.20.0.1/24", peer="eth1")]),
            Node("b", bridge="lan1", address="10.20.0.10/24", default_route="10.20.0.1"),
        ],
        links=[LinkSpec((End("b", "to-c", "10.99.0.1/30"), End("c", "to-b", "10.99.0.2/30")), mtu=1400)],
        routes=[to_lan1],
    )


# --- 1. golden transcripts of the example ---------------------------------------------


@pytest.mark.parametrize("argv, golden", [
    (["up", "--dry-run"], "topology-campus-up.txt"),
    (["up", "--dry-run", "--batch"], "topology-campus-up-batch.txt"),
    (["down", "--dry-run"], "topology-campus-down.txt"),
])
def test_campus_dry_run_matches_golden(capsys, argv, golden):
    code, out, err = cli(capsys, *argv, "-f", str(CAMPUS))
    assert (code, err) == (0, "")
    check_golden(golden, out)


def test_campus_transcript_says_what_the_file_says():
    """The points of the golden file worth reading, so that a rewritten golden cannot lose them unnoticed."""
    up = (GOLDEN / "topology-campus-up.txt").read_text().splitlines()
    # the bare veth is born with each end in its namespace, after both namespaces exist
    link = "ip link add to-c netns b type veth peer name to-b netns c"
    assert up.count(link) == 1 and up.index("ip netns add b") < up.index("ip netns add c") < up.index(link)
    # MTU 1400 on lan1, on both ends of each of its ports, on both ends of the link; nowhere else
    mtu = sorted(line for line in up if " mtu " in line)
    assert mtu == sorted([
        "ip link set dev lan1 mtu 1400",
        "ip link set dev v-r1-1 mtu 1400", "ip netns exec r1 ip link set dev eth1 mtu 1400",
        "ip link set dev v-b mtu 1400", "ip netns exec b ip link set dev eth0 mtu 1400",
        "ip netns exec b ip link set dev to-c mtu 1400", "ip netns exec c ip link set dev to-b mtu 1400",
    ])
    # a port's MTU is set before it is plugged into its bridge
    assert up.index("ip link set dev v-b mtu 1400") < up.index("ip link set v-b master lan1")
    # routes: defaults (a via the host, b via r1; r1 and c none), then the static ones; forwarding in r1
    routes = [line for line in up if " route add " in line]
    assert routes == ["ip netns exec a ip route add default via 10.10.0.1",
                      "ip netns exec b ip route add default via 10.20.0.1",
                      "ip netns exec a ip route add 10.20.0.0/24 via 10.10.0.254",
                      "ip route add 10.20.0.0/24 via 10.10.0.254"]
    assert "ip netns exec r1 sysctl -w net.ipv4.ip_forward=1" in up
    # the host is only on lan0: one address, one MASQUERADE
    assert [line for line in up if line.startswith("ip addr add")] == [
        "ip addr add 10.10.0.1/24 brd 10.10.0.255 dev lan0"]
    assert [line for line in up if "MASQUERADE" in line] == [
        "iptables -t nat -A POSTROUTING -s 10.10.0.0/24 '!' -o lan0 -m comment --comment bridgenet:campus "
        "-j MASQUERADE"]
    down = (GOLDEN / "topology-campus-down.txt").read_text().splitlines()
    # the host's route goes, the link goes from b, every namespace (c too) and host link goes
    assert "ip route del 10.20.0.0/24 via 10.10.0.254" in down
    assert down.index("ip netns exec b ip link del to-c") < down.index("ip netns del b")
    assert sorted(line for line in down if line.startswith("ip netns del")) == [
        f"ip netns del {n}" for n in ("a", "b", "c", "r1")]
    assert sorted(line.split()[4] for line in down if line.endswith(" group 49377") and "dev" in line) == [
        "lan0", "lan1", "v-a", "v-b", "v-r1", "v-r1-1"]


# --- 2. the file and the builder make the same network --------------------------------------


def test_the_file_and_the_builder_make_the_same_network():
    from_file, from_python = config.load(CAMPUS), campus_in_python()
    assert from_file == from_python
    assert from_file.objects == from_python.objects
    for fast in (False, True):
        assert [c.shell() for c in from_file.up_commands(fast=fast)] == \
            [c.shell() for c in from_python.up_commands(fast=fast)]
    assert [c.shell() for c in from_file.down_commands()] == [c.shell() for c in from_python.down_commands()]
    assert from_file.advice == from_python.advice == ()
    assert from_file.source == str(CAMPUS) and from_python.source is None  # not part of ==


ONE_BRIDGE = [  # the lesson's shape writes no /etc/netns files (names.py): topology(names=False) is it
    ({}, {"names": False}, {}),
    ({"tag": False}, {"tag": False, "names": False}, {}),
    ({"forward": False, "default_routes": False, "masquerade": False, "isolate": True, "accept_forward": False},
     {"forward": False, "default_routes": False, "isolate": True, "accept_forward": False, "names": False},
     {"masquerade": False}),
]


@pytest.mark.parametrize("lesson_kw, topo_kw, bridge_kw", ONE_BRIDGE)
def test_one_bridge_topology_is_bridge_network(lesson_kw, topo_kw, bridge_kw):
    lesson = bridgenet.bridge_network("one", [
        bridgenet.Container("c0", "10.201.0.10"),
        bridgenet.Container("c1", "10.201.0.11/24", veth="vc1", peer="eth5"),
    ], bridge="br3", **lesson_kw)
    built = topology("one", bridges=[BridgeSpec("br3", "10.201.0.1/24", **bridge_kw)], containers=[
        Node("c0", address="10.201.0.10"),
        Node("c1", address="10.201.0.11/24", veth="vc1", peer="eth5"),
    ], **topo_kw)
    assert built == lesson and built.objects == lesson.objects and built.tag == lesson.tag
    for fast in (False, True):
        assert [c.shell() for c in built.up_commands(fast=fast)] == [c.shell() for c in lesson.up_commands(fast=fast)]
    assert [c.shell() for c in built.down_commands()] == [c.shell() for c in lesson.down_commands()]


def test_the_top_level_bridge_shorthand_with_a_new_key_is_the_lesson_shape(tmp_path):
    """``routes = []`` sends a lesson-shaped file to topology_file: it builds what the old path builds."""
    old = tmp_path / "old.toml"
    old.write_text(OLD_FORM)
    new = tmp_path / "new.toml"
    new.write_text("routes = []\nnames = false\n" + OLD_FORM.replace("lesson_form = false\n", ""))
    a, b = config.load(old), config.load(new)
    assert a == b and [c.shell() for c in a.up_commands()] == [c.shell() for c in b.up_commands()]


# --- 3. files in the lesson's shape: read as before ------------------------------------------

OLD_FORM = """\
name = "oldform"
bridge = "br7"
gateway = "10.77.0.1/24"
default_routes = true
forward = true
masquerade = true
tag = true
accept_forward = true
isolate = false
lesson_form = false

[[containers]]
netns = "web"
address = "10.77.0.10"
veth = "v-web"
peer = "eth0"

[[containers]]
netns = "db"
address = "10.77.0.11/24"
"""


@pytest.mark.parametrize("argv, golden", [
    (["up", "--dry-run"], "oldform-up.txt"),
    (["up", "--dry-run", "--batch"], "oldform-up-batch.txt"),
    (["down", "--dry-run"], "oldform-down.txt"),
])
def test_a_lesson_shaped_file_is_read_by_the_old_path_and_prints_as_before(capsys, monkeypatch, tmp_path,
                                                                           argv, golden):
    """The goldens were printed by main before issue 11 (a6a589f) and never rewritten (not check_golden)."""
    def refuse(*a, **k):
        raise AssertionError("a lesson-shaped file went to topology_file")

    monkeypatch.setattr(topology_file, "from_topology_dict", refuse)
    path = tmp_path / "old.toml"
    path.write_text(OLD_FORM)
    code, out, err = cli(capsys, *argv, "-f", str(path))
    assert (code, err) == (0, "")
    assert out == (GOLDEN / golden).read_text()
    assert config.load(path) == bridgenet.bridge_network(
        "oldform", [bridgenet.Container("web", "10.77.0.10", veth="v-web"), bridgenet.Container("db", "10.77.0.11")],
        bridge="br7", gateway="10.77.0.1/24", accept_forward=True, isolate=False)


# --- 4. errors: each names its key and rule, before anything runs; exit code 2 --------------

BASE = """\
name = "t"
[[bridges]]
name = "lan0"
address = "10.10.0.1/24"
[[bridges]]
name = "lan1"
"""
A = '[[containers]]\nnetns = "a"\nbridge = "lan0"\naddress = "10.10.0.10"\n'
ON_LAN1 = '[[containers]]\nnetns = "{ns}"\nbridge = "lan1"\naddress = "{addr}"\ndefault_route = false\n'
LINK = '[[links]]\nends = [{{netns = "a", name = "to-b"{e0}}}, {{netns = "b", name = "to-a"{e1}}}]\n'


def link(e0="", e1="", extra=""):
    return LINK.format(e0=e0, e1=e1) + extra


LAN1_MTU = BASE.replace('name = "lan1"\n', 'name = "lan1"\nmtu = 1400\n')

# (id, file text, the key named, where it is named, a piece of the rule)
BAD = [
    ("unknown-top", "colour = 1\n" + BASE + A, "colour", "bad.toml", "known keys are"),
    ("unknown-bridges", BASE + 'colour = "x"\n' + A, "colour", "bridges[1]", "known keys are address, address6, masquerade"),
    ("unknown-containers", BASE + A + "colour = 1\n", "colour", "containers[0]", "known keys are address, address6, bridge"),
    ("unknown-interfaces", BASE + '[[containers]]\nnetns = "a"\n  [[containers.interfaces]]\n  bridge = "lan0"\n'
     '  address = "10.10.0.10"\n  colour = 1\n', "colour", "containers[0] interfaces[0]", "known keys are address"),
    ("unknown-container-routes", BASE + A + 'routes = [{to = "10.20.0.0/24", via = "10.10.0.254", metric = 5}]\n',
     "metric", "containers[0] routes[0]", "known keys are to, via"),
    ("unknown-host-routes", 'routes = [{to = "10.20.0.0/24", via = "10.10.0.254", metric = 5}]\n' + BASE + A,
     "metric", "bad.toml routes[0]", "known keys are to, via"),
    ("unknown-links", BASE + A + link(extra="colour = 1\n"), "colour", "links[0]", "known keys are ends, mtu"),
    ("unknown-ends", BASE + A + link(e1=", colour = 1"), "colour", "links[0] ends[1]", "known keys are address"),
    ("mtu-text", LAN1_MTU.replace("mtu = 1400", 'mtu = "1400"') + A, "mtu", "bridges[1]", "a whole number"),
    ("forward-number", BASE + A + "forward = 1\n", "forward", "containers[0]", "true or false"),
    ("top-forward-number", "forward = 1\n" + BASE + A, "forward", "bad.toml", "true or false"),
    ("default-route-true", BASE + A + "default_route = true\n", "default_route", "containers[0]", "text or false"),
    ("mtu-67-bridge", LAN1_MTU.replace("1400", "67") + A, "mtu", "bridges[1]", "from 68 to 65535"),
    ("mtu-65536-container", BASE + A + "mtu = 65536\n", "mtu", "containers[0]", "from 68 to 65535"),
    ("mtu-65536-interface", BASE + '[[containers]]\nnetns = "a"\n  [[containers.interfaces]]\n  bridge = "lan0"\n'
     '  address = "10.10.0.10"\n  mtu = 65536\n', "mtu", "containers[0] interfaces[0]", "from 68 to 65535"),
    ("mtu-0-link", BASE + A + link(extra="mtu = 0\n"), "mtu", "links[0]", "from 68 to 65535"),
    ("port-mtu-above-bridge", LAN1_MTU + ON_LAN1.format(ns="a", addr="10.20.0.10/24") + "mtu = 1500\n",
     "mtu", "VethPair v-a", "at most its bridge's: lan1 has 1400"),
    ("address-outside-subnet", BASE + A.replace("10.10.0.10", "10.11.0.10"), "address", "VethPair v-a",
     "must lie in its bridge's subnet: lan0 has 10.10.0.0/24"),
    ("address-without-prefix", BASE + ON_LAN1.format(ns="a", addr="10.20.0.10"), "address", "Container a",
     "bridge lan1 has no address, so a container's address on it needs its prefix length"),
    ("no-default-route", BASE + ON_LAN1.format(ns="a", addr="10.20.0.10/24").replace("default_route = false\n", ""),
     "default_route", "Container a", "give default_route an address, or false"),
    ("duplicate-address", BASE + ON_LAN1.format(ns="a", addr="10.20.0.10/24")
     + ON_LAN1.format(ns="b", addr="10.20.0.10/24"), "address", "VethPair v-b",
     "address 10.20.0.10 is already used by VethPair v-a in netns a"),
    ("duplicate-address-on-a-link", BASE + A + '[[links]]\nends = [{netns = "b", name = "to-c", address = '
     '"10.10.0.10/30"}, {netns = "c", name = "to-b", address = "10.10.0.9/30"}]\n', "address", "",
     "address 10.10.0.10 is already used by VethPair v-a"),
    ("overlapping-host-subnets", BASE.replace('name = "lan1"\n', 'name = "lan1"\naddress = "10.10.1.1/16"\n') + A,
     "address", "BridgeSpec lan1", "two bridges' subnets do not overlap: lan1 is on 10.10.0.0/16, lan0 on 10.10.0.0/24"),
    ("container-route-via-off-subnet", BASE + A + 'routes = [{to = "10.20.0.0/24", via = "10.30.0.1"}]\n',
     "via", "Route 10.20.0.0/24 via 10.30.0.1", "a gateway lies inside the on-link subnet of netns a"),
    ("host-route-via-off-subnet", 'routes = [{to = "10.20.0.0/24", via = "10.30.0.1"}]\n' + BASE + A,
     "via", "Route 10.20.0.0/24 via 10.30.0.1", "a gateway lies inside the on-link subnet of the host"),
    ("link-one-end", BASE + A + '[[links]]\nends = [{netns = "a", name = "to-b"}]\n', "ends", "links[0]",
     "a link has exactly two ends"),
    ("link-three-ends", BASE + A + '[[links]]\nends = [{netns = "a", name = "to-b"}, {netns = "b", name = "to-a"}, '
     '{netns = "c", name = "to-d"}]\n', "ends", "links[0]", "a link has exactly two ends"),
    ("link-both-ends-in-host", BASE + A + '[[links]]\nends = [{name = "h-one"}, {name = "h-two"}]\n', "ends",
     "links[0]", "at least one end of a link is in a namespace"),
    ("bridges-and-top-bridge", 'bridge = "br9"\n' + BASE + A, "bridge", "bad.toml", "with [[bridges]], give bridge"),
    ("bridges-and-top-gateway", 'gateway = "10.9.0.1/24"\n' + BASE + A, "gateway", "bad.toml",
     "with [[bridges]], give gateway"),
    ("lesson-form-with-bridges", "lesson_form = true\n" + BASE + A, "lesson_form", "bad.toml",
     "lesson_form is for the lesson's shape"),
    ("lesson-form-with-container-key", 'name = "t"\nlesson_form = true\n[[containers]]\nnetns = "a"\n'
     'address = "10.201.0.10"\nforward = true\n', "lesson_form", "bad.toml", "lesson_form is for the lesson's shape"),
    ("unknown-bridge", BASE + A.replace("lan0", "lan9"), "bridge", "Container a",
     "bridge 'lan9' is not a bridge of this network (lan0, lan1)"),
    ("unknown-bridge-interface", BASE + '[[containers]]\nnetns = "a"\n  [[containers.interfaces]]\n'
     '  bridge = "lan9"\n  address = "10.10.0.10"\n', "bridge", "Container a interfaces[0]",
     "bridge 'lan9' is not a bridge of this network"),
]


@pytest.mark.parametrize("text, key, where, rule", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_broken_rule_is_an_error_naming_the_key(tmp_path, text, key, where, rule):
    tomllib.loads(text)  # the file itself is TOML: the error is bridgenet's
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValidationError) as e:
        config.load(path)
    assert e.value.field == key, str(e.value)
    assert rule in e.value.rule, str(e.value)
    assert where in e.value.obj and e.value.obj.startswith(f"network file {path}"), str(e.value)
    # the CLI: exit 2, the key named on stderr, nothing printed (a dry-run prints all or nothing)
    p = subprocess.run([sys.executable, "-m", "bridgenet", "up", "--dry-run", "-f", str(path)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert p.stderr.startswith("bridgenet: invalid network: network file "), p.stderr
    assert f": {key}: " in p.stderr and rule in p.stderr, p.stderr


def test_two_bridges_without_host_address_on_overlapping_subnets_are_refused():
    text = BASE + '[[bridges]]\nname = "lan2"\n' + ON_LAN1.format(ns="a", addr="10.20.0.10/24") \
        + ON_LAN1.format(ns="b", addr="10.20.0.11/16").replace("lan1", "lan2")
    with pytest.raises(ValidationError, match="overlap"):
        config.from_dict(tomllib.loads(text), "network file bad.toml")


def test_the_builder_refuses_a_link_with_both_ends_in_the_host():
    with pytest.raises(ValidationError, match="namespace"):
        topology("t", links=[LinkSpec((End(None, "h-one"), End(None, "h-two")))])


@pytest.mark.parametrize("make, field", [
    (lambda: BridgeSpec("lan0", mtu="1400"), "mtu"),
    (lambda: BridgeSpec("lan0", mtu=65536), "mtu"),
    (lambda: Node("a", forward=1), "forward"),
    (lambda: Node("a", default_route=True), "default_route"),
    (lambda: LinkSpec((End("a", "to-b"),)), "ends"),
    (lambda: topology("t", containers=[Node("a", bridge="lan9", address="10.10.0.10")],
                      bridges=[BridgeSpec("lan0", "10.10.0.1/24")]), "bridge"),
    (lambda: topology("t", containers=[Node("a", bridge="lan1", address="10.20.0.10/24")],
                      bridges=[BridgeSpec("lan1")]), "default_route"),
    (lambda: topology("t", forward=1, containers=[Node("a", address="10.10.0.10")],
                      bridges=[BridgeSpec("lan0", "10.10.0.1/24")]), "forward"),
])
def test_the_builder_names_the_field_too(make, field):
    with pytest.raises(ValidationError) as e:
        make()
    assert e.value.field == field, str(e.value)


# --- 5. advice: a route through a namespace that does not forward ----------------------------


def test_a_route_through_a_namespace_without_forward_is_advised_against():
    text = CAMPUS.read_text().replace("forward = true\n", "")
    net = config.from_dict(tomllib.loads(text), "network file campus.toml")
    # b's default route, then a's route, then the host's (the order the objects come in)
    assert [line.split(":")[0] for line in net.advice] == [
        "route default via 10.20.0.1 in b", "route 10.20.0.0/24 via 10.10.0.254 in a",
        "route 10.20.0.0/24 via 10.10.0.254 in the host"], net.advice
    joined = "\n".join(net.advice)
    assert "route 10.20.0.0/24 via 10.10.0.254 in a: 10.10.0.254 is netns r1, which does not forward" in joined
    assert "route 10.20.0.0/24 via 10.10.0.254 in the host: 10.10.0.254 is netns r1" in joined
    assert "in b: 10.20.0.1 is netns r1" in joined
    assert all("forward = true" in line for line in net.advice)
    # the same network with the router forwarding: nothing to say
    assert config.load(CAMPUS).advice == ()


# --- 6. parallel jobs: a bare veth keeps its namespaces in one job ---------------------------


def many() -> bridgenet.Network:
    """Ten containers on lan0, a router n9 onto lan1, bare veths n1 <-> n6 and n3 <-> solo (a namespace of its own)."""
    nodes = [Node(f"n{i}", address=f"10.30.0.{10 + i}") for i in range(9)]
    nodes[0] = Node("n0", bridge="lan0", address="10.30.0.10", routes=[RouteSpec("10.40.0.0/24", "10.30.0.19")])
    nodes = [Node(n.netns, bridge="lan0", address=n.address, routes=n.routes) for n in nodes]
    nodes.append(Node("n9", forward=True, default_route=False, interfaces=[
        Interface("lan0", "10.30.0.19"), Interface("lan1", "10.40.0.1/24", mtu=1400)]))
    return topology("many", bridges=[BridgeSpec("lan0", "10.30.0.1/24"), BridgeSpec("lan1", mtu=9000)],
                    containers=nodes, links=[
                        LinkSpec((End("n1", "to-n6", "10.99.0.1/30"), End("n6", "to-n1", "10.99.0.2/30"))),
                        LinkSpec((End("n3", "to-solo", "10.99.0.5/30"), End("solo", "to-n3", "10.99.0.6/30")),
                                 mtu=1300),
                    ])


def test_a_topology_plans_in_jobs_with_each_bare_veth_inside_one_job():
    net = many()
    cmds = net.up_commands(fast=True)
    assert len(net.namespaces) == 11 >= PARALLEL_MIN
    job_of, _ = partition(cmds, 2)
    assert job_of["n1"] == job_of["n6"] and job_of["n3"] == job_of["solo"]
    p = plan(cmds, jobs=2)
    assert {i.job for i in p} == {None, 0, 1}
    assert Counter(c for i in p for c in i.commands) == Counter(cmds)
    for a, b, name in (("n1", "n6", "to-n6"), ("n3", "solo", "to-solo")):
        (where,) = [(k, i) for k, i in enumerate(p) for c in i.commands if c.args[:3] == ("link", "add", name)]
        k, inv = where
        assert inv.job == job_of[a] and inv.kind == "ip"
        # both namespaces are made before it, in the same job (or before the jobs)
        made = [c.args[2] for i in p[:k + 1] if i.job in (None, inv.job) for c in i.commands
                if c.args[:2] == ("netns", "add")]
        assert a in made and b in made
        # and each namespace's own batch is in that job too
        assert {i.job for i in p if i.netns in (a, b)} == {inv.job}


def _script_lines(script: str) -> Counter:
    """``(process, line)`` for each line a here-document of ``script`` gives ``ip -batch`` or iptables-restore."""
    out: Counter = Counter()
    process, eof = None, None
    for line in script.splitlines():
        if eof is not None:
            if line == eof:
                process, eof = None, None
            elif line not in ("*filter", "*nat", "COMMIT"):
                out[(process, line)] += 1
            continue
        if " <<'" in line:
            process, rest = line.split(" <<'")
            eof = rest.split("'")[0]
    return out


def test_the_batch_script_in_jobs_carries_each_command_exactly_once():
    # names.py's files (mkdir, tee with a here-document) are tested in test_names.py
    cmds = [c for c in many().up_commands(fast=True) if c.tool not in ("mkdir", "tee")]
    script = render_shell(plan(cmds, jobs=2))
    assert script.count("\n) &\n") == 2  # two jobs
    want: Counter = Counter()
    others = []
    for c in cmds:
        if c.tool == "ip":
            want[(f"ip -n {c.netns} -batch -" if c.netns else "ip -batch -", ip_batch_line(c))] += 1
        elif c.tool == "iptables" and iptables_restore_rule(c) is not None:
            want[("iptables-restore --noflush -w", iptables_restore_rule(c)[1])] += 1
        else:
            others.append(c)
    assert _script_lines(script) == want
    assert [c.shell() for c in others] == ["ip netns exec n9 sysctl -w net.ipv4.ip_forward=1",
                                           "sysctl -w net.ipv4.ip_forward=1"]
    lines = script.splitlines()
    assert lines.count("ip netns exec n9 sysctl -w net.ipv4.ip_forward=1") == 1
    assert lines.count("sysctl -w net.ipv4.ip_forward=1") == 1


def _routed(to, via, **kw):
    return topology("t", bridges=[BridgeSpec("tb0", "10.50.0.1/24", address6="fd00:50::1/64")],
                    containers=[Node("web", "10.50.0.10", address6="fd00:50::10", routes=[RouteSpec(to, via)], **kw)])


@pytest.mark.parametrize("to, via, key", [
    ("::/0", "fd00:50::1", "default_route6"),  # was accepted, then "File exists" at up
    ("0.0.0.0/0", "10.50.0.1", "default_route"),
    ("default", "10.50.0.1", "default_route"),
])
def test_a_route_to_default_next_to_the_automatic_one_is_refused(to, via, key):
    with pytest.raises(ValidationError) as ei:
        _routed(to, via)
    assert (ei.value.obj, ei.value.field) == ("Container web", "routes[0]")
    assert key in ei.value.rule and "already gets" in ei.value.rule


def test_a_route_to_zero_slash_zero_is_the_default_route():
    net = _routed("::/0", "fd00:50::1", default_route6=False)
    assert "ip netns exec web ip route add default via fd00:50::1" in [str(c) for c in net.up_commands()]
    with pytest.raises(ValidationError, match="of one family"):
        _routed("::/0", "10.50.0.1", default_route=False)
