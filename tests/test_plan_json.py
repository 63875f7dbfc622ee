"""Fast tier: the shape of ``bridgenet plan --json`` (Plan.to_dict), made from a state read by hand."""

import json
from pathlib import Path

from bridgenet import Container, bridge_network, cli
from bridgenet.config import load
from bridgenet.ledger import Entry
from bridgenet.plan import Plan, PlannedStep
from bridgenet.state import EMPTY_NS, LiveState

EXAMPLES = Path(__file__).parent.parent / "examples"
EMPTY = LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {}, {})


def test_each_command_has_its_argv_step_and_netns_in_the_order_up_runs_them():
    net = bridge_network("pj", [Container("pj1", "10.71.0.2")], bridge="pjbr", gateway="10.71.0.1/24")
    steps = net.steps()
    plan = Plan(net, tuple(PlannedStep(s, s.up, True, s.down) for s in steps), EMPTY, ("a warning",))
    doc = json.loads(json.dumps(plan.to_dict()))
    assert set(doc) == {"network", "empty", "summary", "warnings", "commands"}
    assert doc["network"] == "pj" and doc["empty"] is False and doc["warnings"] == ["a warning"]
    every = [c for s in steps for c in s.up]
    assert doc["summary"] == {"to_remove": 0, "to_run": len(every), "in_place": 0}
    assert [c["argv"] for c in doc["commands"]] == [list(c.argv) for c in every]
    assert [c["shell"] for c in doc["commands"]] == [c.shell() for c in every]
    assert {c["step"] for c in doc["commands"]} == {s.key for s in steps}
    assert all(set(c) == {"argv", "step", "netns", "input", "shell", "removal"} for c in doc["commands"])
    inside = [c for c in doc["commands"] if c["netns"] is not None]
    assert inside and all(c["argv"][:4] == ["ip", "netns", "exec", c["netns"]] for c in inside)
    assert not any(c["removal"] for c in doc["commands"])


def test_the_shell_lines_are_what_the_dry_run_prints(capsys):
    net = load(EXAMPLES / "campus.toml")
    plan = Plan(net, tuple(PlannedStep(s, s.up, True, s.down) for s in net.steps()), EMPTY)
    assert cli.main(["up", "--dry-run", "-f", str(EXAMPLES / "campus.toml")]) == 0
    assert "".join(c["shell"] + "\n" for c in plan.to_dict()["commands"]) == capsys.readouterr().out


def test_removals_come_first_and_an_empty_plan_says_so():
    net = bridge_network("pj", [Container("pj1", "10.71.0.2")], bridge="pjbr", gateway="10.71.0.1/24")
    steps = net.steps()
    gone = steps[-1].down
    orphan = Entry("netns:old", None, True, "done", list(gone))
    plan = Plan(net, tuple(PlannedStep(s, (), False, ()) for s in steps), EMPTY, (), (orphan,), tuple(gone))
    doc = plan.to_dict()
    assert doc["empty"] is False
    assert doc["summary"] == {"to_remove": len(gone), "to_run": 0, "in_place": sum(len(s.up) for s in steps)}
    assert [c["removal"] for c in doc["commands"]] == [True] * len(gone)
    quiet = Plan(net, tuple(PlannedStep(s, (), False, ()) for s in steps), EMPTY).to_dict()
    assert quiet["empty"] is True and quiet["commands"] == [] and quiet["summary"]["to_run"] == 0
