"""Fast tier: ``bridgenet show``'s text and JSON, and what it refuses (no root, nothing run).

The real reads and every drift kind are checked in ``test_real_show.py``.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Interface
from pathlib import Path
from types import SimpleNamespace

import pytest

import bridgenet
from bridgenet.cli import main
from bridgenet.errors import ValidationError
from bridgenet.state import Link
from bridgenet.status import Drift, NetworkStatus, Place, show


def _state(root: Path, name: str, source: str | None) -> None:
    d = root / "run" / "bridgenet"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps({"version": 1, "network": name,
                                                 "identity": {"source": source, "bridges": []}, "entries": []}))


BR0 = Link("br0", "bridge", 3, flags=("BROADCAST", "MULTICAST", "UP", "LOWER_UP"), operstate="UP", mtu=1500,
           addresses=(IPv4Interface("10.201.0.1/24"),))
VETH4 = Link("veth4", "veth", 2, flags=("BROADCAST", "MULTICAST"), operstate="DOWN", mtu=1500,
             addresses=(IPv4Interface("10.201.0.4/24"),))
STATUS = NetworkStatus(
    "tutorial", "the lesson", "/run/bridgenet/tutorial.json",
    places=(Place("host", True, (("br0", BR0), ("brid4", None)), ({"dst": "10.201.0.0/24", "dev": "br0",
                                                                    "protocol": "kernel"},)),
            Place("container4", True, (("veth4", VETH4),), ()),
            Place("container5", False, (("veth5", None),), ())),
    bridges=(("br0", ()),),
    sysctls=(("net.ipv4.ip_forward", None, "0", "1"),),
    rules=((4, "nat", "POSTROUTING", None, ("-s", "10.201.0.0/24", "-j", "MASQUERADE"), True),),
    drift=(Drift("missing", "host", "link brid4", "a veth", "ip link add brid4 type veth peer name veth4"),
           Drift("changed", "container4", "link veth4", "down (wanted up)",
                 "ip netns exec container4 ip link set dev veth4 up"),
           Drift("missing", "container5", "namespace container5", "", "ip netns add container5"),
           Drift("changed", "host", "net.ipv4.ip_forward", "0 (wanted 1)", "sysctl -w net.ipv4.ip_forward=1")))

TEXT = """\
network tutorial (the lesson; state file /run/bridgenet/tutorial.json)
  host
    br0           bridge   UP  mtu 1500  10.201.0.1/24  ports: none
    brid4         MISSING
    route 10.201.0.0/24 dev br0
    net.ipv4.ip_forward = 0
  container4
    veth4         veth     DOWN  mtu 1500  10.201.0.4/24
  container5  MISSING
  rules
    ✓ iptables -t nat POSTROUTING -s 10.201.0.0/24 -j MASQUERADE
  drift (4):
    missing  host: link brid4: a veth
             fix: ip link add brid4 type veth peer name veth4
    changed  container4: link veth4: down (wanted up)
             fix: ip netns exec container4 ip link set dev veth4 up
    missing  container5: namespace container5
             fix: ip netns add container5
    changed  host: net.ipv4.ip_forward: 0 (wanted 1)
             fix: sysctl -w net.ipv4.ip_forward=1
"""


def test_the_text_of_a_drifted_network():
    assert STATUS.render() == TEXT
    assert STATUS.drifted


def test_the_json_of_a_drifted_network():
    d = STATUS.to_dict()
    assert list(d) == ["network", "source", "state_file", "compared", "drifted", "host", "namespaces", "bridges",
                       "sysctls", "rules", "ports", "files", "drift", "warnings"]
    assert d["host"]["links"][0] == {
        "ifname": "br0", "present": True, "info_kind": "bridge", "operstate": "UP",
        "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "carrier": True, "mtu": 1500, "master": None,
        "addr_info": [{"family": "inet", "local": "10.201.0.1", "prefixlen": 24}]}
    assert d["host"]["links"][1] == {"ifname": "brid4", "present": False}
    assert d["namespaces"][1] == {"name": "container5", "present": False,
                                  "links": [{"ifname": "veth5", "present": False}], "routes": []}
    assert d["rules"] == [{"family": "inet", "table": "nat", "chain": "POSTROUTING", "netns": None,
                           "rule": ["-s", "10.201.0.0/24", "-j", "MASQUERADE"], "present": True}]
    assert d["drift"][1] == {"kind": "changed", "where": "container4", "what": "link veth4",
                             "detail": "down (wanted up)", "fix": "ip netns exec container4 ip link set dev veth4 up"}
    json.dumps(d)  # all of it is JSON


def test_listing_names_a_network_it_cannot_read_back(tmp_path):
    _state(tmp_path, "py", None)
    runner = SimpleNamespace(fs_root=str(tmp_path))  # nothing is read for a network not compared
    (st,) = show(runner=runner)
    assert (st.network, st.compared, st.drifted) == ("py", False, False)
    assert "built from Python" in st.warnings[0]
    assert st.render() == ("network py (built in Python; state file /run/bridgenet/py.json)\n"
                           f"  warning: {st.warnings[0]}\n")
    with pytest.raises(ValidationError, match="pass the Network to bridgenet.show"):
        show(["py"], runner=runner)
    with pytest.raises(ValidationError, match=r"known: py"):
        show(["nope"], runner=runner)
    assert show(runner=SimpleNamespace(fs_root=str(tmp_path / "empty"))) == []


def test_bridgenet_show_is_the_function():
    import bridgenet.status  # noqa: F401  (the module is not bridgenet.show)

    assert bridgenet.show is show


def test_cli_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["show", "-f", "x.toml", "tutorial"])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err
