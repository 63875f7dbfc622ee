"""Fast tier: one network across hosts (issue 15, first part): the file format, the model, the dry-run.

Golden transcripts of ``examples/stretch.toml`` (two hosts) and
``examples/stretch3.toml`` (three, one local); the file and the Python
builder make the same networks; what each host gets (VXLAN device, FDB
entries, MTU, gateway only on one host); every bad input is an error naming
its key (exit 2, nothing printed); running across hosts is refused clearly.
"""

from __future__ import annotations

import copy
import tomllib
import zlib
from ipaddress import ip_address
from pathlib import Path

import pytest

from bridgenet import config
from bridgenet.cli import main
from bridgenet.commands import FdbPresent, command_from_dict, command_to_dict
from bridgenet.errors import UnsupportedError, ValidationError
from bridgenet.hosts import HostSpec, default_vni
from bridgenet.hosts_file import from_hosts_dict
from bridgenet.model import Bridge, Vxlan
from bridgenet.network import Network
from bridgenet.render import RenderContext
from bridgenet.stretch import Member, stretch
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
TWO = ROOT / "examples" / "stretch.toml"
THREE = ROOT / "examples" / "stretch3.toml"


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def data(path=TWO) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def lines(net: Network) -> list[str]:
    return [c.shell() for c in net.up_commands()]


# --- golden transcripts -----------------------------------------------------------------


@pytest.mark.parametrize("path", [TWO, THREE], ids=["two", "three"])
@pytest.mark.parametrize("argv, suffix", [(["up", "--dry-run"], "up"), (["up", "--dry-run", "--batch"], "up-batch"),
                                          (["down", "--dry-run"], "down")])
def test_dry_run_matches_golden(capsys, path, argv, suffix):
    code, out, err = cli(capsys, *argv, "-f", str(path))
    assert (code, err) == (0, "")
    check_golden(f"{path.stem}-{suffix}.txt", out)


def test_each_host_under_its_header_in_file_order(capsys):
    _, out, _ = cli(capsys, "up", "--dry-run", "-f", str(THREE))
    headers = [line for line in out.splitlines() if line.startswith("# host")]
    assert headers == ["# host h1 (admin@198.51.100.21)", "# host h2 (root@lab-gw)", "# host h3 (local)"]
    # each host's part is exactly its network's transcript
    parts = out.split("\n\n")
    s = config.load_any(THREE)
    for part, (host, net) in zip(parts, s.pairs()):
        assert part.rstrip("\n").splitlines() == [host.header(), *lines(net)]


def test_explain_and_sudo_work_per_host(capsys):
    code, out, _ = cli(capsys, "up", "--dry-run", "--explain", "--sudo", "-f", str(TWO))
    assert code == 0
    assert "# host h2 (root@198.51.100.12)" in out
    assert "sudo bridge fdb append 00:00:00:00:00:00 dev vx4240 dst 198.51.100.11" in out
    assert "head-end replication" in out


# --- the model: what each host gets -----------------------------------------------------------


def test_two_hosts_vxlan_fdb_mtu_and_gateway():
    s = config.load_any(TWO)
    assert (s.vni, s.mtu, s.gateway_host) == (4240, 1450, "h1")
    h1, h2 = (lines(n) for n in s.networks)
    for mine, other, text in ((h1, "198.51.100.12", "198.51.100.11"), (h2, "198.51.100.11", "198.51.100.12")):
        assert f"ip link add vx4240 type vxlan id 4240 dstport 4789 local {text}" in mine
        assert [x for x in mine if x.startswith("bridge fdb")] == [
            f"bridge fdb append 00:00:00:00:00:00 dev vx4240 dst {other}"]
        assert "ip link set dev br0 mtu 1450" in mine
        assert "ip link set dev vx4240 mtu 1450" in mine
        assert "ip link set vx4240 master br0" in mine
        assert mine.index("ip link add br0 type bridge") < mine.index("ip link set vx4240 master br0")
    # both veth ends get the overlay's MTU
    assert "ip link set dev v-a mtu 1450" in h1 and "ip netns exec a ip link set dev eth0 mtu 1450" in h1
    assert "ip link set dev v-b mtu 1450" in h2 and "ip netns exec b ip link set dev eth0 mtu 1450" in h2
    # gateway, forwarding and NAT on h1 only; b routes via the gateway across the overlay
    assert "ip addr add 10.40.0.1/24 brd 10.40.0.255 dev br0" in h1
    assert "sysctl -w net.ipv4.ip_forward=1" in h1
    assert any("MASQUERADE" in x for x in h1)
    assert not any(x.startswith("ip addr add") for x in h2)
    assert not any("ip_forward" in x or "MASQUERADE" in x for x in h2)
    assert "ip netns exec b ip route add default via 10.40.0.1" in h2


