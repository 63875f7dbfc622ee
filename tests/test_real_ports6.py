"""Real tier: published ports over IPv6 (issue 12, "IPv6 host addresses in brackets"), in sandboxes.

The network is ``examples/ports6.toml``: br6p with 10.31.0.1/24 and
fd00:31::1/64; ``web`` (10.31.0.10, fd00:31::10) publishes ``8080:80`` on
both families and ``[2001:db8::2]:8443:443`` on IPv6 only; ``db``
(fd00:31::20) is its neighbour; ``v6only`` (fd00:31::30) publishes
``8081:80``. The sandbox's upstream has 2001:db8::1 (and 198.51.100.1),
the sandbox host's uplink 2001:db8::2 (and 198.51.100.2).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from bridgenet import apply, checks, config, leftovers
from bridgenet.errors import ConflictError
from bridgenet.ports import DNAT_CHAIN
from helpers import diff, snap

pytestmark = pytest.mark.real

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ports6.toml"
UPSTREAM6, UPLINK6, GATEWAY6 = "2001:db8::1", "2001:db8::2", "fd00:31::1"
UPSTREAM, UPLINK = "198.51.100.1", "198.51.100.2"


def other(ports: str) -> str:
    return f'''
name = "other6"

[[bridges]]
name = "br7"
address = "10.32.0.1/24"
address6 = "fd00:32::1/64"

[[containers]]
netns = "api"
address = "10.32.0.10"
address6 = "fd00:32::10"
ports = {ports}
'''


@pytest.fixture
def shop6(sb):
    net = config.load(EXAMPLE)
    before = snap(sb)
    apply.up(net, sb.runner())
    yield net, before


def whois(sb, netns, address, port, timeout=2):
    """The peer address the server saw (its reply), or None when the connection failed.

    The first connection right after a quick ``up`` can wait for neighbour discovery (measured: 2 s
    after ``up --batch``, a SYN retransmit; KERNEL-NOTES "first packet"): the first check gives it 5 s.
    """
    r = checks.tcp_request(sb, address, port, netns=netns, timeout=timeout)
    return r.value if r.ok else None


def test_published_over_ipv6_from_the_upstream_the_host_and_by_hairpin(sb, shop6):
    with checks.tcp_server(sb, "::", 80, netns="web", mode="whois"):
        assert whois(sb, "upstream", UPLINK6, 8080, timeout=5) == UPSTREAM6  # the server sees the client's real address
        assert whois(sb, None, UPLINK6, 8080) == UPLINK6  # the host itself, on its uplink address
        assert whois(sb, None, GATEWAY6, 8080) == GATEWAY6  # ... and on its address on the bridge
        assert whois(sb, "db", UPLINK6, 8080) == "fd00:31::20"  # a neighbour keeps its own address
        assert whois(sb, "web", UPLINK6, 8080) == GATEWAY6  # itself: hairpin, masqueraded as the bridge
        assert whois(sb, "upstream", UPLINK, 8080) == f"::ffff:{UPSTREAM}"  # IPv4 too ("8080:80": both)
        assert whois(sb, "upstream", UPLINK6, 8090) is None  # nothing else is published


def test_a_bracketed_host_address_is_ipv6_only_and_an_ipv6_only_container_publishes(sb, shop6):
    with checks.tcp_server(sb, "::", 443, netns="web", mode="whois"), \
            checks.tcp_server(sb, "::", 80, netns="v6only", mode="whois"):
        assert whois(sb, "upstream", UPLINK6, 8443, timeout=5) == UPSTREAM6
        assert whois(sb, "upstream", UPLINK, 8443) is None  # [2001:db8::2]: not on IPv4
        assert whois(sb, "upstream", UPLINK6, 8081) == UPSTREAM6
        assert whois(sb, "upstream", UPLINK, 8081) is None  # v6only has no IPv4 address
        assert whois(sb, "v6only", UPLINK6, 8081) == GATEWAY6  # its hairpin


def test_under_forward_drop_only_the_published_ipv6_flow_passes(sb, shop6):
    sb.run(["ip6tables", "-P", "FORWARD", "DROP"], check=True)
    sb.run(["ip", "route", "add", "fd00:31::/64", "via", UPLINK6], netns="upstream", check=True)
    with checks.tcp_server(sb, "::", 80, netns="web", mode="whois"), \
            checks.tcp_server(sb, "::", 81, netns="web", mode="whois"):
        assert whois(sb, "upstream", UPLINK6, 8080, timeout=5) == UPSTREAM6
        assert whois(sb, "upstream", "fd00:31::10", 81) is None  # routed straight to an unpublished port
    sb.run(["ip6tables", "-P", "FORWARD", "ACCEPT"], check=True)


def test_a_dnat_from_the_ipv6_loopback_is_not_routed(sb, shop6):
    """Why ``[::1]`` is refused (measured): the same rules as for 127.0.0.1 (DNAT in OUTPUT, MASQUERADE of
    the loopback source) give a time-out; IPv6 has no route_localnet (ip-sysctl.rst)."""
    rule = ["-d", "::1/128", "-p", "tcp", "-m", "tcp", "--dport", "8082", "-j", "DNAT",
            "--to-destination", "[fd00:31::10]:80"]
    sb.run(["ip6tables", "-t", "nat", "-A", DNAT_CHAIN, *rule], check=True)
    sb.run(["ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "::1/128", "-o", "br6p", "-j", "MASQUERADE"],
           check=True)
    with checks.tcp_server(sb, "::", 80, netns="web", mode="whois"):
        assert whois(sb, None, GATEWAY6, 8080, timeout=5) == GATEWAY6  # the server is there
        assert whois(sb, None, "::1", 8082) is None
    counters = sb.run(["ip6tables", "-t", "nat", "-L", DNAT_CHAIN, "-v", "-n", "-x"], check=True).stdout
    assert any("8082" in line and line.split()[0] != "0" for line in counters.splitlines()), counters  # it matched


def test_an_ipv6_binding_another_network_holds_is_refused_with_no_change(sb, shop6):
    before = snap(sb)
    with pytest.raises(ConflictError) as ei:
        apply.up(config.from_dict(tomllib.loads(other('["[2001:db8::2]:8080:80"]'))), sb.runner())
    assert "8080" in str(ei.value) and "bridgenet network shop6" in str(ei.value)
    after = snap(sb)
    assert after == before, diff(before, after)


def test_ipv4_and_ipv6_of_one_port_are_two_bindings(sb, shop6):
    """shop6's 8081 is IPv6 only (v6only): an IPv4 publish of 8081 elsewhere is no conflict; both go down exactly."""
    net, first = shop6
    r = sb.runner()
    second = config.from_dict(tomllib.loads(other('["0.0.0.0:8081:80"]')))
    apply.up(second, r)
    with checks.tcp_server(sb, "0.0.0.0", 80, netns="api", mode="whois"), \
            checks.tcp_server(sb, "::", 80, netns="v6only", mode="whois"):
        assert whois(sb, "upstream", UPLINK, 8081, timeout=5) == UPSTREAM  # api, over IPv4
        assert whois(sb, "upstream", UPLINK6, 8081) == UPSTREAM6  # v6only, over IPv6
    apply.down(net, r)  # the IPv4 chain stays for other6; the ip6tables one goes
    assert sb.run(["iptables", "-t", "nat", "-S", DNAT_CHAIN], check=True).stdout.count("-A ") == 1
    assert sb.run(["ip6tables", "-t", "nat", "-S", DNAT_CHAIN]).exit_code != 0
    apply.down(second, r)
    after = snap(sb)
    assert after == first, diff(first, after)


