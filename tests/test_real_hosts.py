"""The multi-host harness (bridgenet.testing.hosts): hosts in one sandbox, joined by an underlay bridge."""

from __future__ import annotations

import json
import os
import time

import pytest

from bridgenet.errors import ValidationError
from bridgenet.sandbox import Sandbox
from bridgenet.testing import factories
from bridgenet.testing.hosts import Hosts

pytestmark = pytest.mark.real

hosts2 = factories.hosts(2)


def _links(host) -> dict[str, list[str]]:  # noqa: ANN001
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", []) if a["family"] == "inet"]
            for link in json.loads(host.run(["ip", "-json", "addr"]).stdout)}


def test_each_host_has_its_own_links_and_underlay_address(hosts2: Hosts) -> None:
    h1, h2 = hosts2
    assert _links(h1) == {"lo": ["127.0.0.1"], "eth0": ["198.51.100.11"]}
    assert _links(h2) == {"lo": ["127.0.0.1"], "eth0": ["198.51.100.12"]}
    ctl = json.loads(hosts2.sandbox.run(["ip", "-json", "link", "show", "master", "underlay"], check=True).stdout)
    assert sorted(link["ifname"] for link in ctl) == ["u1", "u2"]


def test_hosts_reach_each_other_and_the_controller_over_the_underlay(hosts2: Hosts) -> None:
    h1, h2 = hosts2
    for src, dst in ((h1, h2.address.ip), (h2, h1.address.ip), (h1, hosts2.controller_address.ip)):
        r = src.run(["ping", "-c", "1", "-W", "2", str(dst)], check=False)
        assert r.exit_code == 0, r.stdout + r.stderr


def test_each_host_has_its_own_run_and_etc(hosts2: Hosts) -> None:
    h1, h2 = hosts2
    h1.run(["ip", "netns", "add", "only-on-h1"])
    h1.run(["tee", "/etc/bridgenet-h1"], input="h1\n")
    assert h1.run(["ip", "netns", "list"]).stdout.split()[0] == "only-on-h1"
    assert h2.run(["ip", "netns", "list"]).stdout == ""
    assert h2.run(["cat", "/etc/bridgenet-h1"], check=False).exit_code != 0
    assert not os.path.exists("/etc/bridgenet-h1") and not os.path.exists("/run/netns/only-on-h1")
    assert os.path.exists(f"{h1.fs_root}/run/bridgenet/.sandbox")  # bridgenet run in a host knows it is sandboxed


def test_closing_the_sandbox_ends_the_hosts() -> None:
    with Sandbox() as sb:
        hosts = Hosts(sb, 1)
        pid = hosts[0].pid
        assert hosts[0].is_isolated()
    assert not hosts[0].is_isolated()
    for _ in range(500):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}")


def test_the_underlay_must_not_overlap_the_uplink(sb: Sandbox) -> None:
    with pytest.raises(ValidationError, match="subnet.*uplink"):
        Hosts(sb, 2)
    with Hosts(sb, 1, subnet="203.0.113.0/24") as hosts:
        assert str(hosts[0].address) == "203.0.113.11/24"


def test_bad_host_counts_are_refused_before_anything_runs() -> None:
    for n in (0, 51, True, "2"):
        with pytest.raises(ValidationError, match="n: from 1 to 50"):
            Hosts(None, n)  # type: ignore[arg-type]
