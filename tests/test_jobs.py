"""Parallel jobs in batch mode: which commands go where, and how the script runs them (no privilege)."""

from __future__ import annotations

from collections import Counter

import pytest

from helpers import diff, snap

import bridgenet
from bridgenet import apply
from bridgenet.errors import BatchError, RolledBackError
from bridgenet.batch import BatchRunner, _after_last_mark, plan, render_shell
from bridgenet.commands import ip
from bridgenet.jobs import PARALLEL_MIN, partition
from bridgenet.runners import Result


def net(n: int, **kw) -> bridgenet.Network:
    cs = [bridgenet.Container(f"c{i}", f"10.201.0.{10 + i}") for i in range(n)]
    return bridgenet.bridge_network("many", cs, tag=True, **kw)


def test_few_namespaces_run_in_one_sequence():
    cmds = net(PARALLEL_MIN - 1).up_commands(fast=True)
    assert partition(cmds, 2) is None
    assert all(i.job is None for i in plan(cmds, jobs=2))
    assert partition(net(PARALLEL_MIN).up_commands(fast=True), 1) is None


def test_jobs_split_the_namespaces_and_keep_every_command_once():
    cmds = net(20).up_commands(fast=True)
    p = plan(cmds, jobs=2)
    assert Counter(c for i in p for c in i.commands) == Counter(cmds)
    kinds = [(i.job, i.argv[:2]) for i in p]
    # the host's own first (the bridge, its address), then the two jobs, then sysctl and iptables
    assert kinds[0] == (None, ("ip", "-batch")) and not any(
        c.args[:2] == ("netns", "add") for c in p[0].commands)
    assert [i.argv[0] for i in p if i.job is None][1:] == ["sysctl", "iptables-restore"]
    jobs = {i.job for i in p if i.job is not None}
    assert jobs == {0, 1}
    spaces = {j: {i.argv[2] for i in p if i.job == j and i.kind == "ip-netns"} for j in jobs}
    assert len(spaces[0]) == len(spaces[1]) == 10 and not spaces[0] & spaces[1]
    for j in jobs:
        host = [c for i in p if i.job == j and i.kind == "ip" for c in i.commands]
        # a job creates its own namespaces and veths, and plugs its own ports in last
        assert {c.args[2] for c in host if c.args[:2] == ("netns", "add")} == spaces[j]
        assert {c.effect.peer_netns for c in host if c.args[:2] == ("link", "add")} == spaces[j]
        last = [i for i in p if i.job == j][-1]
        assert last.kind == "ip" and {c.step.split()[0] for c in last.commands} == {"port"}


def test_a_veth_between_two_namespaces_keeps_them_in_one_job():
    base = net(PARALLEL_MIN + 2)
    link = ip("link", "add", "ab", "netns", "c1", "type", "veth", "peer", "name", "ba", "netns", "c6",
              effect=bridgenet.commands.LinkPresent("ab", "veth", "c1", "ba", "c6"))
    job_of, _ = partition([*base.up_commands(fast=True), link], 2)
    assert job_of["c1"] == job_of["c6"]
    # without the link they land in different jobs (so the test above means something)
    job_of, _ = partition(base.up_commands(fast=True), 2)
    assert job_of["c1"] != job_of["c6"] or job_of["c1"] != job_of["c2"]


def test_the_printed_script_runs_jobs_in_background_subshells_and_waits_for_all():
    text = BatchRunner(None, jobs=2).script(net(10).up_commands(fast=True))  # type: ignore[arg-type]
    assert text.count("\n(\n") == 2 and text.count("\n) &\n") == 2
    assert 'wait "$job1" || failed=1\nwait "$job2" || failed=1\n[ -z "$failed" ] || exit 1\n' in text
    assert text.index("exit 1\n") < text.index("sysctl -w")


def test_a_failure_mark_names_the_failing_process_among_interleaved_jobs():
    stderr = (
        "@@bridgenet-batch 0\n@@bridgenet-batch 1\n@@bridgenet-batch 7\n@@bridgenet-batch 2\n"
        "Cannot create namespace file \"/run/netns/c3\": File exists\n"
        "@@bridgenet-batch 8\n@@bridgenet-batch-failed 2 1\n@@bridgenet-batch 9\n"
    )
    assert _after_last_mark(stderr) == (2, 'Cannot create namespace file "/run/netns/c3": File exists\n')
    assert _after_last_mark("@@bridgenet-batch 0\n@@bridgenet-batch 1\nboom\n") == (1, "boom\n")


class FakeRunner:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def exec(self, argv, *, input=None, check=True, timeout=None):  # noqa: ANN001
        self.scripts.append(argv[2] if argv[:2] == ("sh", "-c") else input)
        return Result(tuple(argv), 0, "", "")


@pytest.mark.parametrize("updates", [True, False])
def test_progress_chunks_never_cut_the_jobs_apart(updates):
    cmds = net(30).up_commands(fast=True)
    r = FakeRunner()
    BatchRunner(r, jobs=2).execute(cmds, progress=(lambda d, t: None) if updates else None)
    assert sum(s.count(") &\n") for s in r.scripts) == 2
    assert [s for s in r.scripts if ") &\n" in s][0].count(") &\n") == 2
    if not updates:
        assert len(r.scripts) == 1
    assert render_shell(plan(cmds, jobs=2)).count("wait \"$job") == 2


# --- real: jobs in a sandbox ---------------------------------------------------------------


@pytest.mark.real
def test_a_failure_in_one_job_names_its_process_and_up_rolls_back_everything_but_the_users(sb):
    network = net(20)
    r = sb.runner()
    p = apply.plan(network, r, batch=True)
    assert any(i.job == 1 for i in plan([c for s in p.steps for c in s.run], jobs=2))
    sb.run(["ip", "netns", "add", "c13"])  # the user's, made after the plan: `netns add c13` fails
    before = snap(sb)
    with pytest.raises(RolledBackError) as info:
        apply.up(network, r, batch=True, plan=p)
    cause = info.value.__cause__
    assert isinstance(cause, BatchError)
    assert cause.argv == ("ip", "-batch", "-") and "c13" in cause.stderr and "File exists" in cause.stderr
    assert any(c.args == ("netns", "add", "c13") for c in cause.commands)
    assert snap(sb) == before, diff(before, snap(sb))


@pytest.mark.real
def test_containers_in_different_jobs_reach_each_other(sb):
    network = net(12)
    job_of, _ = partition(network.up_commands(fast=True), 2)
    a, b = "c0", next(n for n, j in job_of.items() if j != job_of["c0"])
    before = snap(sb)
    apply.up(network, sb.runner(), batch=True)
    target = f"10.201.0.{10 + int(b[1:])}"
    sb.run(["ping", "-c", "1", "-W", "2", str(target)], netns=a)
    apply.down(network, sb.runner())
    assert snap(sb) == before, diff(before, snap(sb))
