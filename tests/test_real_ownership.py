"""Real tier: a user's objects are never tagged, changed or deleted; undo is total; names identify networks."""

import os
import textwrap

import pytest

import bridgenet
from bridgenet import Bridge, Container, Namespace, Network, VethPair, apply, bridge_network
from bridgenet.errors import ConflictError
from bridgenet.ledger import Ledger
from helpers import bridgenet_cli, diff, snap
from netfiles import state_files, write

pytestmark = pytest.mark.real


def shop(**kw):
    return bridge_network("shop", [Container("web", "10.88.0.10"), Container("db", "10.88.0.20")],
                          bridge="br1", gateway="10.88.0.1/24", **kw)


def alias(sb, link, netns=None):
    import json

    out = sb.run(["ip", "-json", "link", "show", "dev", link], netns=netns, check=True).stdout
    return json.loads(out)[0].get("ifalias")


def test_clean_without_state_file_leaves_a_users_bridge_and_namespace(sb):
    """Seen: br1 (alias users-bridge) and netns web existed; after the state file was lost, clean deleted both."""
    sb.run(["ip", "link", "add", "br1", "type", "bridge"], check=True)
    sb.run(["ip", "link", "set", "dev", "br1", "alias", "users-bridge"], check=True)
    sb.run(["ip", "netns", "add", "web"], check=True)
    before = snap(sb)
    r = sb.runner()
    report = apply.up(shop(), r)
    assert not any(c.args[:4] == ("link", "set", "dev", "br1") and "alias" in c.args for c in report.ran)
    assert alias(sb, "br1") == "users-bridge"  # a reused bridge keeps its alias
    assert alias(sb, "lo", "db") == "bridgenet:shop"  # what bridgenet made is tagged
    assert alias(sb, "lo", "web") is None  # what it only used is not
    assert sb.run(["ping", "-c", "1", "-W", "2", "10.88.0.20"], netns="web").ok
    os.unlink(os.path.join(r.fs_root, "run/bridgenet/shop.json"))
    apply.clean(r)
    after = snap(sb)
    # Everything bridgenet made is gone, everything it only used is still there. (Without the state
    # file nothing says what up changed on the reused bridge, its address and UP flag: they stay.)
    assert after["netns"] == before["netns"]
    assert after["namespaces"]["web"] == before["namespaces"]["web"]
    assert [x["ifname"] for x in after["host"]["links"]] == [x["ifname"] for x in before["host"]["links"]]
    assert alias(sb, "br1") == "users-bridge"
    assert after["iptables"] == before["iptables"]
    assert state_files(sb) == []


def test_down_leaves_reused_objects_exactly_as_they_were(sb):
    sb.run(["ip", "link", "add", "br1", "type", "bridge"], check=True)
    sb.run(["ip", "link", "set", "dev", "br1", "alias", "users-bridge"], check=True)
    sb.run(["ip", "netns", "add", "web"], check=True)
    before = snap(sb)
    apply.up(shop(), sb.runner())
    apply.down(shop(), sb.runner())
    assert snap(sb) == before, diff(before, snap(sb))
    assert state_files(sb) == []


def test_down_goes_on_when_a_reused_bridge_was_deleted(sb):
    """Seen: down failing forever with `ip link set dev br1 alias ...: Cannot find device "br1"`."""
    sb.run(["ip", "link", "add", "br1", "type", "bridge"], check=True)
    before = snap(sb)
    path = _write(sb, "shop.toml", SHOP_TOML)
    assert bridgenet_cli(sb, "up", "-q", "-f", path).exit_code == 0
    sb.run(["ip", "link", "del", "br1"], check=True)  # the user deletes their bridge
    cli = bridgenet_cli(sb, "down", "-f", path)
    assert cli.exit_code == 0, cli.stderr
    assert "already gone" in cli.stderr and "br1" in cli.stderr
    after = snap(sb)
    want = dict(before, host=dict(before["host"], links=[x for x in before["host"]["links"]
                                                          if x["ifname"] != "br1"]))
    assert after == want, diff(want, after)
    assert not Ledger.open(sb.runner().fs_root, "shop").entries


def test_a_bridge_one_network_made_is_not_shared_by_another(sb):
    r = sb.runner()
    apply.up(shop(), r)
    other = Network("other", [Bridge("br1"), Namespace("x"),
                              VethPair("v-x", "eth0", netns="x", master="br1", address="10.88.0.30/24")], tag=True)
    mid = snap(sb)
    with pytest.raises(ConflictError) as ei:
        apply.up(other, r)
    assert "br1" in str(ei.value) and "created by the bridgenet network shop" in str(ei.value)
    assert snap(sb) == mid