@pytest.mark.parametrize("batch", [False, True], ids=["step", "batch"])
def test_up_twice_runs_nothing_and_down_restores(sb, batch):
    net, r = config.load(EXAMPLE), sb.runner()
    before = snap(sb)
    apply.up(net, r, batch=batch)
    again = apply.up(net, r, batch=batch)
    assert again.ran == ()
    assert apply.plan(net, r).empty
    with checks.tcp_server(sb, "::", 80, netns="web", mode="whois"):
        assert whois(sb, "upstream", UPLINK6, 8080, timeout=5) == UPSTREAM6
    apply.down(net, r, batch=batch)
    after = snap(sb)
    assert after == before, diff(before, after)


def test_clean_without_the_state_file_removes_the_ipv6_published_ports(sb, shop6):
    net, before = shop6
    r = sb.runner()
    os.unlink(os.path.join(r.fs_root, "run/bridgenet/shop6.json"))
    leftovers.clean_tagged(r, force=False)
    after = snap(sb)
    for key in ("ip_forward", "ipv6_forwarding"):  # a sysctl cannot be tagged
        if key in after:
            before[key] = after[key]
    assert after["etc_netns"] == {"/etc/netns": "DIR"}
    before["etc_netns"] = after["etc_netns"]
    assert after == before, diff(before, after)
