"""Faults, for real: five namespaces on one bridge in a sandbox, checked the way a person would.

Pings and UDP datagrams between the namespaces (and from the sandbox host)
say what passes; the rules' counters say what the faults dropped;
``iptables-save`` before and after says what healing left.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from bridgenet import Container, bridge_network
from bridgenet.apply import down, up
from bridgenet.errors import NetemUnavailableError
from bridgenet.sandbox import Sandbox
from bridgenet.testing.faults import CHAIN, Faults
from bridgenet.tutorial import tutorial

pytestmark = pytest.mark.real

NODES = ("n1", "n2", "n3", "n4", "n5")
ADDRESS = {n: f"10.77.0.{11 + i}" for i, n in enumerate(NODES)}
ADDRESS.update({"container4": "10.201.0.4", "container5": "10.201.0.5"})  # the lesson's


def five():
    """Five namespaces n1..n5 (10.77.0.11-15) on the bridge five0, gateway 10.77.0.1."""
    return bridge_network("five", [Container(n, ADDRESS[n]) for n in NODES], bridge="five0",
                          gateway="10.77.0.1/24")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as sb:
        up(five(), sb.runner(), batch=True)
        yield sb


@pytest.fixture
def faults(sandbox):
    f = Faults(sandbox)
    yield f
    assert f.heal_all() == []


def pings(sb: Sandbox, pairs: list[tuple[str | None, str]]) -> dict[tuple[str | None, str], bool]:
    """Whether each ``(from, to)`` pair gets an echo reply (up to 2 requests), all pairs at once."""
    lines = []
    for i, (a, b) in enumerate(pairs):
        prefix = f"ip netns exec {a} " if a else ""
        lines.append(f"( {prefix}ping -n -q -c 2 -i 0.2 -W 1 {ADDRESS[b]} >/dev/null 2>&1; echo \"{i} $?\" ) &")
    out = sb.run(["sh", "-c", "\n".join([*lines, "wait"])], check=True).stdout
    codes = dict(line.split() for line in out.splitlines())
    return {pair: codes[str(i)] == "0" for i, pair in enumerate(pairs)}


ALL_PAIRS = [(a, b) for a in (None, *NODES) for b in NODES if a != b]

RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(1.5)
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"%d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.001)
"""


