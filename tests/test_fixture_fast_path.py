"""The fixtures' fast path: a brand-new sandbox is planned for once, and closed without waiting.

A sandbox is *pristine* while nothing can have run in it; every pristine
sandbox made with the same arguments is in the same state, so the plan made
in the first one is reused in the next ones (one process to bring the lesson
up instead of three). Whatever was done to a sandbox first, it is planned
for as ``apply.up`` always plans.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from bridgenet import apply, runners
from bridgenet.errors import SandboxError
from bridgenet.testing.networks import FreshPlans, NetworkFactory
from bridgenet.sandbox import Sandbox
from bridgenet.tutorial import tutorial

from helpers import diff, snap

pytestmark = pytest.mark.real


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The argv of every process bridgenet's runners start (the real ones still run)."""
    seen: list[tuple[str, ...]] = []
    real = runners.ShRunner.exec

    def spy(self, argv, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(tuple(argv))
        return real(self, argv, **kwargs)

    monkeypatch.setattr(runners.ShRunner, "exec", spy)
    return seen


def state_file(sb: Sandbox, name: str = "tutorial") -> dict:
    with open(f"/proc/{sb.pid}/root/run/bridgenet/{name}.json") as f:
        return json.load(f)


@pytest.mark.parametrize("use", ["run", "runner", "popen", "nsenter_prefix", "enter_command", "pid",
                                 "kill_command"])
def test_a_sandbox_is_pristine_until_a_way_to_run_something_in_it_is_handed_out(use: str) -> None:
    with Sandbox() as sb:
        assert sb.pristine
        if use == "run":
            sb.run(["true"])
        elif use == "popen":
            sb.popen(["true"]).wait()
        elif use in ("enter_command", "pid", "kill_command"):
            assert getattr(sb, use)
        else:
            getattr(sb, use)()
        assert not sb.pristine
    assert not sb.pristine  # closed


def test_a_change_made_by_hand_is_seen_without_starting_a_process() -> None:
    with Sandbox(upstream=True) as sb:
        assert sb.pristine
        # a link added behind the sandbox's back (nsenter by hand, not through the sandbox's API)
        subprocess.run([*sb._nsenter_prefix(), "ip", "link", "add", "br9", "type", "bridge"], check=True)
        assert not sb.pristine
    with Sandbox() as sb:
        open(f"/proc/{sb._pid}/root/run/netns/by-hand", "x").close()  # (reading sb.pid would tell it)
        assert not sb.pristine


def test_a_pristine_sandbox_takes_over_another_and_leaves_it_its_own_holder() -> None:
    plans = FreshPlans()
    with Sandbox() as mine, Sandbox() as other, Sandbox(upstream=True) as unlike:
        live = NetworkFactory(other, plans=plans)(tutorial())
        built, theirs = snap(other), other._pid
        with pytest.raises(SandboxError, match="cannot take over"):
            mine.take_over(unlike)  # another kind
        with pytest.raises(SandboxError, match="cannot take over"):
            other.take_over(mine)  # not pristine
        assert mine.pristine
        mine.take_over(other)
        assert mine.pid == theirs and snap(mine) == built and state_file(mine)
        assert other.pristine and other.pid != theirs
        assert other.runner().sandbox is other and mine.runner().sandbox is mine  # each guard checks its own
        live.sandbox = mine
        live.down()
        assert mine.run(["ip", "-br", "link"]).stdout.split()[0] == "lo"


def test_a_second_new_sandbox_is_brought_up_with_one_process_and_ends_the_same(processes: list) -> None:
    plans = FreshPlans()
    net = tutorial()
    with Sandbox() as first:
        plans.up(net, first)
        built, recorded = snap(first), state_file(first)
    with Sandbox() as fresh:
        empty = snap(fresh)
    with Sandbox() as sb:
        processes.clear()
        live = NetworkFactory(sb, plans=plans)(net)
        assert [argv[:2] for argv in processes] == [("sh", "-c")], processes  # the batch, nothing read
        assert live.report.ran and live.report.in_place == 0
        assert snap(sb) == built, diff(built, snap(sb))
        assert state_file(sb) == recorded  # the same undo: ip_forward back to 0, the objects deleted
        live.down()
        assert snap(sb) == empty, diff(empty, snap(sb))
        assert os.listdir(f"/proc/{sb.pid}/root/run/bridgenet") == [".sandbox"]


def test_a_sandbox_changed_first_is_planned_for_as_usual() -> None:
    plans = FreshPlans()
    net = tutorial()
    with Sandbox() as first:
        plans.up(net, first)
    with Sandbox() as sb:
        sb.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)  # someone's bridge br0
        report = plans.up(net, sb)  # a stored plan would run `ip link add br0` again: File exists
        assert report.in_place >= 1
        assert not any(c.argv[:3] == ("ip", "link", "add") and "br0" in c.argv[3:4] for c in report.ran)
        apply.down(net, sb.runner(), batch=True)
        assert "br0" in sb.run(["ip", "-br", "link"]).stdout  # the user's bridge stays


