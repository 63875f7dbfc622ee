"""Real tier: the lesson, run in a sandbox, checked the way a person checks it."""

import io
import json
import os
import subprocess
import sys

import pytest

import bridgenet
from bridgenet import checks
from bridgenet.errors import NotInSandboxError
from bridgenet.runners import ShRunner, run_all
from bridgenet.sandbox import Sandbox
from bridgenet.tutorial import run_tutorial
from helpers import diff, snap

pytestmark = pytest.mark.real


def machine_view():
    """Read-only view of this machine's own network, to prove nothing changed."""
    links = sorted(link["ifname"] for link in json.loads(
        subprocess.run(["ip", "-json", "link"], capture_output=True, text=True, check=True).stdout))
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        fwd = f.read().strip()
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    save = subprocess.run(["iptables-save"], capture_output=True, text=True)  # needs root; else empty
    rules = [line for line in save.stdout.splitlines() if not line.startswith("#")]
    return {"links": links, "ip_forward": fwd, "run_netns": netns, "ip_netns_list": listed,
            "run_bridgenet": os.path.exists("/run/bridgenet"), "iptables": rules}


def test_tutorial_runs_every_check_as_the_lesson_says():
    before = machine_view()
    out = io.StringIO()
    code = run_tutorial(out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "✗" not in text
    for claim in [
        "✓ veth4 is LOWERLAYERDOWN",
        "✓ container4 reaches container5",
        "✓ container5 reaches container4",
        "✓ the host cannot reach container4 yet",
        "✓ the host reaches container4",
        "✓ container4 cannot reach the upstream: Network is unreachable",
        "✓ container4 reaches the upstream",
        "✓ the upstream sees the host's uplink address 198.51.100.2, not 10.201.0.4",
        "✓ after taking the network down, the sandbox is as it was before",
    ]:
        assert claim in text
    # every command of the lesson was printed, in order
    printed = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("$ ")]
    assert printed[:23] == [c.shell() for c in bridgenet.tutorial().up_commands()]
    assert machine_view() == before


def test_tutorial_cli_exit_code_and_dry_run():
    r = subprocess.run([sys.executable, "-m", "bridgenet", "tutorial"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    d = subprocess.run([sys.executable, "-m", "bridgenet", "tutorial", "--dry-run"], capture_output=True,
                       text=True, timeout=60)
    assert d.returncode == 0
    assert "? check: container4 reaches container5" in d.stdout
    assert "✓" not in d.stdout


def test_tcp_echo_between_containers_and_from_host(sb):
    net = bridgenet.tutorial()
    run_all(sb.runner(), net.up_commands())
    with checks.tcp_server(sb, "10.201.0.5", 7007, netns="container5") as _:
        r = checks.tcp_request(sb, "10.201.0.5", 7007, "hello from container4", netns="container4")
        assert r.ok, r.output
        assert r.value == "hello from container4"
    with checks.tcp_server(sb, "10.201.0.4", 7008, netns="container4") as _:
        r = checks.tcp_request(sb, "10.201.0.4", 7008, "hello from the host")
        assert r.value == "hello from the host"
    # and nothing answers where no server listens
    r = checks.tcp_request(sb, "10.201.0.5", 7009, netns="container4", timeout=1)
    assert not r.ok
    assert "ConnectionRefusedError" in r.output


def test_nat_is_observed_at_the_upstream_and_in_counters(sb):
    net = bridgenet.tutorial()
    run_all(sb.runner(), net.up_commands())
    with checks.tcp_server(sb, "198.51.100.1", 8080, netns="upstream", mode="whois") as srv:
        r = checks.tcp_request(sb, "198.51.100.1", 8080, netns="container4")
        assert r.value == "198.51.100.2"
        assert srv.seen_peers() == ["198.51.100.2"]
    counters = sb.run(["iptables", "-t", "nat", "-nvxL", "POSTROUTING"]).stdout
    masq = [line for line in counters.splitlines() if "MASQUERADE" in line]
    assert masq and int(masq[0].split()[0]) >= 1, counters
    ct = sb.run(["conntrack", "-L", "-p", "tcp", "--dport", "8080"])
    assert "src=10.201.0.4" in ct.stdout and "dst=198.51.100.2" in ct.stdout, ct.stdout + ct.stderr


def test_up_then_down_leaves_the_sandbox_exactly_as_before(sb):
    net = bridgenet.tutorial()
    before = snap(sb)
    run_all(sb.runner(), net.up_commands())
    during = snap(sb)
    assert during != before
    assert during["ip_forward"] == "1"
    assert sorted(during["netns"]) == ["container4", "container5", "upstream"]
    run_all(sb.runner(), net.down_commands())
    assert snap(sb) == before, diff(before, snap(sb))


def test_the_guard_refuses_real_commands_outside_a_sandbox(tmp_path):
    assert os.environ.get("BRIDGENET_REQUIRE_SANDBOX") == "1"
    marker = tmp_path / "ran"
    with pytest.raises(NotInSandboxError, match="refusing"):
        ShRunner().exec(["touch", str(marker)])
    assert not marker.exists()
    with pytest.raises(NotInSandboxError):
        ShRunner().run(bridgenet.tutorial().up_commands()[0])
    # a closed sandbox's runner is refused too
    s = Sandbox()
    with s:
        runner = s.runner()
        assert runner.exec(["true"]).ok
    with pytest.raises(NotInSandboxError):
        runner.exec(["touch", str(marker)])
    assert not marker.exists()


def test_sandbox_leaves_nothing_behind():
    before = machine_view()
    with Sandbox(upstream=True) as s:
        run_all(s.runner(), bridgenet.tutorial().up_commands())
        server = s.popen(["sleep", "300"], netns="container4")
        pid = s.pid
    assert server.wait(timeout=5) is not None
    assert not os.path.exists(f"/proc/{pid}")
    assert machine_view() == before


def test_up_without_cap_net_admin_stops_before_running_anything(sb):
    """Run in the sandbox with CAP_NET_ADMIN and CAP_SYS_ADMIN dropped from the bounding set."""
    before = snap(sb)
    r = sb.run(["setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-all",
                sys.executable, "-m", "bridgenet", "up"])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "needs CAP_NET_ADMIN" in r.stderr and "Nothing was run" in r.stderr
    assert r.stdout == ""
    assert snap(sb) == before