def udp(sb: Sandbox, src: str, dst: str, count: int = 20, port: int = 9000) -> int:
    """How many of ``count`` UDP datagrams from ``src`` reach a receiver in ``dst``."""
    receiver = sb.popen([sys.executable, "-c", RECEIVER, str(port)], netns=dst, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        sb.run([sys.executable, "-c", SENDER, ADDRESS[dst], str(port), str(count)], netns=src, check=True)
        out, _ = receiver.communicate(timeout=30)
    finally:
        Sandbox.terminate(receiver)
    return int(out.strip())


def iptables(sb: Sandbox) -> dict[str, str]:
    """Each namespace's filter rules of both families (``iptables-save``), counters and comments left out,
    an empty table (default chains, ACCEPT, no rule) the same as none."""
    out = {}
    for n in NODES:
        text = ""
        for prog in ("iptables-save", "ip6tables-save"):
            lines = [line for line in sb.run([prog, "-t", "filter"], netns=n, check=True).stdout.splitlines()
                     if not line.startswith("#")]
            body = [line for line in lines if line not in ("*filter", "COMMIT")]
            if body != [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]:
                text += prog + "\n" + "\n".join(lines) + "\n"
        out[n] = text
    return out


def test_the_network_is_whole_to_begin_with(sandbox) -> None:
    assert all(pings(sandbox, ALL_PAIRS).values())


def test_a_partition_between_groups(sandbox, faults) -> None:
    groups = (["n1", "n2"], ["n3", "n4"])  # n5 in no group
    p = faults.partition(*groups)
    got = pings(sandbox, ALL_PAIRS)
    side = {n: i for i, g in enumerate(groups) for n in g}
    for (a, b), ok in got.items():
        across = a in side and b in side and side[a] != side[b]
        assert ok is not across, f"{a or 'host'} -> {b}: {'reached' if ok else 'not reached'}"
    assert got[(None, "n3")] and got[("n5", "n1")] and got[("n1", "n5")] and got[("n1", "n2")]
    assert p.dropped() >= 8  # at least one echo request per pair across (2 x 2 x 2)
    faults.heal(p)
    assert all(pings(sandbox, ALL_PAIRS).values())
    assert faults.active() == []


def test_drop_is_one_way(sandbox, faults) -> None:
    d = faults.drop("n1", "n2")
    assert udp(sandbox, "n1", "n2") == 0
    assert udp(sandbox, "n2", "n1") == 20
    assert udp(sandbox, "n3", "n2") == 20
    n = d.dropped()
    assert n >= 20
    faults.heal(d)
    assert udp(sandbox, "n1", "n2") == 20
    assert d.dropped() >= n  # what its rules had dropped when they went


def test_grudge(sandbox, faults) -> None:
    g = faults.grudge({"n1": ["n2", "n3"], "n2": ["n1"]})
    assert udp(sandbox, "n2", "n1") == 0 and udp(sandbox, "n3", "n1") == 0 and udp(sandbox, "n1", "n2") == 0
    assert udp(sandbox, "n1", "n3") == 20 and udp(sandbox, "n3", "n2") == 20 and udp(sandbox, "n4", "n1") == 20
    assert g.dropped() >= 60


def test_loss_of_30_percent_from_one_peer(sandbox, faults) -> None:
    loss = faults.loss("n2", 30, peers=["n1"])
    received = udp(sandbox, "n1", "n2", count=200)
    lost = 200 - received
    assert 30 <= lost <= 90, f"{lost} of 200 lost"
    assert lost <= loss.dropped() <= lost + 5  # (+ the odd IPv6 packet from n1's link-local address)
    assert udp(sandbox, "n3", "n2") == 20  # only from n1


def test_loss_of_everything_received(sandbox, faults) -> None:
    faults.loss("n3", 30)
    lost = 200 - udp(sandbox, "n4", "n3", count=200)
    assert 30 <= lost <= 90, f"{lost} of 200 lost"
    assert faults.loss("n4", 100).dropped() == 0
    assert udp(sandbox, "n5", "n4") == 0


def test_faults_combine_and_heal_in_any_order(sandbox, faults) -> None:
    before = iptables(sandbox)
    p = faults.partition(["n1", "n2"], ["n3", "n4"])
    d = faults.drop("n5", "n1")
    assert udp(sandbox, "n5", "n1") == 0 and udp(sandbox, "n3", "n1") == 0
    faults.heal(p)
    assert udp(sandbox, "n3", "n1") == 20 and udp(sandbox, "n5", "n1") == 0
    assert f"-A INPUT -j {CHAIN}" in sandbox.run(["iptables", "-S"], netns="n1", check=True).stdout
    assert faults.active() == [str(d)]
    faults.heal(d)
    assert udp(sandbox, "n5", "n1") == 20
    assert iptables(sandbox) == before


def test_heal_all_leaves_iptables_exactly_as_before(sandbox, faults) -> None:
    before = iptables(sandbox)
    faults.partition(["n1", "n2"], ["n3", "n4", "n5"])
    faults.drop("n1", "n2")
    faults.grudge({"n4": ["n5"], "n5": ["n4"]})
    faults.loss("n3", 10)
    faults.loss("n3", 20, peers=["n2"])
    assert iptables(sandbox) != before
    assert len(faults.active()) == 5
    assert faults.heal_all() == []
    assert faults.active() == [] and faults.in_effect == ()
    assert iptables(sandbox) == before
    assert all(pings(sandbox, ALL_PAIRS).values())


def test_netem_where_the_kernel_has_it(sandbox, faults) -> None:
    try:
        n = faults.delay("n1", "100ms")
    except NetemUnavailableError as e:
        assert "sch_netem" in str(e)
        assert sandbox.run(["tc", "-json", "qdisc", "show", "dev", "eth0"], netns="n1").stdout.count("netem") == 0
        pytest.skip(str(e))
    assert '"kind":"netem"' in sandbox.run(["tc", "-json", "qdisc", "show", "dev", "eth0"], netns="n1").stdout
    r = sandbox.run(["ping", "-n", "-c", "1", "-W", "2", ADDRESS["n2"]], netns="n1", check=True)
    rtt = float(r.stdout.split("time=")[1].split()[0])
    assert rtt >= 100  # a lower bound the delay guarantees
    faults.heal(n)
    assert "netem" not in sandbox.run(["tc", "qdisc", "show", "dev", "eth0"], netns="n1").stdout


def test_drop_in_the_lesson_whose_nat_rewrites_bridged_traffic() -> None:
    # the lesson's MASQUERADE (no "! -o br0") makes container5 see container4's packets as from
    # 10.201.0.1; the rule on container4's frames (-m mac) still drops them, and the host gets through
    with Sandbox() as sb:
        up(tutorial(), sb.runner(), batch=True)
        f = Faults(sb)
        d = f.drop("container4", "container5")
        assert udp(sb, "container4", "container5") == 0
        assert udp(sb, "container5", "container4") == 20
        assert sb.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "10.201.0.5"]).ok
        assert d.dropped() >= 20
        assert f.heal_all() == []
        assert udp(sb, "container4", "container5") == 20


