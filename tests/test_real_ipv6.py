"""Real tier: IPv6 dual stack (issue 12), in sandboxes.

The network is ``examples/dualstack.toml``: the bridge br6 with 10.30.0.1/24
and fd00:30::1/64 (a unique local prefix, so NAT66); ``web`` and ``db`` with
both families (``db`` forwards), ``v6only`` with fd00:30::30 alone. The
sandbox's upstream has 2001:db8::1 (RFC 3849), the sandbox host's uplink
2001:db8::2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bridgenet import apply, checks, config
from bridgenet.sandbox import Sandbox
from bridgenet.topology import BridgeSpec, Node, topology
from helpers import diff, snap

pytestmark = pytest.mark.real

DUAL = Path(__file__).resolve().parent.parent / "examples" / "dualstack.toml"
FORWARDING6 = "net.ipv6.conf.all.forwarding"


@pytest.fixture
def dual(sb):
    net = config.load(DUAL)
    before = snap(sb)
    report = apply.up(net, sb.runner())
    yield net, before, report


def ping(sb, dst, netns):
    r = checks.ping(sb, dst, netns=netns, wait=2)
    assert r.ok, f"{netns} -> {dst}: {r.summary}\n{r.output}"


def forwarding6(sb, netns=None):
    return sb.run(["sysctl", "-n", FORWARDING6], netns=netns, check=True).stdout.strip()


def test_ping_and_tcp_over_ipv6_between_containers(sb, dual):
    ping(sb, "fd00:30::20", "web")
    ping(sb, "fd00:30::10", "v6only")  # an IPv6-only container on the dual-stack bridge
    ping(sb, "10.30.0.20", "web")  # IPv4 still works next to it
    with checks.tcp_server(sb, "fd00:30::20", 7000, netns="db", mode="whois") as srv:
        r = checks.tcp_request(sb, "fd00:30::20", 7000, netns="web")
        assert r.ok and r.value == "fd00:30::10", r.output
        assert srv.seen_peers() == ["fd00:30::10"]  # bridged traffic keeps its source (! -o br6)


def test_the_upstream_sees_the_uplink_address_nat66(sb, dual):
    ping(sb, str(sb.upstream_address6), "web")
    ping(sb, str(sb.upstream_address6), "v6only")
    with checks.tcp_server(sb, str(sb.upstream_address6), 7001, netns="upstream", mode="whois") as srv:
        for ns in ("web", "v6only"):
            r = checks.tcp_request(sb, str(sb.upstream_address6), 7001, netns=ns)
            assert r.ok, r.output
        assert srv.seen_peers() == [str(sb.uplink_address6)] * 2 == ["2001:db8::2"] * 2


def test_addresses_usable_as_soon_as_up_returns(sb):
    """nodad: a bind() to the container's IPv6 address right after up succeeds (without it the address
    is tentative for a second or two and bind fails with EADDRNOTAVAIL)."""
    apply.up(config.load(DUAL), sb.runner())
    code = "import socket, sys; socket.socket(socket.AF_INET6).bind((sys.argv[1], 7002)); print('ok')"
    for ns, address in (("web", "fd00:30::10"), ("v6only", "fd00:30::30")):
        r = sb.run([sys.executable, "-c", code, address], netns=ns)
        assert r.ok and r.stdout.strip() == "ok", r.stderr
    addrs = json.loads(sb.run(["ip", "-json", "addr", "show", "dev", "eth0"], netns="web", check=True).stdout)
    (v6,) = [a for a in addrs[0]["addr_info"] if a.get("local") == "fd00:30::10"]
    assert v6.get("nodad") is True and not v6.get("tentative"), v6


def test_up_twice_runs_nothing_the_second_time(sb, dual):
    net, _, first = dual
    assert any(c.tool == "ip6tables" for c in first.ran)
    second = apply.up(net, sb.runner())
    assert second.ran == (), [c.shell() for c in second.ran]
    third = apply.up(net, sb.runner(), batch=True)
    assert third.ran == ()


def test_batch_up_and_down(sb):
    net = config.load(DUAL)
    before = snap(sb)
    apply.up(net, sb.runner(), batch=True)
    ping(sb, "fd00:30::30", "web")
    ping(sb, str(sb.upstream_address6), "web")
    assert forwarding6(sb) == "1" and forwarding6(sb, "db") == "1"
    rules = sb.run(["ip6tables-save"], check=True).stdout
    assert '-A POSTROUTING -s fd00:30::/64 ! -o br6 -m comment --comment "bridgenet:dual" -j MASQUERADE' in rules
    apply.down(net, sb.runner())
    assert snap(sb) == before, diff(before, snap(sb))


def test_down_restores_the_snapshot(sb, dual):
    net, before, _ = dual
    after_up = snap(sb)
    assert after_up["ipv6_forwarding"] == "1" and after_up["ip6tables"] != before["ip6tables"]
    assert any("fd00:30::1" in r for r in after_up["namespaces"]["web"]["routes6"])
    apply.down(net, sb.runner())
    assert snap(sb) == before, diff(before, snap(sb))


def test_ipv6_forward_drop_policy_is_handled(sb):
    """Under an ip6tables FORWARD policy of DROP (Docker's), the family-6 accept rules let the bridge's
    IPv6 traffic through, as the iptables ones do for IPv4."""
    sb.run(["ip6tables", "-P", "FORWARD", "DROP"], check=True)
    apply.up(config.load(DUAL), sb.runner())
    ping(sb, str(sb.upstream_address6), "web")
    ping(sb, "fd00:30::20", "v6only")


def _net(name: str, bridge: str, prefix: str):
    return topology(name, bridges=[BridgeSpec(bridge, address6=f"{prefix}::1/64")],
                    containers=[Node(f"{name}-a", address6=f"{prefix}::10")])


def test_two_networks_share_ipv6_forwarding(sb):
    """Like ip_forward: the network that found it on leaves it on for the other; the last one down puts
    back the value from before (0 in a new sandbox)."""
    one, two = _net("six1", "br61", "fd00:61"), _net("six2", "br62", "fd00:62")
    before = snap(sb)
    assert forwarding6(sb) == "0"
    apply.up(one, sb.runner())
    apply.up(two, sb.runner())
    apply.down(one, sb.runner())
    assert forwarding6(sb) == "1"
    ping(sb, str(sb.upstream_address6), "six2-a")
    apply.down(two, sb.runner())
    assert forwarding6(sb) == "0"
    assert snap(sb) == before, diff(before, snap(sb))


def test_a_rootless_sandbox_runs_ipv6_too(sb):
    """The same network in a sandbox of its own (rootless when the suite runs as an ordinary user)."""
    with Sandbox(upstream=True) as other:
        apply.up(config.load(DUAL), other.runner(), batch=True)
        ping(other, str(other.upstream_address6), "v6only")


def test_two_isolated_networks_do_not_reach_each_other_over_ipv6(sb):
    """Isolation with family 6: the ip6tables BRIDGENET-ISOLATION drops what the host would route between
    the two networks' bridges; each still reaches the upstream. Without isolation the same ping passes."""
    one, two = _net("six1", "br61", "fd00:61"), _net("six2", "br62", "fd00:62")
    apply.up(one, sb.runner())
    apply.up(two, sb.runner())
    assert not checks.ping(sb, "fd00:62::10", netns="six1-a", wait=1).ok
    assert not checks.ping(sb, "fd00:61::10", netns="six2-a", wait=1).ok
    ping(sb, str(sb.upstream_address6), "six1-a")
    open_one = topology("six3", bridges=[BridgeSpec("br63", address6="fd00:63::1/64")],
                        containers=[Node("six3-a", address6="fd00:63::10")], isolate=False)
    apply.up(open_one, sb.runner())
    ping(sb, "fd00:62::10", "six3-a")


def test_clean_without_the_state_file_removes_the_ip6tables_rules_and_chains(sb, dual):
    """Tagged ip6tables rules (NAT66, the accept and isolation rules) are found and removed without the
    state file, and bridgenet's ip6tables chains left empty go too."""
    import os

    from bridgenet import leftovers

    _, before, _ = dual
    r = sb.runner()
    os.unlink(os.path.join(r.fs_root, "run/bridgenet/dual.json"))
    leftovers.clean_tagged(r, force=False)
    after = snap(sb)
    assert after["ip6tables"] == before["ip6tables"], diff(before, after)
    for key in ("ip_forward", "ipv6_forwarding", "etc_netns"):  # a sysctl cannot be tagged; /etc/netns stays
        before[key] = after[key]
    assert after == before, diff(before, after)
