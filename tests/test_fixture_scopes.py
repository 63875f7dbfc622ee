"""Fixtures of a wider scope on the default sandbox, what ``pytest --fixtures`` says of them, and pytest-xdist.

Each test runs a small project through pytester, as a user would.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

import bridgenet
from bridgenet.network import Container, bridge_network
from bridgenet.testing import factories

SOURCE_ROOT = Path(bridgenet.__file__).resolve().parent.parent
PLUGIN = ["-p", "bridgenet.testing.plugin"]


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the plugin once, by -p, however installed
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SOURCE_ROOT), *([old] if old else [])]))


TRIO = '''
from bridgenet import Container, bridge_network
from bridgenet.testing import factories


def trio():
    return bridge_network("trio", [Container(f"n{i}", f"10.77.0.{i}") for i in (1, 2, 3)],
                          bridge="br-trio", gateway="10.77.0.254/24")
'''

MODULE_SCOPED = TRIO + '''
net = factories.network(trio, scope="module")
run = factories.netns_run(scope="module")
procs = factories.netns_process(scope="module")
reach = factories.reach(scope="module")
nets = factories.network_factory(scope="module")
PIDS = []


def test_one(net, run, procs, reach, nets, bridgenet_sandbox, netns_run, bridgenet_reach):
    PIDS.append(net.sandbox.pid)
    assert bridgenet_sandbox is net.sandbox  # the test follows the module's sandbox
    assert run.sandbox is net.sandbox and procs.sandbox is net.sandbox and nets.sandbox is net.sandbox
    reach.assert_reachable("n1", "n3")
    bridgenet_reach.assert_reachable("n3", "n2")
    assert "10.77.0.2" in netns_run("n2", "ip -br addr", check=True).stdout


def test_two(net, bridgenet_sandbox):
    assert net.sandbox.pid == PIDS[0] == bridgenet_sandbox.pid  # one sandbox for the module


def test_three(bridgenet_sandbox):
    assert bridgenet_sandbox.pid != PIDS[0]  # a test that does not use them: a sandbox of its own
'''


@pytest.mark.real
def test_module_scoped_fixtures_on_the_default_sandbox_share_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_trio=MODULE_SCOPED)
    result = pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3)


OWN_NARROW_SANDBOX = TRIO + '''
bridgenet_sandbox = factories.sandbox(upstream=False, scope="function")
net = factories.network(trio, scope="module")


def test_it(net):
    pass
'''

OWN_WIDE_SANDBOX = TRIO + '''
bridgenet_sandbox = factories.sandbox(scope="module")
net = factories.network(trio, scope="module")


def test_it(net, bridgenet_sandbox):
    assert net.sandbox is bridgenet_sandbox  # the user's own fixture, as before
'''


@pytest.mark.real
def test_a_sandbox_fixture_of_ones_own_is_used_and_a_narrow_one_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_wide=OWN_WIDE_SANDBOX)
    pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.makepyfile(test_wide="")
    pytester.makepyfile(test_narrow=OWN_NARROW_SANDBOX)
    result = pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ScopeMismatch: the module-scoped fixture 'net' is built on the sandbox "
                                 "fixture 'bridgenet_sandbox', which is narrower*factories.sandbox(scope='module')*"])


TWO_SCOPES = TRIO + '''
net = factories.network(trio, scope="module")
run = factories.netns_run(scope="session")


def test_it(net, run):
    pass
'''


@pytest.mark.real
def test_two_wider_fixtures_in_two_sandboxes_are_refused_by_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_two=TWO_SCOPES.replace("def test_it(net, run)", "def test_it(net, run, netns_run)"))
    result = pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*uses net (scope module), run (scope session)*own scope*"
                                 "factories.sandbox(scope=...)*"])


FIXTURES = TRIO + '''
trio_net = factories.network(trio, scope="module")
lesson = factories.network(bridge_network("pair", [Container("a", "10.78.0.2"), Container("b", "10.78.0.3")],
                                          gateway="10.78.0.1/24"))


def test_it():
    pass
'''


def test_fixtures_listing_says_what_network_a_fixture_is(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_listing=FIXTURES)
    result = pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider", "--fixtures", "test_listing.py")
    out = result.stdout.str()
    assert "<function trio" not in out
    result.stdout.fnmatch_lines([
        "trio_net*",
        "*bridgenet network 'trio' (from trio()): 3 namespaces on bridge br-trio, in sandbox fixture "
        "bridgenet_sandbox, scope module*",
    ])
    result.stdout.fnmatch_lines(["lesson*", "*bridgenet network 'pair': 2 namespaces*scope function*"])


def test_a_network_that_cannot_be_built_is_still_listed_by_its_function() -> None:
    def broken():
        raise RuntimeError("no")

    assert factories.describe(broken, sandbox="s", scope="function").startswith(
        "bridgenet network (from test_a_network_that_cannot_be_built_is_still_listed_by_its_function.<locals>"
        ".broken()), in sandbox fixture s, scope function")
    net = bridge_network("one", [Container("a", "10.79.0.2")], gateway="10.79.0.1/24")
    assert factories.describe(net, sandbox="s", scope="class") == (
        "bridgenet network 'one': 1 namespace on bridge br0, in sandbox fixture s, scope class; up as a LiveNetwork.")


SHARED_UNDER_XDIST = '''
import pytest


@pytest.mark.bridgenet(scope="module")
def test_a(bridgenet_sandbox):
    pass


@pytest.mark.bridgenet(scope="module")
def test_b(bridgenet_sandbox):
    pass


def test_c(bridgenet_sandbox):
    pass
'''


@pytest.mark.real
@pytest.mark.parametrize(("dist", "warned"), [("load", True), ("worksteal", True), ("loadscope", False)])
def test_sharing_under_xdist_warns_unless_tests_stay_together(pytester: pytest.Pytester, dist: str,
                                                              warned: bool) -> None:
    pytester.makepyfile(test_shared=SHARED_UNDER_XDIST)
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "xdist", "-p", "no:cacheprovider", "-n", "2",
                                           "--dist", dist, "-rw", timeout=120)
    result.assert_outcomes(passed=3)
    text = result.stdout.str()
    if warned:
        assert result.parseoutcomes()["warnings"] in (1, 2)  # once per session: each worker's
        result.stdout.fnmatch_lines([f"*shares a sandbox per module, but pytest-xdist runs with --dist {dist}*"])
        result.stdout.fnmatch_lines(["*Run with --dist loadscope*"])
    else:
        assert "shares a sandbox" not in text


KEPT = TRIO + '''
net = factories.network(trio, scope="module")


def test_breaks(net):
    assert False, "on purpose"
'''


@pytest.mark.real
def test_a_failed_test_keeps_the_sandbox_of_the_wider_fixture_it_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kept=KEPT)
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", "--bridgenet-keep", timeout=120)
    result.assert_outcomes(failed=1)
    pids = set(re.findall(r"kill -KILL (\d+)", result.stdout.str()))
    try:
        assert len(pids) == 1, result.stdout.str()
        result.stdout.fnmatch_lines(["*- bridgenet: sandbox kept alive -*", "*its namespaces: n1, n2, n3*"])
    finally:
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)  # what the report's `kill -KILL PID` does