def test_three_hosts_each_floods_to_the_two_others_and_gateway_host_is_chosen():
    s = config.load_any(THREE)
    assert s.gateway_host == "h2" and s.mtu == 1400
    assert s.vni == zlib.crc32(b"lab3") % 2**24 == default_vni("lab3")
    underlays = [str(h.underlay) for h in s.hosts]
    assert underlays == ["198.51.100.21", "198.51.100.22", "198.51.100.23"]
    for h, net in s.pairs():
        fdb = [x.split()[-1] for x in lines(net) if x.startswith("bridge fdb")]
        assert fdb == [u for u in underlays if u != str(h.underlay)]
        assert any(x == "sysctl -w net.ipv4.ip_forward=1" for x in lines(net)) == (h.name == "h2")
    assert s.hosts[0].ssh_args() == ("-p", "2222", "-i", str(THREE.parent / "keys/lab"), "-F",
                                      str(THREE.parent / "lab.ssh_config"))  # beside the file
    assert s.hosts[2].local and s.hosts[2].ssh_args() == ()


def test_names_list_the_containers_of_every_host():
    s = config.load_any(TWO)
    hosts_b = next(c.input for c in s.network_of("h2").up_commands() if c.args[-1:] == ("/etc/netns/b/hosts",))
    assert "10.40.0.10\ta a.stretch\n" in hosts_b and "10.40.0.20\tb b.stretch\n" in hosts_b


def test_python_builder_equals_the_files():
    two = stretch("stretch", gateway="10.40.0.1/24", vni=4240,
                  hosts=[HostSpec("h1", ssh="root@198.51.100.11"),
                         HostSpec("h2", ssh="root@198.51.100.12", options=["StrictHostKeyChecking=accept-new"])],
                  containers=[Member("h1", "a", "10.40.0.10"), Member("h2", "b", "10.40.0.20")])
    assert two == config.load_any(TWO)
    three = stretch("lab3", gateway="10.41.0.1/24", gateway_host="h2", underlay_mtu=1500, mtu=1400, names=False,
                    hosts=[HostSpec("h1", "admin@198.51.100.21", port=2222, identity=str(THREE.parent / "keys/lab"),
                                    ssh_config=str(THREE.parent / "lab.ssh_config")),
                           HostSpec("h2", "root@lab-gw", "198.51.100.22"), HostSpec("h3", underlay="198.51.100.23")],
                    containers=[Member("h1", "web", "10.41.0.10"), Member("h2", "db", "10.41.0.20", ports=["5432:5432"]),
                                Member("h3", "cache", "10.41.0.30")])
    assert three == config.load_any(THREE)  # relative identity and ssh_config paths: beside the file
    assert three != config.load_any(TWO)


def test_default_vni_is_crc32_of_the_name_never_zero(monkeypatch):
    assert default_vni("stretch") == 16056067
    d = data()
    del d["vni"]
    assert from_hosts_dict(d).vni == 16056067
    import bridgenet.hosts as hosts_mod

    monkeypatch.setattr(hosts_mod.zlib, "crc32", lambda b: 2**24 * 7)
    assert hosts_mod.default_vni("x") == 1


def test_mtu_rule_underlay_minus_50_or_70_over_ipv6():
    d = data()
    d["underlay_mtu"] = 9000
    assert from_hosts_dict(d).mtu == 8950
    d = data()
    d["hosts"] = [{"name": "h1", "ssh": "root@[2001:db8::11]"}, {"name": "h2", "ssh": "root@2001:db8::12"}]
    s = from_hosts_dict(d)
    assert s.mtu == 1430 and str(s.hosts[0].underlay) == "2001:db8::11"
    assert "ip link add vx4240 type vxlan id 4240 dstport 4789 local 2001:db8::11" in lines(s.networks[0])


def test_learning_off_renders_nolearning():
    d = data()
    d["learning"] = False
    assert any(x.endswith("local 198.51.100.11 nolearning") for x in lines(from_hosts_dict(d).networks[0]))


