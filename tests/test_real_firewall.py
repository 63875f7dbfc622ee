"""Real tier: firewalls and kernels that would break a network silently, and isolation between networks.

Each test sets up, inside a sandbox, what a real host may have (a FORWARD
chain ending in ``-j REJECT``, policy DROP, STP on a reused bridge,
iptables-legacy tables next to iptables-nft) and checks outcomes as a person
would: ping, TCP, the warnings ``plan`` gives, iptables counters, snapshots.
"""

import os
import shlex
import tomllib

import pytest

import bridgenet
from bridgenet import Container, apply, bridge_network, checks, leftovers
from bridgenet.firewall import FORWARD_CHAIN, ISOLATION_CHAIN
from helpers import bridgenet_cli, diff, snap

pytestmark = pytest.mark.real

UPSTREAM = "198.51.100.1"


def net_a(**kw):
    return bridge_network("a", [Container("a1", "10.61.0.2"), Container("a2", "10.61.0.3")],
                          bridge="bra", gateway="10.61.0.1/24", **kw)


def net_b(**kw):
    return bridge_network("b", [Container("b1", "10.62.0.2")], bridge="brb", gateway="10.62.0.1/24", **kw)


def net_c(**kw):
    return bridge_network("c", [Container("c1", "10.63.0.2")], bridge="brc", gateway="10.63.0.1/24", **kw)


def reaches(sb, src_netns, dst, port=None):
    """Ping (or, with ``port``, a TCP echo round trip) from ``src_netns`` to ``dst``."""
    if port is None:
        return checks.ping(sb, dst, netns=src_netns, count=2, wait=1).ok
    return checks.tcp_request(sb, dst, port, netns=src_netns, timeout=2).ok


def counters(sb, chain):
    """``{rule: packets}`` of ``chain`` in the filter table, from ``iptables-save -c`` (``[packets:bytes] -A ...``)."""
    out = {}
    for line in sb.run(["iptables-save", "-c", "-t", "filter"], check=True).stdout.splitlines():
        if line.startswith("[") and f" -A {chain} " in line:
            count, _, rule = line.partition("] ")
            out[" ".join(shlex.split(rule))] = int(count[1:].split(":")[0])
    return out


FIREWALLS = {
    "reject-at-the-end": [["iptables", "-A", "FORWARD", "-j", "REJECT"]],
    "policy-drop": [["iptables", "-P", "FORWARD", "DROP"]],
}


@pytest.mark.parametrize("firewall", sorted(FIREWALLS))
@pytest.mark.parametrize("batch", [False, True], ids=["steps", "batch"])
def test_a_tagged_network_works_whatever_forward_holds(sb, firewall, batch):
    """A FORWARD chain ending in -j REJECT (some distributions' default) or policy DROP: NAT and bridged
    traffic still pass, because our rules sit in a chain jumped to from the top of FORWARD."""
    for argv in FIREWALLS[firewall]:
        sb.run(argv, check=True)
    r = sb.runner()
    before = snap(sb)
    net = net_a()
    assert apply.plan(net, r, batch=batch).warnings == ()
    apply.up(net, r, batch=batch)
    assert reaches(sb, "a1", UPSTREAM)
    with checks.tcp_server(sb, UPSTREAM, 8080, netns="upstream", mode="whois") as srv:
        assert checks.tcp_request(sb, UPSTREAM, 8080, netns="a1").ok
        assert srv.seen_peers() == ["198.51.100.2"]  # masqueraded
    with checks.tcp_server(sb, "10.61.0.3", 8081, netns="a2", mode="whois") as srv:
        assert checks.tcp_request(sb, "10.61.0.3", 8081, netns="a1").ok  # bridged, through FORWARD
        assert srv.seen_peers() == ["10.61.0.2"]
    forward = [ln for ln in sb.run(["iptables", "-S", "FORWARD"], check=True).stdout.splitlines() if "-A" in ln]
    assert forward[0] == f"-A FORWARD -j {FORWARD_CHAIN}", forward
    assert apply.plan(net, r, batch=batch).empty
    apply.down(net, r, batch=batch)
    assert snap(sb) == before, diff(before, snap(sb))


