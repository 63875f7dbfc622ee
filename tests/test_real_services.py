"""Real tier: the complete example of issue 12 (``examples/services.toml``) as a user would try it.

Dual stack on ``svc0`` (10.40.0.1/24, fd00:40::1/64), ``web`` publishing its
port 80 as 8080 (every host address) and 8081 (the host's 127.0.0.1),
``db``, and ``cache`` with IPv6 only; the containers reach each other by
name. The sandbox's upstream (198.51.100.1, 2001:db8::1) plays the rest of
the world; the sandbox host's uplink is 198.51.100.2 / 2001:db8::2.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridgenet import apply, checks, config
from bridgenet.errors import RolledBackError
from helpers import diff, snap

pytestmark = pytest.mark.real

SERVICES = Path(__file__).resolve().parent.parent / "examples" / "services.toml"


def test_the_complete_example(sb):
    r = sb.runner()
    before = snap(sb)
    apply.up(config.load(SERVICES), r)
    # names: db knows web by both of its addresses, and by web.services
    hosts = sb.run(["getent", "ahosts", "web.services"], netns="db", check=True).stdout
    assert "10.40.0.10" in hosts and "fd00:40::10" in hosts, hosts
    with checks.tcp_server(sb, "::", 80, netns="web", mode="whois"):
        # the IPv6-only container reaches web by name, over IPv6
        got = checks.tcp_request(sb, "web", 80, netns="cache")
        assert got.ok and got.value == "fd00:40::30", got.output
        # the published port from the upstream: the server sees the upstream's own address
        got = checks.tcp_request(sb, "198.51.100.2", 8080, netns="upstream")
        assert got.ok and got.value == "::ffff:198.51.100.1", got.output
        # ... and over IPv6 (ip6tables DNAT to web's address6), the server seeing 2001:db8::1
        got = checks.tcp_request(sb, "2001:db8::2", 8080, netns="upstream", timeout=5)
        assert got.ok and got.value == "2001:db8::1", got.output
        # from the host itself, on its 127.0.0.1 (route_localnet; the source is masqueraded to the gateway)
        got = checks.tcp_request(sb, "127.0.0.1", 8081)
        assert got.ok and got.value == "::ffff:10.40.0.1", got.output
        # ... which a neighbour cannot use: 127.0.0.1 inside db is db's own lo
        assert not checks.tcp_request(sb, "127.0.0.1", 8081, netns="db", timeout=1).ok
        # hairpin: web reaches itself through the host's address
        got = checks.tcp_request(sb, "10.40.0.1", 8080, netns="web")
        assert got.ok, got.output
    # NAT66: the upstream sees the uplink's IPv6 address
    with checks.tcp_server(sb, str(sb.upstream_address6), 7010, netns="upstream", mode="whois"):
        got = checks.tcp_request(sb, str(sb.upstream_address6), 7010, netns="cache")
        assert got.ok and got.value == "2001:db8::2", got.output
    # an unknown name fails at once
    assert sb.run(["getent", "hosts", "nosuchname"], netns="web", timeout=5).exit_code == 2
    assert apply.up(config.load(SERVICES), r).ran == ()
    apply.down("services", r)
    after = snap(sb)
    assert after == before, diff(before, after)



@pytest.mark.parametrize("batch", [False, True], ids=["steps", "batch"])
def test_a_failure_at_the_last_step_rolls_everything_back(sb, batch):
    """The name files come last: /etc/netns made a plain file after planning, ``mkdir /etc/netns`` fails,
    and the rollback takes back both families' addresses, routes, sysctls, ip6tables and the ports."""
    r = sb.runner()
    before = snap(sb)
    net = config.load(SERVICES)
    plan = apply.plan(net, r, batch=batch)
    sb.run(["touch", "/etc/netns"], check=True)  # in the sandbox's own /etc (an overlay)
    with pytest.raises(RolledBackError) as ei:
        apply.up(net, r, plan=plan, batch=batch)
    assert ei.value.leftovers == ()
    sb.run(["rm", "/etc/netns"], check=True)
    after = snap(sb)
    assert after == before, diff(before, after)

CONFTEST = """
from pathlib import Path

from bridgenet import config
from bridgenet.testing import factories

services = factories.network(lambda: config.load(Path(__file__).resolve().parent / "services.toml"))
"""

TESTS = """
import sys
import time

import pytest

SERVER = ("import http.server as h, socket\\n"
          "class S(h.ThreadingHTTPServer): address_family = socket.AF_INET6  # both families on '::'\\n"
          "S(('::', 80), h.SimpleHTTPRequestHandler).serve_forever()")
FETCH = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).status)"


@pytest.mark.bridgenet(upstream=True)
def test_names_ipv6_and_a_published_port_through_the_fixtures(services, netns_process, netns_run):
    start = time.monotonic()
    netns_process("web", [sys.executable, "-c", SERVER]).wait_for_port(80)
    assert time.monotonic() - start < 5  # http.server's getfqdn() does not wait for a resolver
    r = netns_run("cache", [sys.executable, "-c", FETCH, "http://web.services:80/"])  # by name, IPv6 only
    assert (r.exit_code, r.stdout.strip()) == (0, "200"), r.stderr
    r = netns_run("upstream", [sys.executable, "-c", FETCH, "http://198.51.100.2:8080/"])
    assert (r.exit_code, r.stdout.strip()) == (0, "200"), r.stderr
    assert (services.address("web"), services.address6("web"), services.address6("cache")) == \\
        ("10.40.0.10", "fd00:40::10", "fd00:40::30")
    with pytest.raises(KeyError, match="no IPv4 address"):
        services.address("cache")
"""


def test_the_complete_example_through_the_fixtures(pytester: pytest.Pytester) -> None:
    from test_plugin import Leftovers, plugin_args_here

    left = Leftovers()
    shutil.copy(SERVICES, pytester.path / "services.toml")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_services=TESTS)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
    left.check()
