"""Real tier: ``bridgenet plan --json`` in a sandbox: on an empty host, once up, after drift, after a removal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridgenet import config
from helpers import bridgenet_cli

pytestmark = pytest.mark.real

SERVICES = Path(__file__).resolve().parent.parent / "examples" / "services.toml"


def plan_json(sb, *argv):
    r = bridgenet_cli(sb, "plan", "--json", "--detailed-exitcode", *argv)
    assert r.exit_code in (0, 2), r.stderr
    doc = json.loads(r.stdout)
    assert (r.exit_code == 2) == (not doc["empty"])  # --detailed-exitcode keeps its meaning
    return doc


@pytest.mark.parametrize("batch", [False, True], ids=["steps", "batch"])
def test_plan_json_on_an_empty_host_is_the_whole_transcript_in_its_order(sb, batch):
    net = config.load(SERVICES)
    doc = plan_json(sb, "-f", str(SERVICES), *(["--batch"] if batch else []))
    wanted = net.up_commands(fast=batch)
    assert [c["argv"] for c in doc["commands"]] == [list(c.argv) for c in wanted]
    assert [c["step"] for c in doc["commands"]] == [c.step for c in wanted]
    assert doc["summary"] == {"to_remove": 0, "to_run": len(wanted), "in_place": 0}
    assert doc["network"] == "services" and not any(c["removal"] for c in doc["commands"])
    assert any("accept_ra" in w for w in doc["warnings"])  # IPv6 forwarding's warning, as plan prints it


def test_plan_json_once_up_then_after_drift_then_after_a_container_is_dropped(sb, tmp_path):
    text = SERVICES.read_text()
    file = tmp_path / "services.toml"  # a network is its file: the same path, edited below
    file.write_text(text)
    r = bridgenet_cli(sb, "up", "-q", "-f", str(file))
    assert r.exit_code == 0, r.stderr
    total = len(config.load(SERVICES).up_commands())
    doc = plan_json(sb, "-f", str(file))
    assert doc["empty"] and doc["commands"] == [] and doc["summary"] == {"to_remove": 0, "to_run": 0,
                                                                         "in_place": total}
    sb.run(["ip", "netns", "exec", "db", "ip", "link", "set", "eth0", "down"])
    doc = plan_json(sb, "-f", str(file))
    # a link set down loses its routes and IPv6 addresses (KERNEL-NOTES): those come back too, in step order
    (back,) = [c for c in doc["commands"] if c["argv"][-2:] == ["eth0", "up"]]
    assert back["argv"] == ["ip", "netns", "exec", "db", "ip", "link", "set", "dev", "eth0", "up"]
    assert back["netns"] == "db" and back["step"] and all(c["netns"] == "db" for c in doc["commands"])
    assert doc["summary"]["to_run"] == len(doc["commands"]) and doc["summary"]["to_remove"] == 0
    assert bridgenet_cli(sb, "up", "-q", "-f", str(file)).exit_code == 0
    file.write_text(text[:text.index('[[containers]]\nnetns = "cache"')])
    doc = plan_json(sb, "-f", str(file))
    removals = [c for c in doc["commands"] if c["removal"]]
    assert removals and doc["commands"][:len(removals)] == removals
    rest = doc["commands"][len(removals):]
    assert doc["summary"]["to_remove"] == len(removals) and doc["summary"]["to_run"] == len(rest)
    # what is left to run: the others' /etc/netns/NS/hosts, which named cache
    assert sorted(c["argv"][1] for c in rest) == ["/etc/netns/db/hosts", "/etc/netns/web/hosts"], rest
    assert ["ip", "netns", "del", "cache"] in [c["argv"] for c in removals]
    assert bridgenet_cli(sb, "down", "-q", "-f", str(file)).exit_code == 0
