"""Real tier: the fixtures build a network beyond one bridge from a file (issue 11).

A pytester project whose conftest makes ``campus = factories.network(lambda:
config.load("campus.toml"))`` (``examples/campus.toml``) and ``spur``, a
second network whose bare link starts in a namespace that is on no bridge
(``d``: the veth's *name* end, ``name_netns``). Its tests ping a -> b through
the router r1 with ``netns_run``, and check that ``LiveNetwork.address``,
``interface`` and ``bridge_port`` agree with what the kernel has in each
namespace: for r1 (two interfaces: the first), for c (only on the bare
link, its peer end), for d (only on the bare link, its name end).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_plugin import Leftovers, plugin_args_here

pytestmark = pytest.mark.real

CAMPUS = Path(__file__).resolve().parent.parent / "examples" / "campus.toml"

SPUR = '''
name = "spur"
[[bridges]]
name = "sp0"
address = "10.40.0.1/24"

[[containers]]
netns = "e"
address = "10.40.0.10"

[[links]]   # d is only here, as the first end: the veth's name end lives in d, its peer in e
ends = [{ netns = "d", name = "to-e", address = "10.98.0.1/30" },
        { netns = "e", name = "to-d", address = "10.98.0.2/30" }]
'''

CONFTEST = '''
from pathlib import Path

from bridgenet import config
from bridgenet.testing import factories

HERE = Path(__file__).resolve().parent


def campus_network():
    """examples/campus.toml: lan0 (a, r1), lan1 (r1, b; MTU 1400), b <-> c bare, r1 routes."""
    return config.load(HERE / "campus.toml")


campus = factories.network(campus_network)
spur = factories.network(lambda: config.load(HERE / "spur.toml"))
'''

TESTS = '''
import json
import re

import pytest


def ping(netns_run, netns, address):
    return netns_run(netns, ["ping", "-c", "1", "-W", "2", address])


def ttl(result):
    return int(re.search(r"ttl=(\\d+)", result.stdout).group(1))


def test_a_reaches_b_through_the_router(campus, netns_run):
    assert campus.address("a") == "10.10.0.10" and campus.address("b") == "10.20.0.10"
    far = ping(netns_run, "a", campus.address("b"))
    assert far.exit_code == 0, far.stdout + far.stderr
    near = ping(netns_run, "a", campus.address("r1"))
    assert near.exit_code == 0, near.stdout + near.stderr
    assert ttl(far) == ttl(near) - 1  # one router in between
    back = ping(netns_run, "b", campus.address("a"))
    assert back.exit_code == 0, back.stdout + back.stderr


def kernel_addresses(netns_run, netns):
    """{ifname: [address/prefix, ...]} inside netns, from ip -json."""
    r = netns_run(netns, ["ip", "-json", "addr", "show"], check=True)
    return {ln["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in ln["addr_info"] if a["family"] == "inet"]
            for ln in json.loads(r.stdout)}


def host_link(netns_run, name):
    return json.loads(netns_run(None, ["ip", "-json", "-d", "link", "show", "dev", name], check=True).stdout)[0]


@pytest.mark.parametrize("netns, itf, address, port", [
    ("a", "eth0", "10.10.0.10", "v-a"),
    ("r1", "eth0", "10.10.0.254", "v-r1"),   # two interfaces: the first (lan0)
    ("b", "eth0", "10.20.0.10", "v-b"),      # on lan1 and on the bare link: lan1's comes first
    ("c", "to-b", "10.99.0.2", None),        # only on the bare link (its peer end)
])
def test_campus_lookups_match_the_kernel(campus, netns_run, netns, itf, address, port):
    assert campus.interface(netns) == itf
    assert campus.address(netns) == address
    assert any(a.startswith(address + "/") for a in kernel_addresses(netns_run, netns)[itf])
    if port is None:
        with pytest.raises(KeyError, match="no bridge port"):
            campus.bridge_port(netns)
    else:
        assert campus.bridge_port(netns) == port
        assert host_link(netns_run, port)["master"] in ("lan0", "lan1")


def test_a_namespace_only_on_the_name_end_of_a_link(spur, netns_run):
    assert "d" in spur.namespaces
    assert spur.interface("d") == "to-e"
    assert spur.address("d") == "10.98.0.1"
    assert kernel_addresses(netns_run, "d")["to-e"] == ["10.98.0.1/30"]
    with pytest.raises(KeyError, match="no bridge port"):
        spur.bridge_port("d")
    assert spur.interface("e") == "eth0" and spur.address("e") == "10.40.0.10"
    r = ping(netns_run, "d", "10.98.0.2")
    assert r.exit_code == 0, r.stdout + r.stderr
'''


def test_the_fixtures_build_a_topology_from_a_file(pytester: pytest.Pytester) -> None:
    leftovers = Leftovers()
    shutil.copy(CAMPUS, pytester.path / "campus.toml")
    (pytester.path / "spur.toml").write_text(SPUR)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_campus=TESTS)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=6)
    leftovers.check()