def test_undo_after_the_network_is_gone_is_quiet() -> None:
    with Sandbox() as sb:
        net = five()
        up(net, sb.runner(), batch=True)
        f = Faults(sb)
        f.partition("n1")                          # its bridge port down
        f.rate_limit("n2", rate="1mbit")           # a tbf on both ends
        f.partition(["n3"], ["n4"])
        f.loss("n5", 10)
        down(net, sb.runner(), batch=True)         # links and namespaces gone
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert f.heal_all() == []
        assert f.active() == []


def test_dropped_keeps_its_count_once_the_network_is_gone_and_names_are_checked() -> None:
    from bridgenet.errors import ValidationError

    with Sandbox() as sb:
        net = five()
        up(net, sb.runner(), batch=True)
        f = Faults(sb)
        cut = f.partition(["n1"], ["n2"])
        assert pings(sb, [("n1", "n2")]) == {("n1", "n2"): False}
        seen = cut.dropped()
        assert seen >= 2
        down(net, sb.runner(), batch=True)  # the counters die with the namespaces
        assert cut.dropped() == seen
        assert f.heal_all() == [] and cut.dropped() == seen
        for call in (lambda: f.partition("n9"), lambda: f.partition(["n9"], ["n1"])):
            with pytest.raises(ValidationError, match=r"factories\.faults\(sandbox=") as e:
                call()
            assert e.value.field == "netns"


SHARED = '''
import pytest
from bridgenet import Container


@pytest.mark.bridgenet(scope="module")
def test_faults_first(bridgenet_faults, bridgenet_network):
    bridgenet_network.bridge("lab", [Container("a", "10.78.0.2"), Container("b", "10.78.0.3")],
                             bridge="lab0", gateway="10.78.0.1/24")
    assert bridgenet_faults.partition("a")
    bridgenet_faults.rate_limit("b", rate="1mbit")
    bridgenet_faults.drop("a", "b")


@pytest.mark.bridgenet(scope="module")
def test_next(bridgenet_sandbox, netns_run):
    assert "lab0" not in netns_run(None, ["ip", "-br", "link"], check=True).stdout
'''


def test_a_shared_sandbox_undoes_faults_after_its_network_quietly(pytester: pytest.Pytester) -> None:
    from test_plugin import plugin_args_here

    pytester.makepyfile(test_shared=SHARED)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "PytestWarning" not in result.stdout.str() and "Cannot find device" not in result.stdout.str()


NETEM_FILE = '''
def test_delay(bridgenet_tutorial, bridgenet_faults):
    bridgenet_faults.delay("container4", "100ms")
'''


def test_the_fixture_skips_where_netem_is_missing_unless_told_not_to(pytester: pytest.Pytester, faults) -> None:
    from test_plugin import plugin_args_here

    try:
        faults.heal(faults.delay("n1", "1ms"))
        pytest.skip("this kernel has netem: nothing to skip")
    except NetemUnavailableError:
        pass
    pytester.makepyfile(test_netem=NETEM_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*tc netem is not available*sch_netem kernel module is missing*"])
    result = pytester.runpytest_inprocess(*plugin_args_here(), "--bridgenet-no-skip", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NetemUnavailableError*"])