def test_the_upstream_comes_ready_with_distinct_ifindexes_on_its_uplink() -> None:
    with Sandbox(upstream=True) as sb:
        assert sb.pristine  # made by the holder itself, before start() returned
        host = json.loads(sb.run(["ip", "-json", "link", "show", "dev", "uplink"], check=True).stdout)[0]
        peer = json.loads(sb.run(["ip", "-json", "link", "show", "dev", "eth0"], netns="upstream",
                                 check=True).stdout)[0]
        # equal ifindexes on the two ends make the kernel delay the link-up (KERNEL-NOTES)
        assert host["ifindex"] != peer["ifindex"]
        assert host["operstate"] == "UP" and "UP" in peer["flags"]
        assert sb.run(["ip", "route", "show", "default"]).stdout.startswith("default via 198.51.100.1 dev uplink")
        assert sb.run(["ping", "-c", "1", "-W", "1", "198.51.100.1"]).exit_code == 0


def test_close_without_waiting_ends_the_sandbox_all_the_same() -> None:
    sb = Sandbox().start()
    server = sb.popen(["sleep", "300"])
    pid = sb.pid
    sb.close(wait=False)
    assert not sb.alive
    assert server.wait(timeout=5) is not None  # the kernel ended it
    sb.wait_closed()
    assert sb.ended and not os.path.exists(f"/proc/{pid}")


PRISTINE_FILE = '''
import pytest

@pytest.fixture
def users_bridge(bridgenet_sandbox):
    bridgenet_sandbox.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)


def test_first(bridgenet_tutorial, netns_run):
    assert netns_run("container4", ["ping", "-c", "1", "-W", "2", "10.201.0.5"]).exit_code == 0


def test_after_a_fixture_of_its_own(users_bridge, bridgenet_tutorial, netns_run):
    # the lesson's network reuses the bridge this test made first
    assert netns_run("container4", ["ping", "-c", "1", "-W", "2", "10.201.0.5"]).exit_code == 0


def test_again(bridgenet_tutorial, bridgenet_sandbox, netns_run):
    assert netns_run("container5", ["ping", "-c", "1", "-W", "2", "10.201.0.4"]).exit_code == 0
'''


SPARE_FILE = '''
import os
import time

import pytest

SEEN = {}


def boot_ticks():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def started(pid):
    """When the process started, in clock ticks since boot (proc(5), /proc/PID/stat field 22)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def test_a(bridgenet_sandbox):
    SEEN["a"] = bridgenet_sandbox.pid
    time.sleep(0.3)
    SEEN["a ended at"] = boot_ticks()


def test_b(bridgenet_sandbox):
    assert bridgenet_sandbox.pristine and bridgenet_sandbox.pid != SEEN["a"]
    # this sandbox was launched while test_a ran (and got ready meanwhile), not when test_b asked
    # (the launch does not wait for the sandbox's process, which a loaded machine may start a few ticks later)
    assert started(bridgenet_sandbox.pid) <= SEEN["a ended at"]


@pytest.mark.bridgenet(upstream=True)
def test_c(bridgenet_sandbox, bridgenet_reach):
    assert bridgenet_sandbox.upstream and bridgenet_sandbox.pristine  # not the spare: another kind
    bridgenet_reach.assert_reachable(None, "198.51.100.1")
'''


