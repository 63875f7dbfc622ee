"""Real tier: names (``names.py``) and the sandbox's own /etc (``holder.py``), in sandboxes.

``web`` (10.30.0.10) and ``db`` (10.30.0.11) on br-app: each resolves the
other by name through ``/etc/netns/NETNS/hosts``; an unknown name fails at
once, with and without the upstream; the machine's ``/etc`` is never touched.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from bridgenet import apply, state
from bridgenet.sandbox import Sandbox
from bridgenet.testing.processes import NetnsProcesses, NetnsRunner
from bridgenet.topology import BridgeSpec, Node, topology
from helpers import diff, snap

pytestmark = pytest.mark.real

MACHINE_HAD_ETC_NETNS = os.path.exists("/etc/netns")


def app(**kw):
    return topology("app", bridges=[BridgeSpec("br-app", "10.30.0.1/24")],
                    containers=[Node("web", "10.30.0.10"), Node("db", "10.30.0.11")], **kw)


@pytest.fixture(autouse=True)
def machine_etc_untouched():
    """Whatever a test here does in its sandbox, the machine's /etc/netns stays as it was (absent here)."""
    yield
    assert os.path.exists("/etc/netns") == MACHINE_HAD_ETC_NETNS


def test_web_resolves_db_by_name(sb):
    apply.up(app(), sb.runner())
    for name in ("db", "db.app"):
        r = sb.run(["getent", "hosts", name], netns="web")
        assert r.exit_code == 0 and r.stdout.split()[0] == "10.30.0.11", r.stdout + r.stderr
    assert sb.run(["getent", "hosts", "web"], netns="db").stdout.split()[0] == "10.30.0.10"
    # a process started the fixtures' way sees the files ip netns exec mounts
    seen = NetnsRunner(sb)("web", ["cat", "/etc/hosts", "/etc/resolv.conf"], check=True).stdout
    assert "10.30.0.11\tdb db.app\n" in seen and "nameserver 127.0.0.1\n" in seen


@pytest.mark.parametrize("upstream", [True, False], ids=["upstream", "no-upstream"])
def test_an_unknown_name_fails_at_once(upstream):
    with Sandbox(upstream=upstream) as box:
        apply.up(app(), box.runner())
        for netns in ("web", None):  # a container, and the sandbox host (its own resolv.conf)
            t = time.monotonic()
            r = box.run(["getent", "hosts", "nosuchname"], netns=netns, timeout=15)
            took = time.monotonic() - t
            assert r.exit_code == 2, r.stdout + r.stderr  # getent(1): key not found
            assert took < 1.0, f"an unknown name took {took:.2f} s in {netns or 'the sandbox host'}"


def test_a_stdlib_http_server_starts_quickly_with_an_upstream(sb, tmp_path):
    """http.server calls getfqdn() on bind: with the machine's resolver behind the upstream it took 10 s."""
    apply.up(app(), sb.runner())
    procs = NetnsProcesses(sb, tmp_path)
    try:
        t = time.monotonic()
        procs("web", [sys.executable, "-m", "http.server", "8000"]).wait_for_port(8000, timeout=5)
        assert time.monotonic() - t < 5
        r = sb.run(["python3", "-c", "import urllib.request as u; print(u.urlopen('http://web:8000/').status)"],
                   netns="db", timeout=15)
        assert r.stdout.strip() == "200", r.stdout + r.stderr  # and db reaches it by name
    finally:
        procs.stop_all()


@pytest.mark.parametrize("batch", [False, True], ids=["steps", "batch"])
def test_down_restores_the_snapshot_and_up_twice_runs_nothing(sb, batch):
    r = sb.runner()
    before = snap(sb)
    assert before["etc_netns"] == {}
    apply.up(app(dns=["198.51.100.1"]), r, batch=batch)
    mid = snap(sb)
    assert mid["etc_netns"]["/etc/netns/db/resolv.conf"] == "# bridgenet:app\nnameserver 198.51.100.1\n"
    assert sorted(mid["etc_netns"]) == ["/etc/netns", "/etc/netns/db", "/etc/netns/db/hosts",
                                        "/etc/netns/db/resolv.conf", "/etc/netns/web", "/etc/netns/web/hosts",
                                        "/etc/netns/web/resolv.conf"]
    again = apply.up(app(dns=["198.51.100.1"]), r, batch=batch)
    assert again.ran == ()
    apply.down("app", r)
    after = snap(sb)
    assert after == before, diff(before, after)


def test_a_changed_network_rewrites_the_files_and_down_still_removes_them(sb):
    r = sb.runner()
    before = snap(sb)
    apply.up(app(), r)
    apply.up(app(dns=["198.51.100.1"]), r)
    assert sb.run(["cat", "/etc/netns/web/resolv.conf"]).stdout == "# bridgenet:app\nnameserver 198.51.100.1\n"
    apply.down("app", r)
    assert snap(sb) == before, diff(before, snap(sb))


def test_a_reused_namespace_gets_no_files(sb):
    r = sb.runner()
    sb.run(["ip", "netns", "add", "web"], check=True)
    before = snap(sb)
    apply.up(app(), r)
    tree = snap(sb)["etc_netns"]
    assert "/etc/netns/db/hosts" in tree and not any(p.startswith("/etc/netns/web") for p in tree)
    assert sb.run(["getent", "hosts", "web"], netns="db").stdout.split()[0] == "10.30.0.10"
    apply.down("app", r)
    assert snap(sb) == before, diff(before, snap(sb))


def test_two_networks_share_etc_netns_and_the_last_one_removes_it(sb):
    r = sb.runner()
    before = snap(sb)
    other = topology("other", bridges=[BridgeSpec("br-o", "10.31.0.1/24")], containers=[Node("cache", "10.31.0.10")])
    apply.up(app(), r)
    apply.up(other, r)
    apply.down("app", r)
    tree = snap(sb)["etc_netns"]
    assert sorted(tree) == ["/etc/netns", "/etc/netns/cache", "/etc/netns/cache/hosts",
                            "/etc/netns/cache/resolv.conf"]
    apply.down("other", r)
    assert snap(sb) == before, diff(before, snap(sb))


def test_the_sandbox_writes_etc_on_its_own_overlay(sb):
    """Inside, /etc is an overlay whose writes land on the sandbox's tmpfs; the machine's /etc sees none."""
    with open(f"/proc/{sb.pid}/mountinfo") as f:  # looked at before anything is written (fails safely without it)
        etc = [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == "/etc"]
    assert etc[-1:] == ["overlay"], f"the sandbox's /etc is not an overlay: {etc}"
    sb.run(["mkdir", "/etc/netns"], check=True)
    assert os.path.isdir(f"/proc/{sb.pid}/root/etc/netns") and not os.path.exists("/etc/netns")
    assert "nameserver 127.0.0.1" in sb.run(["cat", "/etc/resolv.conf"], check=True).stdout
    assert state.snapshot(sb.runner())["etc_netns"] == {"/etc/netns": "DIR"}
