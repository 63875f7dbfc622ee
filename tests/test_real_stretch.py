"""Real tier: each host's dry-run transcript of a network across hosts, run in hosts made in a sandbox.

The hosts are ``bridgenet.testing.hosts`` (``unshare --net --mount``
processes on an underlay bridge, 198.51.100.11, .12, ... in the sandbox's
namespace). Running across hosts is not bridgenet's yet: here each host's
transcript (what ``up --dry-run`` prints under its header) is run in that
host as a shell script, then checked as a person would: containers on
different hosts ping each other across VXLAN; the overlay's MTU holds
(``ping -M do`` at the exact limit passes, one byte more fails); a container
away from the gateway reaches beyond the overlay through the gateway host;
the FDB has one flooding entry per other host; ``down`` leaves each host as
it was. Nothing leaves the sandbox.
"""

from __future__ import annotations

import json

import pytest

from bridgenet.hosts import HostSpec
from bridgenet.stretch import Member, Stretch, stretch
from bridgenet.teardown import default_group, grouped
from bridgenet.testing import factories

pytestmark = pytest.mark.real

hosts2 = factories.hosts(2)
hosts3 = factories.hosts(3)


def build(hosts, **kwargs) -> Stretch:  # noqa: ANN001
    return stretch("mh", gateway="10.40.0.1/24",
                   hosts=[HostSpec(h.name, f"root@{h.address.ip}") for h in hosts],
                   containers=[Member(h.name, f"c{i}", f"10.40.0.{10 + i}") for i, h in enumerate(hosts, 1)],
                   **kwargs)


def script(commands) -> str:  # noqa: ANN001
    return "set -e\n" + "".join(c.shell() + "\n" for c in commands)


def links(host) -> list[str]:  # noqa: ANN001
    return sorted(link["ifname"] for link in json.loads(host.run(["ip", "-json", "link"]).stdout))


def up(hosts, s: Stretch) -> None:  # noqa: ANN001
    for host, net in zip(hosts, s.networks):
        r = host.run(["sh", "-c", script(net.up_commands())], check=False)
        assert r.exit_code == 0, f"{host.name}: {r.stderr}"


def ping(host, netns: str, dst: str, *extra: str):  # noqa: ANN001, ANN201
    return host.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "2", *extra, dst], check=False)


def test_two_hosts_ping_across_vxlan_mtu_holds_and_down_restores(hosts2) -> None:  # noqa: ANN001
    h1, h2 = hosts2
    before = [links(h) for h in hosts2]
    s = build(hosts2)
    assert s.mtu == 1450
    up(hosts2, s)
    for src, ns, dst in ((h1, "c1", "10.40.0.12"), (h2, "c2", "10.40.0.11"), (h2, "c2", "10.40.0.1")):
        r = ping(src, ns, dst)
        assert r.exit_code == 0, f"{ns} -> {dst}: {r.stdout}{r.stderr}"
    # the overlay's MTU end to end: 1450 - 20 (IPv4) - 8 (ICMP) bytes of payload, not one more
    assert ping(h2, "c2", "10.40.0.11", "-M", "do", "-s", "1422").exit_code == 0
    assert ping(h2, "c2", "10.40.0.11", "-M", "do", "-s", "1423").exit_code != 0
    # b's default route via the gateway on h1, across the overlay, then NAT out of h1's underlay
    r = ping(h2, "c2", str(hosts2.controller_address.ip))
    assert r.exit_code == 0, r.stdout + r.stderr
    vx = f"vx{s.vni}"
    fdb = json.loads(h1.run(["bridge", "-json", "fdb", "show", "dev", vx]).stdout)
    assert [e["dst"] for e in fdb if e["mac"] == "00:00:00:00:00:00"] == ["198.51.100.12"]
    link = json.loads(h1.run(["ip", "-d", "-json", "link", "show", vx]).stdout)[0]
    assert (link["mtu"], link["master"], link["linkinfo"]["info_data"]["id"],
            link["linkinfo"]["info_data"]["port"]) == (1450, "br0", s.vni, 4789)
    for host, net in zip(hosts2, s.networks):
        down = grouped(net.down_commands(group=False), default_group(net.name))
        r = host.run(["sh", "-c", script(down)], check=False)
        assert r.exit_code == 0, f"{host.name}: {r.stderr}"
    assert [links(h) for h in hosts2] == before
    assert all(h.run(["ip", "netns", "list"]).stdout == "" for h in hosts2)


def test_three_hosts_all_pairs_and_nolearning(hosts3) -> None:  # noqa: ANN001
    s = build(hosts3, learning=False, mtu=1400, gateway_host="h2")
    up(hosts3, s)
    for i, src in enumerate(hosts3, 1):
        for j in range(1, 4):
            if j != i:
                r = ping(src, f"c{i}", f"10.40.0.{10 + j}")
                assert r.exit_code == 0, f"c{i} -> c{j}: {r.stdout}{r.stderr}"
    assert ping(hosts3[0], "c1", "10.40.0.13", "-M", "do", "-s", "1372").exit_code == 0
    assert ping(hosts3[0], "c1", "10.40.0.13", "-M", "do", "-s", "1373").exit_code != 0
    # the gateway is on h2: h1 and h3 reach it across the overlay
    assert ping(hosts3[2], "c3", "10.40.0.1").exit_code == 0


ONE_LOCAL = """\
name = "solo"
gateway = "10.42.0.1/24"
[[hosts]]
name = "me"
underlay = "198.51.100.1"
[[containers]]
netns = "x"
host = "me"
address = "10.42.0.10"
"""


def test_one_local_host_runs_like_any_network(sb) -> None:  # noqa: ANN001
    from helpers import bridgenet_cli
    from netfiles import write

    path = write(sb, "solo.toml", ONE_LOCAL)
    first = bridgenet_cli(sb, "up", "-f", path)
    assert first.exit_code == 0, first.stderr
    assert "type vxlan" in first.stdout
    link = json.loads(sb.run(["ip", "-d", "-json", "link", "show", "master", "br0"], check=True).stdout)
    assert {(x["ifname"], x["linkinfo"]["info_kind"], x["mtu"]) for x in link} == {
        ("v-x", "veth", 1450), (f"vx{build_vni('solo')}", "vxlan", 1450)}
    plan = bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", path)
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    down = bridgenet_cli(sb, "down", "-f", path)
    assert down.exit_code == 0, down.stderr
    left = {x["ifname"] for x in json.loads(sb.run(["ip", "-json", "link"], check=True).stdout)}
    assert not {"br0", "v-x", f"vx{build_vni('solo')}"} & left


def build_vni(name: str) -> int:
    from bridgenet.hosts import default_vni

    return default_vni(name)
