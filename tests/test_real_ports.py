"""Real tier: published ports (issue 12, "Published ports"), in sandboxes.

The network ``shop``: br1 at 10.88.0.1/24 with ``web`` (10.88.0.10, which
publishes ``8080:80``, ``127.0.0.1:8081:80`` and ``5353:53/udp``) and its
neighbour ``db`` (10.88.0.20). The sandbox host's uplink is 198.51.100.2;
the ``upstream`` namespace (198.51.100.1) plays another machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from bridgenet import apply, checks, config, leftovers
from bridgenet.errors import ConflictError, RolledBackError
from bridgenet.ports import DNAT_CHAIN, INPUT_CHAIN
from helpers import diff, snap

pytestmark = pytest.mark.real

UPSTREAM, UPLINK, GATEWAY = "198.51.100.1", "198.51.100.2", "10.88.0.1"

SHOP = '''
name = "shop"
bridge = "br1"
gateway = "10.88.0.1/24"

[[containers]]
netns = "web"
address = "10.88.0.10"
ports = ["8080:80", "127.0.0.1:8081:80", "5353:53/udp"]

[[containers]]
netns = "db"
address = "10.88.0.20"
'''


def other(ports: str) -> str:
    return f'''
name = "shop2"
bridge = "br2"
gateway = "10.89.0.1/24"

[[containers]]
netns = "api"
address = "10.89.0.10"
ports = {ports}
'''


def load(text: str):
    return config.from_dict(tomllib.loads(text))


UDP_ECHO = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53)); print("ready", flush=True)
while True:
    d, peer = s.recvfrom(2048); s.sendto(d + b" from " + peer[0].encode(), peer)
'''

UDP_ASK = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"ping", (sys.argv[1], int(sys.argv[2]))); print(s.recvfrom(2048)[0].decode())
'''

UDP_SINK = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 9001)); print("ready", flush=True)
s.settimeout(1.5)
try:
    d, peer = s.recvfrom(2048); print("got", peer[0], flush=True)
except OSError:
    print("nothing", flush=True)
'''

UDP_SEND = r'''
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3): s.sendto(b"hi", ("127.0.0.1", 9001))
'''


@pytest.fixture
def shop(sb):
    net = load(SHOP)
    before = snap(sb)
    apply.up(net, sb.runner())
    yield net, before


def whois(sb, netns, address, port):
    """The peer address the server in web saw (its reply), or None when the connection failed."""
    r = checks.tcp_request(sb, address, port, netns=netns, timeout=2)
    return r.value if r.ok else None


def test_published_tcp_from_the_upstream_the_host_and_by_hairpin(sb, shop):
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="web", mode="whois"):
        assert whois(sb, "upstream", UPLINK, 8080) == UPSTREAM  # the server sees the client's real address
        assert whois(sb, None, UPLINK, 8080) == UPLINK  # the host itself, on its uplink address
        assert whois(sb, None, GATEWAY, 8080) == GATEWAY  # ... and on its gateway address
        assert whois(sb, "db", GATEWAY, 8080) == "10.88.0.20"  # a neighbour: hairpin, its own address
        assert whois(sb, "db", UPLINK, 8080) == "10.88.0.20"
        assert whois(sb, "web", UPLINK, 8080) == GATEWAY  # itself: hairpin, masqueraded as the bridge
        assert whois(sb, "web", GATEWAY, 8080) == GATEWAY
        assert whois(sb, "upstream", UPLINK, 8090) is None  # nothing else is published
        # What makes the self case work: without hairpin mode on its port, it times out (measured).
        sb.run(["bridge", "link", "set", "dev", "v-web", "hairpin", "off"], check=True)
        assert whois(sb, "web", UPLINK, 8080) is None
        assert whois(sb, "db", GATEWAY, 8080) == "10.88.0.20"  # neighbours need no hairpin


def test_published_udp_answers_a_datagram(sb, shop):
    server = sb.popen([sys.executable, "-c", UDP_ECHO], netns="web", stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        r = sb.run([sys.executable, "-c", UDP_ASK, UPLINK, "5353"], netns="upstream", timeout=20)
        assert (r.exit_code, r.stdout.strip()) == (0, f"ping from {UPSTREAM}"), r.stderr
        r = sb.run([sys.executable, "-c", UDP_ASK, UPLINK, "8080"], netns="upstream", timeout=20)
        assert r.exit_code != 0  # 8080 is published for tcp only
    finally:
        sb.terminate(server)


def test_a_port_on_127_0_0_1_is_for_the_host_only(sb, shop):
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="web", mode="whois"):
        assert whois(sb, None, "127.0.0.1", 8081) == GATEWAY  # loopback source masqueraded to br1's address
        assert whois(sb, "db", GATEWAY, 8081) is None
        assert whois(sb, "db", UPLINK, 8081) is None
        assert whois(sb, "upstream", UPLINK, 8081) is None
        assert whois(sb, None, UPLINK, 8081) is None  # bound to 127.0.0.1 only
        # What it takes: route_localnet on the bridge (else the loopback-sourced packet is a martian).
        sb.run(["sysctl", "-qw", "net.ipv4.conf.br1.route_localnet=0"], check=True)
        assert whois(sb, None, "127.0.0.1", 8081) is None


def test_route_localnet_does_not_open_the_hosts_loopback_to_a_neighbour(sb, shop):
    """CVE-2020-8558: with route_localnet on br1, a neighbour that routes 127.0.0.1 to the host reaches
    the host's 127.0.0.1-bound services; the BRIDGENET-INPUT guard drops that (without it: reached)."""
    for argv in (["ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local"],
                 ["ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"],
                 ["ip", "route", "add", "127.0.0.1/32", "via", GATEWAY, "dev", "eth0"]):
        sb.run(argv, netns="db", check=True)

    def reached() -> str:
        sink = sb.popen([sys.executable, "-c", UDP_SINK], stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == "ready"
        sb.run([sys.executable, "-c", UDP_SEND], netns="db", check=True)
        out = sink.stdout.read().strip()
        sink.wait(timeout=10)
        return out

    assert reached() == "nothing"
    sb.run(["iptables", "-F", INPUT_CHAIN], check=True)  # the guard gone, the hole is there
    assert reached() == "got 10.88.0.20"


def test_under_forward_drop_only_the_published_flow_passes(sb, shop):
    sb.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    sb.run(["ip", "route", "add", "10.88.0.0/24", "via", UPLINK], netns="upstream", check=True)
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="web", mode="whois"), \
            checks.tcp_server(sb, "0.0.0.0", 81, netns="web", mode="whois"):
        assert whois(sb, "db", "10.88.0.10", 81) == "10.88.0.20"  # both listen
        assert whois(sb, "upstream", UPLINK, 8080) == UPSTREAM  # the published flow
        assert whois(sb, "upstream", "10.88.0.10", 81) is None  # routed straight to an unpublished port: dropped
        assert whois(sb, "web", UPLINK, 8080) == GATEWAY
    assert checks.ping(sb, UPSTREAM, netns="db").ok  # the containers still reach out
    sb.run(["iptables", "-P", "FORWARD", "ACCEPT"], check=True)