def test_a_host_without_containers_carries_the_overlay():
    d = data()
    d["hosts"].append({"name": "h3", "ssh": "root@198.51.100.13"})
    net = from_hosts_dict(d).network_of("h3")
    assert [type(o).__name__ for o in net.objects][:2] == ["Bridge", "Vxlan"]
    assert not net.namespaces


def test_vxlan_effects_and_state_file_round_trip():
    vx = Vxlan("vx7", 7, "198.51.100.11", "br0", ["198.51.100.12"], mtu=1450)
    steps = vx.steps(RenderContext(tag="bridgenet:t"))
    assert [s.key for s in steps] == ["link vx7", "port vx7", "fdb vx7 198.51.100.12"]
    assert [c.shell() for c in steps[0].down] == ["ip link del vx7"]
    assert all(s.covered_by == "link vx7" for s in steps[1:])
    fdb = steps[2].up[0]
    assert fdb.effect == FdbPresent("vx7", "00:00:00:00:00:00", "198.51.100.12")
    back = command_from_dict(command_to_dict(fdb))
    assert back == fdb and back.effect == fdb.effect


@pytest.mark.parametrize("kwargs, field", [
    ({"vni": 0}, "vni"), ({"vni": 2**24}, "vni"), ({"vni": True}, "vni"),
    ({"local": "nope"}, "local"), ({"remotes": ["198.51.100.11"]}, "remotes"),
    ({"remotes": ["2001:db8::1"]}, "remotes"), ({"master": "vx7"}, "master"), ({"dstport": 0}, "dstport"),
])
def test_vxlan_rules(kwargs, field):
    args = {"name": "vx7", "vni": 7, "local": "198.51.100.11", "master": "br0", **kwargs}
    with pytest.raises(ValidationError) as ei:
        Vxlan(**args)
    assert ei.value.field == field


def test_vxlan_in_a_network_is_checked_like_a_port():
    with pytest.raises(ValidationError, match="not a Bridge of this network"):
        Network("t", [Bridge("br0"), Vxlan("vx7", 7, "198.51.100.11", "br1")])
    with pytest.raises(ValidationError, match="at most its bridge's"):
        Network("t", [Bridge("br0", mtu=1400), Vxlan("vx7", 7, "198.51.100.11", "br0", mtu=1450)])
    with pytest.raises(ValidationError, match="appears twice|already used"):
        Network("t", [Bridge("vx7"), Vxlan("vx7", 7, "198.51.100.11", "br0")])
    # after its bridge, whatever order it is given in
    net = Network("t", [Vxlan("vx7", 7, "198.51.100.11", "br0"), Bridge("br0")])
    assert [type(o).__name__ for o in net.ordered] == ["Bridge", "Vxlan"]


# --- refused before any command, naming the key -----------------------------------------------


def _set(path, value):
    def edit(d):
        *parents, last = path
        target = d
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return edit