def test_batch_and_step_by_step_build_the_same_network(sb):
    r = sb.runner()
    built = []
    for batch in (False, True):
        apply.up(net_a(), r, batch=batch)
        apply.up(net_b(), r, batch=batch)
        built.append(snap(sb))
        apply.down(net_b(), r, batch=batch)
        apply.down(net_a(), r, batch=batch)
    assert built[0] == built[1], diff(built[0], built[1])
    assert f"filter :{FORWARD_CHAIN} -" in built[0]["iptables"]
    assert f"filter :{ISOLATION_CHAIN} -" in built[0]["iptables"]


def test_the_lesson_under_a_rejecting_forward_chain_is_warned_naming_the_rule(sb):
    sb.run(["iptables", "-A", "FORWARD", "-j", "REJECT"], check=True)
    lesson = bridgenet.tutorial()
    p = apply.plan(lesson, sb.runner())
    named = [w for w in p.warnings if "`-A FORWARD -j REJECT --reject-with icmp-port-unreachable`" in w]
    assert len(named) == 1, p.warnings
    assert "--accept-forward" in named[0] and "br_netfilter" in named[0]
    # the warning is true: the lesson's containers reach nothing through the host
    apply.up(lesson, sb.runner(), plan=p)
    assert not reaches(sb, "container4", UPSTREAM)
    apply.down(lesson, sb.runner())
    # a rule confined to another interface is not counted
    sb.run(["iptables", "-F", "FORWARD"], check=True)
    sb.run(["iptables", "-A", "FORWARD", "-i", "nothere0", "-j", "DROP"], check=True)
    assert apply.plan(lesson, sb.runner()).warnings == ()


def test_a_rule_put_before_our_jump_is_warned(sb):
    r = sb.runner()
    net = net_a()
    apply.up(net, r)
    sb.run(["iptables", "-I", "FORWARD", "-j", "DROP"], check=True)  # someone else, afterwards
    warnings = apply.plan(net, r).warnings
    assert any("`-A FORWARD -j DROP` before bridgenet's jump" in w for w in warnings), warnings
    assert not reaches(sb, "a1", UPSTREAM)
    sb.run(["iptables", "-D", "FORWARD", "-j", "DROP"], check=True)
    apply.down(net, r)


