"""Real tier: several bridgenet processes at once on one host end where some serial order of them would."""

import itertools
import random
import subprocess
import sys

import pytest

from bridgenet import apply, config
from helpers import diff, snap
from netfiles import bridge_file, state_files, write

pytestmark = pytest.mark.real

NETS = {"na": ("brna", 81), "nb": ("brnb", 82), "nc": ("brnc", 83)}


def files(sb, count=2):
    return {n: write(sb, f"{n}.toml", bridge_file(n, br, third, count)) for n, (br, third) in NETS.items()}


def run_at_once(sb, commands):
    """Start every ``bridgenet ARGV...`` in ``commands`` at the same moment; return [(argv, code, stderr)]."""
    procs = [(argv, sb.popen([sys.executable, "-m", "bridgenet", *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)) for argv in commands]
    out = []
    for argv, p in procs:
        _, err = p.communicate(timeout=120)
        out.append((argv, p.returncode, err))
    return out


def all_ok(results):
    bad = [(a, c, e) for a, c, e in results if c != 0]
    assert not bad, bad


def test_two_networks_going_down_at_once_put_ip_forward_back(sb):
    """Seen: 3 of 3 runs leaked ip_forward=1."""
    paths = files(sb)
    before = snap(sb)
    assert before["ip_forward"] == "0"
    for _ in range(3):
        all_ok(run_at_once(sb, [["up", "-q", "-f", paths["na"]]]))
        all_ok(run_at_once(sb, [["up", "-q", "-f", paths["nb"]]]))
        all_ok(run_at_once(sb, [["down", "-q", "-f", paths["na"]], ["down", "-q", "-f", paths["nb"]]]))
        now = snap(sb)
        assert now == before, diff(before, now)
        assert state_files(sb) == []


def test_one_network_going_down_while_another_comes_up_keeps_ip_forward(sb):
    """Seen: 5 of 5 runs left ip_forward=0 under a live network."""
    paths = files(sb)
    before = snap(sb)
    for _ in range(5):
        all_ok(run_at_once(sb, [["up", "-q", "-f", paths["na"]]]))
        all_ok(run_at_once(sb, [["down", "-q", "-f", paths["na"]], ["up", "-q", "--batch", "-f", paths["nb"]]]))
        assert snap(sb)["ip_forward"] == "1"
        assert apply.plan(config.load(paths["nb"]), sb.runner()).empty
        assert sb.run(["ping", "-c", "3", "-i", "0.2", "-W", "3", "198.51.100.1"], netns="nb0").ok  # routed
        all_ok(run_at_once(sb, [["down", "-q", "-f", paths["nb"]]]))
        assert snap(sb) == before, diff(before, snap(sb))
        assert state_files(sb) == []


@pytest.mark.slow
def dual_file(name, third, ports):
    """A dual-stack network with a published port and names (issue 12's keys): svcN, web and cache."""
    return (f'name = "{name}"\n[[bridges]]\nname = "br{name}"\naddress = "10.{third}.0.1/24"\n'
            f'address6 = "fd00:{third}::1/64"\n[[containers]]\nnetns = "{name}web"\naddress = "10.{third}.0.10"\n'
            f'address6 = "fd00:{third}::10"\nports = ["{ports}:80"]\n[[containers]]\nnetns = "{name}c"\n'
            f'address6 = "fd00:{third}::30"\n')


def test_two_dual_stack_networks_at_once_share_ip6tables_chains_and_forwarding(sb):
    """Up at once, down at once: the shared ip6tables chains, BRIDGENET-DNAT, IPv6 forwarding and
    /etc/netns are made once and removed by the last one, whatever the order."""
    paths = {n: write(sb, f"{n}.toml", dual_file(n, t, p)) for n, t, p in (("d1", 84, 8084), ("d2", 85, 8085))}
    before = snap(sb)
    for _ in range(2):
        all_ok(run_at_once(sb, [["up", "-q", "-f", paths["d1"]], ["up", "-q", "--batch", "-f", paths["d2"]]]))
        assert sb.run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"], check=True).stdout.strip() == "1"
        dnat = sb.run(["iptables", "-t", "nat", "-S", "BRIDGENET-DNAT"], check=True).stdout
        assert "--dport 8084" in dnat and "--dport 8085" in dnat, dnat
        all_ok(run_at_once(sb, [["down", "-q", "-f", paths["d1"]], ["down", "-q", "-f", paths["d2"]]]))
        now = snap(sb)
        assert now == before, diff(before, now)
        assert state_files(sb) == []


def test_stress_random_concurrent_up_down_clean_ends_as_a_serial_run_would():
    """Three networks, 20 rounds; in each, one random op per network (and sometimes clean), all at once.

    A serial run in any order gives: a network whose op is down (or none) is down when a clean ran in the
    round, else as before; a network whose op is up is up, or down when a clean ran after it. The snapshot
    after each round must be exactly that of one of those outcomes, built serially beforehand.
    """
    from bridgenet.sandbox import Sandbox

    rng = random.Random(9)
    with Sandbox(upstream=True) as sb:
        paths = files(sb, count=1)
        nets = {n: config.load(p) for n, p in paths.items()}
        r = sb.runner()
        empty = snap(sb)
        reference = {}
        for k in range(len(NETS) + 1):
            for subset in itertools.combinations(sorted(NETS), k):
                for n in subset:
                    apply.up(nets[n], r)
                reference[frozenset(subset)] = snap(sb)
                for n in subset:
                    apply.down(nets[n], r)
                assert snap(sb) == empty
        up: set[str] = set()
        for rnd in range(20):
            ops = {n: rng.choice(["up", "down", "none"]) for n in NETS}
            clean = rng.random() < 0.3
            cmds = [[op, "-q", *(["--batch"] if rng.random() < 0.5 else []), "-f", paths[n]]
                    for n, op in ops.items() if op != "none"]
            if clean:
                cmds.append(["clean", "-q"])
            rng.shuffle(cmds)
            all_ok(run_at_once(sb, cmds))
            ups = {n for n, op in ops.items() if op == "up"}
            if clean:
                allowed = [frozenset(s) for k in range(len(ups) + 1) for s in itertools.combinations(ups, k)]
            else:
                allowed = [frozenset((up | ups) - {n for n, op in ops.items() if op == "down"})]
            now = snap(sb)
            match = [s for s in allowed if reference[s] == now]
            assert match, f"round {rnd} {ops} clean={clean}: no serial outcome matches:\n" + diff(
                reference[allowed[0]], now)
            up = set(match[0])
            assert state_files(sb) == sorted(f"{n}.json" for n in up), (rnd, state_files(sb))
        apply.clean(r)
        assert snap(sb) == empty