def test_two_networks_may_both_use_a_users_bridge(sb):
    sb.run(["ip", "link", "add", "br1", "type", "bridge"], check=True)
    sb.run(["ip", "link", "set", "br1", "up"], check=True)
    before = snap(sb)
    r = sb.runner()
    a = Network("a", [Bridge("br1"), Namespace("x"),
                      VethPair("v-x", "eth0", netns="x", master="br1", address="10.88.0.30/24")], tag=True)
    b = Network("b", [Bridge("br1"), Namespace("y"),
                      VethPair("v-y", "eth0", netns="y", master="br1", address="10.88.0.31/24")], tag=True)
    apply.up(a, r)
    apply.up(b, r)
    assert sb.run(["ping", "-c", "1", "-W", "2", "10.88.0.31"], netns="x").ok
    apply.down(a, r)
    assert sb.run(["ping", "-c", "1", "-W", "2", "10.88.0.31"], netns="y", timeout=10).exit_code in (0, 1)
    assert "br1" in {x["ifname"] for x in snap(sb)["host"]["links"]}
    apply.down(b, r)
    assert snap(sb) == before, diff(before, snap(sb))


# --- identity and converging -------------------------------------------------------------

SHOP_TOML = """\
name = "shop"
bridge = "br1"
gateway = "10.88.0.1/24"

[[containers]]
netns = "web"
address = "10.88.0.10"

[[containers]]
netns = "db"
address = "10.88.0.20"
"""


def _write(sb, name, text, sub="a"):
    return write(sb, name, textwrap.dedent(text), sub=sub)


def test_another_network_with_a_name_already_up_is_refused(sb):
    mine = _write(sb, "shop.toml", SHOP_TOML)
    theirs = _write(sb, "shop.toml", SHOP_TOML.replace('"br1"', '"br2"').replace("10.88.0", "10.89.0"), sub="b")
    assert bridgenet_cli(sb, "up", "-q", "-f", mine).exit_code == 0
    before = snap(sb)
    cli = bridgenet_cli(sb, "up", "-q", "-f", theirs)
    assert cli.exit_code == 1, cli.stderr
    assert "another network named shop up" in cli.stderr
    assert mine in cli.stderr and theirs in cli.stderr and "br2" in cli.stderr
    plan = bridgenet_cli(sb, "plan", "-f", theirs)
    assert plan.exit_code == 1 and "another network named shop" in plan.stderr
    down = bridgenet_cli(sb, "down", "-q", "-f", theirs)  # nor does another file take it down
    assert down.exit_code == 1 and "another network named shop" in down.stderr
    assert snap(sb) == before
    # the lesson's name is the lesson's: a Python network called tutorial is another network
    assert bridgenet_cli(sb, "up", "-q").exit_code == 0
    fake = Network("tutorial", [Bridge("br9")], tag=False)
    with pytest.raises(ConflictError, match="another network named tutorial"):
        apply.up(fake, sb.runner())


def test_a_container_removed_from_the_file_is_planned_and_removed_by_up(sb):
    path = _write(sb, "shop.toml", SHOP_TOML)
    assert bridgenet_cli(sb, "up", "-q", "-f", path).exit_code == 0
    fewer = SHOP_TOML[: SHOP_TOML.index("[[containers]]\nnetns = \"db\"")]
    with open(path, "w") as f:
        f.write(fewer)
    plan = bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", path)
    assert plan.exit_code == 2, plan.stderr
    assert plan.stdout.splitlines() == ["ip link del v-db", "ip netns del db"]
    assert "2 to remove, 0 to run" in plan.stderr
    up = bridgenet_cli(sb, "up", "-f", path)
    assert up.exit_code == 0, up.stderr
    assert "removing what the network no longer has" in up.stderr
    assert "db" not in snap(sb)["netns"]
    assert bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", path).exit_code == 0
    # what is left is exactly the smaller network, and it goes down exactly
    assert bridgenet_cli(sb, "down", "-q", "-f", path).exit_code == 0
    assert state_files(sb) == []
    empty = snap(sb)
    assert empty["netns"] == ["upstream"]


def test_the_lesson_name_is_recorded_with_the_lesson(sb):
    apply.up(bridgenet.tutorial(), sb.runner())
    ledger = Ledger.open(sb.runner().fs_root, "tutorial")
    assert ledger.identity == {"source": "the lesson", "bridges": ["br0"]}


def test_changing_tag_converges_and_down_still_restores_everything(sb):
    """Seen: tag false -> true added tagged copies of the rules that down never removed (and -X then failed)."""
    before = snap(sb)
    path = _write(sb, "shop.toml", "tag = false\naccept_forward = true\nisolate = true\n" + SHOP_TOML)
    assert bridgenet_cli(sb, "up", "-q", "-f", path).exit_code == 0
    _write(sb, "shop.toml", SHOP_TOML)  # the defaults: tagged
    up = bridgenet_cli(sb, "up", "-q", "-f", path)
    assert up.exit_code == 0, up.stderr
    assert sb.run(["ping", "-c", "1", "-W", "2", "198.51.100.1"], netns="web").ok
    down = bridgenet_cli(sb, "down", "-q", "-f", path)
    assert down.exit_code == 0, down.stderr
    assert snap(sb) == before, diff(before, snap(sb))
    assert state_files(sb) == []