BAD = [
    (_set(["colour"], "red"), "network file", "colour"),
    (_set(["hosts", 0, "colour"], "red"), "hosts[0]", "colour"),
    (_set(["containers", 1, "colour"], "red"), "containers[1]", "colour"),
    (_set(["vni"], "4240"), "network file", "vni"),
    (_set(["vni"], 0), "network file", "vni"),
    (_set(["vni"], 16777216), "network file", "vni"),
    (_set(["hosts", 1, "port"], "22"), "hosts[1]", "port"),
    (_set(["hosts", 1, "port"], 70000), "hosts[1]", "port"),
    (_set(["hosts", 1, "options"], "StrictHostKeyChecking=no"), "hosts[1]", "options"),
    (_set(["hosts", 1, "options"], ["-oProxyCommand=x"]), "hosts[1]", "options[0]"),
    (_set(["hosts", 1, "ssh"], "-oProxyCommand=x"), "hosts[1]", "ssh"),
    (_set(["hosts", 1, "ssh"], "root@h2.example"), "hosts[1]", "underlay"),
    (_set(["hosts", 1, "ssh"], KeyError), "hosts[1]", "underlay"),
    (_set(["hosts", 1, "underlay"], "10.0.0.300"), "hosts[1]", "underlay"),
    (_set(["hosts", 1, "name"], "h1"), "hosts[1]", "name"),
    (_set(["hosts", 1, "underlay"], "198.51.100.11"), "hosts[1]", "underlay"),
    (_set(["hosts", 1, "underlay"], "2001:db8::12"), "hosts[1]", "underlay"),
    (_set(["hosts"], []), "network file", "hosts"),
    (_set(["hosts"], [{"name": "h1", "underlay": "198.51.100.11"}, {"name": "h2", "underlay": "198.51.100.12"}]),
     "hosts[1]", "ssh"),
    (_set(["containers", 1, "host"], "h9"), "containers[1]", "host"),
    (_set(["containers", 1, "host"], KeyError), "containers[1]", "host"),
    (_set(["containers", 1, "address"], "10.41.0.20"), "containers[1]", "address"),
    (_set(["containers", 1, "address"], "10.40.0.20/16"), "containers[1]", "address"),
    (_set(["containers", 1, "address"], "10.40.0.10"), "containers[1]", "address"),
    (_set(["containers", 1, "address"], "10.40.0.1"), "containers[1]", "address"),
    (_set(["containers", 1, "netns"], "a"), "containers[1]", "netns"),
    (_set(["containers", 1, "ports"], ["8080:80"]), "containers[1]", "ports"),
    (_set(["containers", 1, "mtu"], 1500), "containers[1]", "mtu"),
    (_set(["gateway"], "10.40.0.1"), "network file", "gateway"),
    (_set(["gateway"], KeyError), "network file", "gateway"),
    (_set(["gateway_host"], "h9"), "network file", "gateway_host"),
    (_set(["mtu"], 1451), "network file", "mtu"),
    (_set(["underlay_mtu"], 100), "network file", "underlay_mtu"),
    (_set(["bridge"], "a-name-far-too-long"), "network file", "bridge"),
]


@pytest.mark.parametrize("edit, where, field", BAD)
def test_bad_input_names_the_key(edit, where, field):
    d = copy.deepcopy(data())
    edit(d)
    with pytest.raises(ValidationError) as ei:
        from_hosts_dict(d, "network file stretch.toml")
    assert ei.value.field == field, str(ei.value)
    assert where in ei.value.obj, str(ei.value)


def test_cli_bad_file_exits_2_naming_the_key(capsys, tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(TWO.read_text().replace('host = "h2"', 'host = "h9"'))
    code, out, err = cli(capsys, "up", "--dry-run", "-f", str(p))
    assert (code, out) == (2, "")
    assert "containers[1]" in err and "host" in err and "h9" in err


# --- running across hosts: the graph of a file across hosts is refused (the rest: test_across.py) ---------


@pytest.mark.parametrize("argv, code", [(["graph"], 2)])
def test_graph_across_hosts_is_refused_clearly(capsys, argv, code):
    got, out, err = cli(capsys, *argv, "-f", str(TWO))
    assert (got, out) == (code, "")
    assert "works on one host's network" in err and "--dry-run" in err
    with pytest.raises(UnsupportedError):
        config.load(TWO)


def test_one_local_host_is_an_ordinary_network(capsys, tmp_path):
    p = tmp_path / "one.toml"
    p.write_text('name = "solo"\ngateway = "10.42.0.1/24"\n[[hosts]]\nname = "me"\nunderlay = "198.51.100.31"\n'
                 '[[containers]]\nnetns = "x"\nhost = "me"\naddress = "10.42.0.10"\n')
    net = config.load(p)
    assert isinstance(net, Network) and net == config.load_any(p).networks[0]
    assert "ip link add vx" + str(default_vni("solo")) + " type vxlan id " + str(default_vni("solo")) in \
        "\n".join(lines(net))
    code, out, _ = cli(capsys, "up", "--dry-run", "-f", str(p))
    assert code == 0 and out.splitlines()[0] == "# host me (local)"
    assert out == "# host me (local)\n" + "".join(line + "\n" for line in lines(net))


def test_underlay_default_is_the_ssh_host():
    assert HostSpec("h", "root@198.51.100.9").underlay == ip_address("198.51.100.9")
    assert HostSpec("h", "198.51.100.9").underlay == ip_address("198.51.100.9")
    assert HostSpec("h", "root@lab", "198.51.100.9").header() == "# host h (root@lab)"


def test_readme_shows_the_two_host_example_and_its_transcript():
    readme = (ROOT / "README.md").read_text()
    assert TWO.read_text().rstrip() in readme
    assert (ROOT / "tests" / "golden" / "stretch-up.txt").read_text().rstrip() in readme