def test_accept_forward_flag_makes_the_lesson_work_under_policy_drop(sb):
    sb.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    before = snap(sb)
    plain = bridgenet_cli(sb, "plan")
    assert "FORWARD policy here is DROP" in plain.stderr
    assert "br_netfilter is on" in plain.stderr and "bridgenet up --accept-forward" in plain.stderr
    dry = bridgenet_cli(sb, "up", "--dry-run", "--accept-forward", check=True).stdout.splitlines()
    assert dry[:23] == [c.shell() for c in bridgenet.tutorial().up_commands()]
    assert dry[23:] == [f"iptables -N {FORWARD_CHAIN}", f"iptables -I FORWARD -j {FORWARD_CHAIN}",
                        f"iptables -A {FORWARD_CHAIN} -i br0 -j ACCEPT", f"iptables -A {FORWARD_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    planned = bridgenet_cli(sb, "plan", "--accept-forward", check=True)
    assert "warning" not in planned.stderr, planned.stderr
    up = bridgenet_cli(sb, "up", "--accept-forward", "--quiet")
    assert up.exit_code == 0, up.stderr
    assert reaches(sb, "container4", UPSTREAM)
    assert reaches(sb, "container4", "10.201.0.5")  # bridged traffic passes FORWARD too
    down = bridgenet_cli(sb, "down", "--quiet")  # from the state file, without the flag
    assert down.exit_code == 0, down.stderr
    assert snap(sb) == before, diff(before, snap(sb))


def test_two_tagged_networks_are_isolated_and_isolate_false_lets_them_talk(sb):
    r = sb.runner()
    before = snap(sb)
    a, b, c = net_a(), net_b(), net_c(isolate=False)
    for n in (a, b, c):
        apply.up(n, r)
    assert not reaches(sb, "a1", "10.62.0.2")
    assert not reaches(sb, "b1", "10.61.0.2")
    drops = counters(sb, ISOLATION_CHAIN)
    assert drops["-A BRIDGENET-ISOLATION -o brb -m comment --comment bridgenet:b -j DROP"] > 0, drops  # a1 -> b1
    assert drops["-A BRIDGENET-ISOLATION -o bra -m comment --comment bridgenet:a -j DROP"] > 0, drops  # b1 -> a1
    for src in ("a1", "b1", "c1"):
        assert reaches(sb, src, UPSTREAM), src
    assert reaches(sb, "a1", "10.61.0.3")  # its own bridge
    for src, dst in (("a1", "10.63.0.2"), ("c1", "10.61.0.2"), ("b1", "10.63.0.2"), ("c1", "10.62.0.2")):
        assert reaches(sb, src, dst), (src, dst)
    with checks.tcp_server(sb, "10.63.0.2", 7000, netns="c1"):
        assert reaches(sb, "a1", "10.63.0.2", port=7000)
    # the first network down leaves the shared chains to the others
    apply.down(a, r)
    assert sb.run(["iptables", "-S", FORWARD_CHAIN]).ok
    assert reaches(sb, "b1", UPSTREAM) and reaches(sb, "b1", "10.63.0.2")
    apply.down(b, r)
    assert reaches(sb, "c1", UPSTREAM)
    apply.down(c, r)
    assert not sb.run(["iptables", "-S", FORWARD_CHAIN]).ok
    assert not sb.run(["iptables", "-S", ISOLATION_CHAIN]).ok
    assert snap(sb) == before, diff(before, snap(sb))


def test_isolate_false_in_a_network_file(sb, tmp_path):
    from bridgenet import config

    text = ('name = "c"\nbridge = "brc"\ngateway = "10.63.0.1/24"\nisolate = false\n'
            '[[containers]]\nnetns = "c1"\naddress = "10.63.0.2"\n')
    net = config.from_dict(tomllib.loads(text))
    assert not any("ISOLATION" in c.shell() for c in net.up_commands())
    r = sb.runner()
    apply.up(net_a(), r)
    apply.up(net, r)
    assert reaches(sb, "c1", "10.61.0.2") and reaches(sb, "a1", "10.63.0.2")
    apply.down(net_a(), r)
    apply.down(net, r)


def test_clean_without_state_files_removes_rules_and_empty_chains(sb):
    r = sb.runner()
    before = snap(sb)
    apply.up(net_a(), r)
    apply.up(net_b(), r)
    for name in ("a", "b"):
        os.unlink(os.path.join(r.fs_root, f"run/bridgenet/{name}.json"))
    leftovers.clean_tagged(r, force=False)
    after = snap(sb)
    before["ip_forward"] = after["ip_forward"]  # a sysctl cannot be tagged
    assert after == before, diff(before, after)


def test_clean_keeps_a_chain_an_untagged_network_still_uses(sb):
    r = sb.runner()
    from bridgenet.network import with_accept_forward

    lesson = with_accept_forward(bridgenet.tutorial())
    apply.up(lesson, r)
    apply.up(net_a(), r)
    for name in ("a", "tutorial"):
        os.unlink(os.path.join(r.fs_root, f"run/bridgenet/{name}.json"))
    leftovers.clean_tagged(r, force=False)
    rules = sb.run(["iptables", "-S", FORWARD_CHAIN], check=True).stdout.splitlines()
    assert rules == [f"-N {FORWARD_CHAIN}", f"-A {FORWARD_CHAIN} -i br0 -j ACCEPT",
                     f"-A {FORWARD_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    assert not sb.run(["iptables", "-S", ISOLATION_CHAIN]).ok  # left empty: removed
    assert reaches(sb, "container4", UPSTREAM)


def test_stp_on_a_reused_bridge_is_warned_with_the_wait(sb):
    sb.run(["ip", "link", "add", "bra", "type", "bridge", "stp_state", "1", "forward_delay", "400"], check=True)
    sb.run(["ip", "link", "set", "bra", "up"], check=True)
    r = sb.runner()
    net = net_a()
    warnings = apply.plan(net, r).warnings
    stp = [w for w in warnings if "STP on" in w]
    assert len(stp) == 1 and "forward_delay 4 s" in stp[0] and "2 × forward_delay = 8 s" in stp[0], warnings
    apply.up(net, r)
    # the warning is true: the new port is not forwarding yet
    port = checks.run_json(sb, ["bridge", "-json", "link", "show", "dev", "v-a1"], check=True)
    assert port[0]["state"] in ("listening", "learning"), port
    apply.down(net, r)
    sb.run(["ip", "link", "set", "dev", "bra", "type", "bridge", "stp_state", "0"], check=True)
    assert not any("STP" in w for w in apply.plan(net, r).warnings)


def test_iptables_legacy_tables_next_to_nft_are_warned(sb):
    net = net_a()
    assert not any("legacy" in w for w in apply.plan(net, sb.runner()).warnings)
    made = sb.run(["iptables-legacy", "-A", "FORWARD", "-j", "ACCEPT"])  # inside the sandbox only
    if not made.ok:  # no iptables-legacy, or (rootless) no ip_tables module to load
        pytest.skip(f"iptables-legacy cannot make a table here: {made.stderr.strip() or made.exit_code}")
    if not sb.run(["cat", "/proc/net/ip_tables_names"]).ok:  # rootless: owned by the real root, mode 0440
        pytest.skip("in a user namespace /proc/net/ip_tables_names is unreadable: neither iptables-nft nor "
                    "bridgenet can see legacy tables there")
    warnings = apply.plan(net, sb.runner()).warnings
    legacy = [w for w in warnings if "iptables-legacy and iptables-nft" in w]
    assert len(legacy) == 1 and "split between two places" in legacy[0], warnings


def test_two_networks_from_the_cli_share_the_chains_until_the_last_goes_down(sb):
    """The command line, one process per command: the first network down leaves the chains to the second."""
    before = snap(sb)
    files = {}
    for name, bridge, net in (("a", "bra", "10.61.0"), ("b", "brb", "10.62.0")):
        path = os.path.join(sb.runner().fs_root, f"run/{name}.toml")  # the sandbox's own tmpfs
        with open(path, "w") as f:
            f.write(f'name = "{name}"\nbridge = "{bridge}"\ngateway = "{net}.1/24"\n'
                    f'[[containers]]\nnetns = "{name}1"\naddress = "{net}.2"\n')
        files[name] = f"/run/{name}.toml"
    for name in ("a", "b"):
        r = bridgenet_cli(sb, "up", "-f", files[name], "--quiet")
        assert r.exit_code == 0, r.stderr
    assert not reaches(sb, "a1", "10.62.0.2")
    r = bridgenet_cli(sb, "down", "-f", files["a"], "--quiet")
    assert r.exit_code == 0, r.stderr
    assert reaches(sb, "b1", UPSTREAM)
    assert sb.run(["iptables", "-S", ISOLATION_CHAIN]).ok
    r = bridgenet_cli(sb, "down", "-f", files["b"], "--quiet")
    assert r.exit_code == 0, r.stderr
    for name in files:
        os.unlink(os.path.join(sb.runner().fs_root, f"run/{name}.toml"))
    assert snap(sb) == before, diff(before, snap(sb))