def test_the_next_tests_sandbox_is_made_while_a_test_runs(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from test_plugin import Leftovers, RUN_MARK, plugin_args_here

    watch = Leftovers()
    monkeypatch.setenv(RUN_MARK, watch.mark)
    pytester.makepyfile(test_spare=SPARE_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    watch.check()  # the last spare too is gone after the session


SHARED_FILE = '''
import pytest
from bridgenet import state

pytestmark = pytest.mark.bridgenet(scope="module", upstream=True)
SNAPSHOTS = []


def test_before(bridgenet_sandbox):
    SNAPSHOTS.append(state.snapshot(bridgenet_sandbox.runner()))


def test_lesson(bridgenet_tutorial, bridgenet_reach):
    bridgenet_reach.assert_reachable("container4", "198.51.100.1")


def test_lesson_by_the_factory(bridgenet_network, bridgenet_reach):
    bridgenet_network.tutorial()
    bridgenet_reach.assert_reachable("container5", "container4")


def test_after(bridgenet_sandbox):
    # the shared sandbox lives on: the networks of the tests before were taken down exactly
    assert state.snapshot(bridgenet_sandbox.runner()) == SNAPSHOTS[0]
    assert bridgenet_sandbox.run(["ls", "-A", "/run/bridgenet"]).stdout.split() == [".sandbox"]
'''


def test_a_shared_sandbox_is_left_exactly_as_before_after_each_test(pytester: pytest.Pytester) -> None:
    from test_plugin import plugin_args_here

    pytester.makepyfile(test_shared=SHARED_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_plugin_plans_once_and_still_meets_what_a_test_did_first(pytester: pytest.Pytester) -> None:
    from test_plugin import plugin_args_here

    pytester.makepyfile(test_pristine=PRISTINE_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


PREPARED_FILE = '''
import json
import os
import time

import pytest
from bridgenet import Container
from helpers import diff, snap

SEEN = {}
PAUSE = 0.5  # while a test runs, the next one's sandbox is made and the lesson brought up in it


def state_file(sb):
    with open(f"/proc/{sb.pid}/root/run/bridgenet/tutorial.json") as f:
        return json.load(f)


def built_at(sb):
    return os.stat(f"/proc/{sb.pid}/root/run/bridgenet/tutorial.json").st_mtime


def pause():
    SEEN["paused at"] = time.time()
    time.sleep(PAUSE)


def same_as_first(live, netns_run):
    sb = live.sandbox
    built, recorded, report, pid = SEEN["first"]
    assert sb.pid != pid
    assert snap(sb) == built, diff(built, snap(sb))
    assert state_file(sb) == recorded and live.report == report
    assert netns_run("container4", ["ping", "-c", "1", "-W", "2", "10.201.0.5"]).exit_code == 0


def test_another_network(bridgenet_network, bridgenet_sandbox):
    bridgenet_network.bridge("other", [Container("web", "10.88.0.10")], bridge="shop0", gateway="10.88.0.1/24")
    assert [line.split()[0] for line in bridgenet_sandbox.run(["ip", "netns"]).stdout.splitlines()] == ["web"]
    assert "br0" not in bridgenet_sandbox.run(["ip", "-br", "link"]).stdout


def test_first(bridgenet_tutorial):
    sb = bridgenet_tutorial.sandbox
    SEEN["first"] = (snap(sb), state_file(sb), bridgenet_tutorial.report, sb.pid)


def test_second(bridgenet_tutorial, netns_run):
    # the second in a row: the next ones are prepared from now on
    same_as_first(bridgenet_tutorial, netns_run)
    pause()


def test_third(bridgenet_tutorial, netns_run):
    assert built_at(bridgenet_tutorial.sandbox) < SEEN["paused at"] + PAUSE  # ready before it was asked for
    same_as_first(bridgenet_tutorial, netns_run)
    pause()


def test_fourth(bridgenet_tutorial, bridgenet_sandbox, netns_run):
    assert built_at(bridgenet_sandbox) < SEEN["paused at"] + PAUSE
    same_as_first(bridgenet_tutorial, netns_run)


def test_another_network_again(bridgenet_network, bridgenet_sandbox):
    test_another_network(bridgenet_network, bridgenet_sandbox)  # planned for before: offered the lesson's


def test_bare(bridgenet_sandbox):
    assert bridgenet_sandbox.pristine  # nothing of the lesson in it
    assert bridgenet_sandbox.run(["ip", "-br", "link"]).stdout.split()[:1] == ["lo"]
    assert bridgenet_sandbox.run(["ip", "netns"]).stdout == ""


def test_again_after_a_bare_one(bridgenet_tutorial, netns_run):
    same_as_first(bridgenet_tutorial, netns_run)


@pytest.mark.bridgenet(upstream=True)
def test_with_an_upstream(bridgenet_tutorial, bridgenet_reach):
    assert bridgenet_tutorial.sandbox.upstream
    bridgenet_reach.assert_reachable("container4", "198.51.100.1")
'''


def test_the_next_tests_network_is_brought_up_while_a_test_runs(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from test_plugin import Leftovers, RUN_MARK, plugin_args_here

    watch = Leftovers()
    monkeypatch.setenv(RUN_MARK, watch.mark)
    pytester.makepyfile(test_prepared=PREPARED_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)
    watch.check()  # every sandbox prepared is gone after the session


BROKEN_FILE = '''
import os
import time

import pytest
from bridgenet.testing import networks

SEEN = {}


def built_at(sb):
    return os.stat(f"/proc/{sb.pid}/root/run/bridgenet/tutorial.json").st_mtime


@pytest.fixture
def broken_in_the_background(monkeypatch):
    def fail(network, plan, sandbox):
        raise RuntimeError("the prepared sandbox broke")

    monkeypatch.setattr(networks, "_up_in", fail)  # what test_second prepares for the next tests


def test_first(bridgenet_tutorial):
    pass


def test_second(broken_in_the_background, bridgenet_tutorial):
    SEEN["ended"] = time.time()
    time.sleep(0.3)


def test_third(bridgenet_tutorial, netns_run):
    assert built_at(bridgenet_tutorial.sandbox) > SEEN["ended"] + 0.3  # brought up here, the usual way
    assert netns_run("container4", ["ping", "-c", "1", "-W", "2", "10.201.0.5"]).exit_code == 0
    SEEN["ended"] = time.time()
    time.sleep(0.5)


def test_fourth(bridgenet_tutorial, netns_run):
    assert built_at(bridgenet_tutorial.sandbox) < SEEN["ended"] + 0.5  # prepared again
    assert netns_run("container5", ["ping", "-c", "1", "-W", "2", "10.201.0.4"]).exit_code == 0
'''


def test_a_sandbox_that_broke_while_prepared_is_replaced_by_the_usual_way(pytester: pytest.Pytester,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from test_plugin import Leftovers, RUN_MARK, plugin_args_here

    watch = Leftovers()
    monkeypatch.setenv(RUN_MARK, watch.mark)
    pytester.makepyfile(test_broken=BROKEN_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    watch.check()
