"""Networks of your own: a project fixture made with bridgenet's factories, any network, the marker."""

import json

import pytest

from bridgenet import Container


def test_web_reaches_db(shop_network, shop_reach):
    shop_reach.assert_reachable("web", "db")
    shop_reach.assert_reachable("db", shop_network.gateway)


def test_db_reaches_the_internet_through_nat(shop_network, shop_reach):
    # upstream (198.51.100.1, RFC 5737) stands in for the internet; nothing lies beyond it
    shop_reach.assert_reachable("db", "198.51.100.1")


def test_build_any_network(bridgenet_network, bridgenet_reach, netns_run):
    lab = bridgenet_network.bridge(
        "lab", [Container("a", "10.77.0.2"), Container("b", "10.77.0.3")], bridge="lab0", gateway="10.77.0.1/24"
    )
    bridgenet_reach.assert_reachable("a", "b")
    routes = json.loads(netns_run("a", ["ip", "-json", "route"], check=True).stdout)
    assert {"dst": "default", "gateway": lab.gateway} in [
        {k: r.get(k) for k in ("dst", "gateway")} for r in routes
    ]


@pytest.mark.bridgenet(scope="module")
class TestOneSandboxForTheModule:
    """Both tests share one sandbox; each brings the lesson's network up, and it is taken down after each."""

    def test_first(self, bridgenet_tutorial, bridgenet_reach):
        bridgenet_reach.assert_reachable("container4", "container5")

    def test_second(self, bridgenet_tutorial, bridgenet_reach):
        bridgenet_reach.assert_reachable("container5", "container4")
