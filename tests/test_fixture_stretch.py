"""``factories.stretch``: a network across hosts (sandboxed hosts) built in one test, run through pytester."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bridgenet

SOURCE_ROOT = Path(bridgenet.__file__).resolve().parent.parent
PLUGIN = ["-p", "bridgenet.testing.plugin"]


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SOURCE_ROOT), *([old] if old else [])]))


ACROSS = '''
import os
from bridgenet.hosts import HostSpec
from bridgenet.stretch import Member, stretch
from bridgenet.testing import factories

bridgenet_hosts = factories.hosts(2, scope="module")  # the same hosts for both tests
SEEN = []


def shop(hosts):
    return stretch("shop", gateway="10.44.0.1/24",
                   hosts=[HostSpec(h.name, f"root@{h.address.ip}") for h in hosts],
                   containers=[Member("h1", "web", "10.44.0.10"), Member("h2", "db", "10.44.0.20")])


shop_net = factories.stretch(shop)


def test_ping_across_hosts(shop_net):
    assert [r.host.name for r in shop_net.reports] == ["h1", "h2"]
    assert shop_net.host_of("db").name == "h2" and shop_net.address("db") == "10.44.0.20"
    r = shop_net.ping("web", "db")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert shop_net.ping("db", "10.44.0.1").exit_code == 0  # the gateway, on h1
    assert "web" in shop_net.runner("h1").exec(["ip", "netns", "list"]).stdout
    SEEN.append(shop_net.host("h2").fs_root)
    assert os.path.exists(SEEN[0] + "/run/bridgenet/shop.json")


def test_taken_down_at_teardown(bridgenet_hosts):
    assert bridgenet_hosts[1].fs_root == SEEN[0]  # the same hosts, the network taken down on each
    assert not any(os.path.exists(f"{h.fs_root}/run/netns/{n}") for h in bridgenet_hosts for n in ("web", "db"))
    assert not any(os.path.exists(f"{h.fs_root}/run/bridgenet/shop.json") for h in bridgenet_hosts)
'''


@pytest.mark.real
def test_a_network_across_sandboxed_hosts_in_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_shop_across=ACROSS)  # not test_across: tests/test_across.py is imported in this process
    result = pytester.runpytest_inprocess(*PLUGIN, "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)