@pytest.mark.parametrize("ports", ['["8080:80"]', '["198.51.100.2:8080:80"]'], ids=["same", "overlapping"])
def test_a_second_network_on_the_same_host_port_is_refused_with_no_change(sb, shop, ports):
    before = snap(sb)
    with pytest.raises(ConflictError) as ei:
        apply.up(load(other(ports)), sb.runner())
    assert "8080" in str(ei.value) and "bridgenet network shop" in str(ei.value)
    after = snap(sb)
    assert after == before, diff(before, after)


def test_two_networks_on_different_ports_share_the_chain_and_go_down_exactly(sb, shop):
    net, first = shop
    r = sb.runner()
    second = load(other('["8090:80", "5353:53"]'))  # 5353/tcp: web has 5353/udp
    apply.up(second, r)
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="api", mode="whois"):
        assert checks.tcp_request(sb, UPLINK, 8090, netns="upstream", timeout=2).value == UPSTREAM
    apply.down(net, r)  # the chain stays for shop2
    assert sb.run(["iptables", "-t", "nat", "-S", DNAT_CHAIN], check=True).stdout.count("-A ") == 2
    apply.down(second, r)
    after = snap(sb)
    assert after == first, diff(first, after)


@pytest.mark.parametrize("batch", [False, True], ids=["step", "batch"])
def test_up_twice_runs_nothing_and_down_restores(sb, batch):
    net, r = load(SHOP), sb.runner()
    before = snap(sb)
    apply.up(net, r, batch=batch)
    again = apply.up(net, r, batch=batch)
    assert again.ran == ()
    assert apply.plan(net, r).empty
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="web", mode="whois"):
        assert whois(sb, "web", UPLINK, 8080) == GATEWAY
    apply.down(net, r)
    after = snap(sb)
    assert after == before, diff(before, after)


@pytest.mark.parametrize("batch", [False, True], ids=["step", "batch"])
def test_a_failure_after_the_dnat_chain_rolls_back(sb, batch):
    net, r = load(SHOP), sb.runner()
    before = snap(sb)
    plan = apply.plan(net, r, batch=batch)
    sb.run(["iptables", "-N", INPUT_CHAIN], check=True)  # too late for the plan: -N fails
    with pytest.raises(RolledBackError) as ei:
        apply.up(net, r, plan=plan, batch=batch)
    assert ei.value.leftovers == ()
    # The chain made in the way stays: step by step its -N failed; in a batch iptables-restore failed
    # as one transaction (nothing of it took effect), so nothing of the step is ours either way.
    sb.run(["iptables", "-X", INPUT_CHAIN], check=True)
    after = snap(sb)
    assert after == before, diff(before, after)


def test_clean_without_the_state_file_removes_the_published_ports(sb, shop):
    net, before = shop
    r = sb.runner()
    os.unlink(os.path.join(r.fs_root, "run/bridgenet/shop.json"))
    leftovers.clean_tagged(r, force=False)
    after = snap(sb)
    before["ip_forward"] = after["ip_forward"]  # a sysctl cannot be tagged
    # the name files are tagged and gone; /etc/netns stays (who made it is known only from a state file)
    assert after["etc_netns"] == {"/etc/netns": "DIR"}
    before["etc_netns"] = after["etc_netns"]
    assert after == before, diff(before, after)


def test_the_tutorial_chapter_passes_every_check():
    import io

    from bridgenet.tutorial import run_tutorial

    out = io.StringIO()
    code = run_tutorial(out=out, publish=True)
    text = out.getvalue()
    assert code == 0, text
    assert "✗" not in text
    assert "✓ the upstream reaches container5's port 80 through 198.51.100.2:8080, and the server sees " \
           "198.51.100.1" in text
    assert text.count("✓ container") >= 4  # the lesson's two pings, and the chapter's two hairpins


FIXTURE_CONFTEST = '''
import tomllib

from bridgenet import config
from bridgenet.testing import factories

SHOP = """%s"""

shop = factories.network(lambda: config.from_dict(tomllib.loads(SHOP)))
''' % SHOP

FIXTURE_TESTS = '''
import sys

SERVER = (
    "import socket\\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen(4)\\n"
    "while True:\\n"
    "    c, peer = s.accept(); c.sendall(peer[0].encode() + b'\\\\n'); c.close()\\n"
)
CLIENT = (
    "import socket, sys\\n"
    "c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print(c.recv(100).decode().strip())\\n"
)


def test_a_published_port_through_the_fixtures(shop, netns_process, netns_run):
    netns_process("web", [sys.executable, "-c", SERVER]).wait_for_port(80)
    r = netns_run("db", [sys.executable, "-c", CLIENT, "10.88.0.1", "8080"])
    assert (r.exit_code, r.stdout.strip()) == (0, "10.88.0.20"), r.stderr
    r = netns_run(None, [sys.executable, "-c", CLIENT, "127.0.0.1", "8081"])
    assert (r.exit_code, r.stdout.strip()) == (0, "10.88.0.1"), r.stderr
'''


def test_the_fixtures_build_a_network_with_published_ports(pytester: pytest.Pytester) -> None:
    from test_plugin import Leftovers, plugin_args_here

    left = Leftovers()
    pytester.makeconftest(FIXTURE_CONFTEST)
    pytester.makepyfile(test_shop=FIXTURE_TESTS)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
    left.check()


def test_a_port_removed_from_the_file_goes_on_the_next_up(sb, shop):
    """Without its 127.0.0.1 entry, the next up removes that rule, the guard and route_localnet (back to 0)."""
    net, before = shop
    r = sb.runner()
    smaller = load(SHOP.replace('"127.0.0.1:8081:80", ', ""))
    report = apply.up(smaller, r)
    assert report.removed > 0
    assert sb.run(["sysctl", "-n", "net.ipv4.conf.br1.route_localnet"], check=True).stdout.strip() == "0"
    nat = sb.run(["iptables", "-t", "nat", "-S"], check=True).stdout
    assert "8081" not in nat and "127.0.0.0/8" not in nat
    assert not sb.run(["iptables", "-S", INPUT_CHAIN]).ok
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="web", mode="whois"):
        assert whois(sb, "upstream", UPLINK, 8080) == UPSTREAM
    apply.down(smaller, r)
    after = snap(sb)
    assert after == before, diff(before, after)
