"""Faults, fast tier: argument checks (before any command runs), the commands made, the parsers.

A fake host answers the reads a fault makes (namespaces, addresses,
``iptables-save``, links, qdiscs) and records what would run, so the commands
are checked here on any machine, netem's too.
"""

from __future__ import annotations

import json

import pytest

from bridgenet import faults as older
from bridgenet.errors import BridgenetError, FaultError, NetemUnavailableError, ValidationError
from bridgenet.testing import faults as faults_mod
from bridgenet.testing import faults_links, faults_rules, faults_shell, netem
from bridgenet.testing.faults import Fault, FaultCommand, Faults
from bridgenet.testing.faults_shell import Outcome

EMPTY_SAVE = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def addr_json(*addresses: str) -> str:
    info = [{"family": "inet6" if ":" in a else "inet", "local": a, "prefixlen": 24, "scope": "global"}
            for a in addresses]
    return json.dumps([{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"},
                                                      {"family": "inet6", "local": "::1", "scope": "host"}]},
                       {"ifname": "eth0", "addr_info": info}])


class FakeHost:
    """Answers a Faults object's reads from canned state, records its changes (never runs anything)."""

    def __init__(self, spaces: dict[str, tuple[str, ...]], *, netem_ok: bool = True, qdisc: dict | None = None):
        self.spaces = spaces
        self.netem_ok = netem_ok
        self.qdisc = qdisc
        self.saved: dict[tuple[str, str], str] = {}
        self.restore_fails = False
        self.ran: list[FaultCommand] = []
        self.reads: list[FaultCommand] = []

    def answer(self, c: FaultCommand) -> Outcome:
        if c.netns is None:
            if c.argv == ("ip", "-json", "netns", "list"):
                return Outcome(0, json.dumps([{"name": n} for n in self.spaces]))
            if c.argv == ("ip", "-json", "addr", "show"):
                return Outcome(0, addr_json("10.77.0.1"))
            raise AssertionError(c)
        if c.netns not in self.spaces:
            return Outcome(1, "", False)
        a = c.argv
        if a[:3] == ("ip", "-json", "addr"):
            return Outcome(0, addr_json(*self.spaces[c.netns]))
        if a[0] in ("iptables-save", "ip6tables-save"):
            return Outcome(0, self.saved.get((c.netns, a[0]), EMPTY_SAVE))
        if a[:3] == ("ip", "-json", "link"):
            return Outcome(0, json.dumps([{"ifname": "lo", "ifindex": 1, "link_type": "loopback"},
                                          {"ifname": "eth0", "ifindex": 2, "link_type": "ether"}]))
        if a[0] == "tc" and "show" in a:
            q = self.qdisc or {"kind": "noqueue", "handle": "0:", "dev": "eth0", "root": True}
            return Outcome(0, json.dumps([q]))
        if a[:3] == ("tc", "qdisc", "add"):
            return Outcome(0, "") if self.netem_ok else Outcome(2, "Error: Specified qdisc kind is unknown.\n")
        if a[0] in ("iptables-restore", "ip6tables-restore") and self.restore_fails:
            return Outcome(1, "iptables-restore: line 2 failed: Bad rule\n")
        if a[0] in ("iptables-restore", "ip6tables-restore", "tc"):
            return Outcome(0, "")
        raise AssertionError(c)

    def read(self, sandbox: object, commands: list[FaultCommand]) -> list[Outcome]:
        self.reads += commands
        return [self.answer(c) for c in commands]

    def run(self, sandbox: object, commands: list[FaultCommand], **kw: object) -> list[Outcome]:
        self.ran += [c for c in commands if "save" not in c.argv[0] and "show" not in c.argv]
        return [self.answer(c) for c in commands]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    h = FakeHost({"n1": ("10.77.0.11",), "n2": ("10.77.0.12", "fd00::12"), "n3": ("10.77.0.13",),
                  "n4": ("10.77.0.14",), "n5": ("10.77.0.15",), "bare": ()})
    monkeypatch.setattr(faults_shell, "read", h.read)
    monkeypatch.setattr(faults_shell, "run", h.run)
    return h


# --- checked before any command runs --------------------------------------------------------------


@pytest.mark.parametrize("call, field, rule", [
    (lambda f: f.partition(["n1", "n2"]), "groups", "at least two groups"),
    (lambda f: f.partition(["n1", "n2"], ["n2", "n3"]), "groups", "'n2' is in group 1 and in group 2"),
    (lambda f: f.partition(["n1"], []), "groups: group 2", "at least one namespace"),
    (lambda f: f.partition("n1", "n2"), "groups: group 1", "a list of namespace names"),
    (lambda f: f.partition(["n1"], [""]), "groups: group 2", "non-empty string"),
    (lambda f: f.drop("a", "a"), "dst", "cannot drop packets from itself"),
    (lambda f: f.grudge({"a": ["a"]}), "grudge['a']", "from itself"),
    (lambda f: f.grudge({"a": "b"}), "grudge['a']", "a list of namespace names"),
    (lambda f: f.grudge([("a", ["b"])]), "grudge", "a mapping"),
    (lambda f: f.grudge({"a": []}), "grudge", "at least one node"),
    (lambda f: f.loss("b", 101), "percent", "from 0 to 100"),
    (lambda f: f.loss("b", -1), "percent", "from 0 to 100"),
    (lambda f: f.loss("b", "30"), "percent", "a number"),
    (lambda f: f.loss("b", True), "percent", "a number"),
    (lambda f: f.loss("b", "lots%"), "percent", "such as '30%'"),
    (lambda f: f.rate_limit("b", rate="1mbit", direction="sideways"), "direction", "one of both, in, out"),
    (lambda f: f.loss("b", 30, peers="a"), "peers", "a list of namespace names"),
    (lambda f: f.loss("b", 30, peers=["b"]), "peers", "from itself"),
    (lambda f: f.netem("a", delay="soon"), "delay", "a tc time"),
    (lambda f: f.netem("a", delay=-1), "delay", "positive"),
    (lambda f: f.netem("a", jitter="10ms"), "jitter", "give delay too"),
    (lambda f: f.netem("a", reorder=25), "reorder", "give delay too"),
    (lambda f: f.netem("a", delay="10ms", duplicate=120), "duplicate", "from 0 to 100"),
    (lambda f: f.netem("a", corrupt="lots%"), "corrupt", "from 0 to 100"),
    (lambda f: f.netem("a", loss="5"), "loss", "from 0 to 100"),
    (lambda f: f.netem("a"), "delay", "at least one of"),
    (lambda f: f.delay("a", "1 s"), "delay", "a tc time"),
])
def test_bad_arguments_are_refused_before_anything_runs(call, field, rule) -> None:
    f = Faults(object())  # type: ignore[arg-type]  # any command would fail on it
    with pytest.raises(ValidationError) as e:
        call(f)
    assert e.value.field == field, str(e.value)
    assert rule in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, BridgenetError)


def test_an_unknown_namespace_is_refused_before_any_change(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    for call in (lambda: f.partition(["n1"], ["n9"]), lambda: f.drop("n9", "n1"), lambda: f.loss("n9", 5),
                 lambda: f.grudge({"n1": ["n9"]}), lambda: f.netem("n9", delay="1ms")):
        with pytest.raises(ValidationError, match=r"netns: no network namespace 'n9' in the sandbox \(it has: bare, n1"):
            call()
    assert host.ran == []
    assert f.active() == []


# --- the commands --------------------------------------------------------------------------------


def test_a_group_partition_is_one_restore_per_namespace_and_family(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    p = f.partition(["n1", "n2"], ["n3", "n4", "n5"])
    assert p.kind == "partition" and p.tag == "bridgenet-fault:" + p.id
    assert p.grudge == (("n1", ("n3", "n4", "n5")), ("n2", ("n3", "n4", "n5")), ("n3", ("n1", "n2")),
                        ("n4", ("n1", "n2")), ("n5", ("n1", "n2")))
    assert [(c.netns, c.argv) for c in p.commands] == [
        ("n1", ("iptables-restore", "--noflush")), ("n2", ("iptables-restore", "--noflush")),
        ("n3", ("iptables-restore", "--noflush")), ("n3", ("ip6tables-restore", "--noflush")),
        ("n4", ("iptables-restore", "--noflush")), ("n4", ("ip6tables-restore", "--noflush")),
        ("n5", ("iptables-restore", "--noflush")), ("n5", ("ip6tables-restore", "--noflush"))]
    assert p.commands[0].input == (
        "*filter\n-N BRIDGENET-FAULTS\n-I INPUT 1 -j BRIDGENET-FAULTS\n"
        f"-A BRIDGENET-FAULTS -s 10.77.0.13 -m comment --comment {p.tag} -j DROP\n"
        f"-A BRIDGENET-FAULTS -s 10.77.0.14 -m comment --comment {p.tag} -j DROP\n"
        f"-A BRIDGENET-FAULTS -s 10.77.0.15 -m comment --comment {p.tag} -j DROP\nCOMMIT\n")
    assert p.commands[3].input.splitlines()[3] == f"-A BRIDGENET-FAULTS -s fd00::12 -m comment --comment {p.tag} -j DROP"
    assert p.commands[0].shell().startswith("ip netns exec n1 iptables-restore --noflush <<'EOF'\n*filter\n")
    assert host.ran == list(p.commands)  # all of it in one go (one shell: faults_shell)
    assert f.active() == [f"partition [n1 n2] | [n3 n4 n5] ({p.tag})"] == f.active
    assert f.in_effect == (p,)


def test_drop_grudge_and_loss_rules(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    d = f.drop("n1", "n2")
    assert (d.kind, d.grudge, str(d)) == ("drop", (("n2", ("n1",)),), f"drop n1 -> n2 ({d.tag})")
    assert [c.netns for c in d.commands] == ["n2"]
    assert f"-A BRIDGENET-FAULTS -s 10.77.0.11 -m comment --comment {d.tag} -j DROP" in d.commands[0].input
    g = f.grudge({"n1": ["n2", "n3"], "n3": ["n1"]})
    assert [(c.netns, c.argv[0]) for c in g.commands] == [("n1", "iptables-restore"), ("n1", "ip6tables-restore"),
                                                          ("n3", "iptables-restore")]
    loss = f.loss("n2", 30)
    assert [c.argv[0] for c in loss.commands] == ["iptables-restore", "ip6tables-restore"]
    assert (f"-A BRIDGENET-FAULTS ! -i lo -m statistic --mode random --probability 0.3 -m comment --comment "
            f"{loss.tag} -j DROP") in loss.commands[0].input
    some = f.loss("n2", 12.5, peers=["n3"])
    assert [c.argv[0] for c in some.commands] == ["iptables-restore"]
    assert "-s 10.77.0.13 -m statistic --mode random --probability 0.125 -m comment" in some.commands[0].input
    assert str(some).startswith("loss 12.5% into n2 from n3")


def test_the_chain_is_made_once_and_removed_with_its_last_rule() -> None:
    first = faults_rules.parse_saved(EMPTY_SAVE)
    assert not first.has_chain and first.jumps == ()
    live = ("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            ":BRIDGENET-FAULTS - [0:0]\n[12:1008] -A INPUT -j BRIDGENET-FAULTS\n"
            "[3:252] -A INPUT -p tcp -j ACCEPT\n"
            '[5:420] -A BRIDGENET-FAULTS -s 10.77.0.13/32 -m comment --comment "bridgenet-fault:1-1" -j DROP\n'
            '[7:588] -A BRIDGENET-FAULTS ! -i lo -m statistic --mode random --probability 0.29999999981 '
            '-m comment --comment "bridgenet-fault:1-2" -j DROP\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n'
            "[1:1] -A PREROUTING -j BRIDGENET-FAULTS\nCOMMIT\n")
    saved = faults_rules.parse_saved(live)
    assert saved.has_chain and saved.jumps == ("-A INPUT -j BRIDGENET-FAULTS",)
    assert [(r.packets, r.comment) for r in saved.rules] == [(5, "bridgenet-fault:1-1"), (7, "bridgenet-fault:1-2")]
    assert faults_rules.counted([live, live], "bridgenet-fault:1-2") == 14
    again = faults_rules.apply_script(["-A BRIDGENET-FAULTS -s 10.0.0.1 -j DROP"], live)
    assert again == "*filter\n-A BRIDGENET-FAULTS -s 10.0.0.1 -j DROP\nCOMMIT\n"  # no -N, no second jump
    one = faults_rules.heal_script(saved, ["bridgenet-fault:1-1"])
    assert one == ('*filter\n-D BRIDGENET-FAULTS -s 10.77.0.13/32 -m comment --comment "bridgenet-fault:1-1" '
                   "-j DROP\nCOMMIT\n")
    both = faults_rules.heal_script(saved, ["bridgenet-fault:1-1", "bridgenet-fault:1-2"])
    assert both.splitlines()[-4:] == ["-D BRIDGENET-FAULTS ! -i lo -m statistic --mode random --probability "
                                      '0.29999999981 -m comment --comment "bridgenet-fault:1-2" -j DROP',
                                      "-D INPUT -j BRIDGENET-FAULTS", "-X BRIDGENET-FAULTS", "COMMIT"]
    assert faults_rules.heal_script(saved, ["bridgenet-fault:9-9"]) is None
    assert faults_rules.heal_script(first, ["bridgenet-fault:1-1"]) is None


def test_a_peer_masqueraded_on_the_bridge_is_dropped_by_its_frames_too() -> None:
    peer = json.loads(addr_json("10.201.0.4"))
    peer[1].update(link_type="ether", address="aa:bb:cc:00:00:04")
    receiver = json.loads(addr_json("10.201.0.5", "fd00::5"))
    host = json.loads(addr_json("10.201.0.1", "198.51.100.2", "fe80::1", "fd00::1"))
    via = faults_rules.masquerade_sources(host, receiver)
    assert [str(a) for a in via] == ["10.201.0.1", "fd00::1"]  # the host's addresses in the receiver's subnets
    drop = faults_rules.Drop(("container4",))
    addresses = {"container4": faults_rules.addresses_of(peer)}
    macs = {"container4": faults_rules.macs_of(peer)}
    assert faults_rules.rule_specs(drop, addresses, "T", 4, macs=macs, masquerade=via) == [
        "-A BRIDGENET-FAULTS -s 10.201.0.4 -m comment --comment T -j DROP",
        "-A BRIDGENET-FAULTS -s 10.201.0.1 -m mac --mac-source aa:bb:cc:00:00:04 -m comment --comment T -j DROP"]
    assert faults_rules.rule_specs(drop, addresses, "T", 6, macs=macs, masquerade=via) == [
        "-A BRIDGENET-FAULTS -s fd00::1 -m mac --mac-source aa:bb:cc:00:00:04 -m comment --comment T -j DROP"]


def test_addresses_skip_host_scope_only() -> None:
    got = faults_rules.addresses_of(json.loads(addr_json("10.0.0.2", "fe80::1", "fd00::2")))
    assert [str(a) for a in got] == ["10.0.0.2", "fe80::1", "fd00::2"]


def test_healing_removes_each_fault_from_live_state(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    d = f.drop("n1", "n2")
    host.saved[("n2", "iptables-save")] = (
        "*filter\n:BRIDGENET-FAULTS - [0:0]\n-A INPUT -j BRIDGENET-FAULTS\n"
        f'-A BRIDGENET-FAULTS -s 10.77.0.11/32 -m comment --comment "{d.tag}" -j DROP\nCOMMIT\n')
    host.ran.clear()
    assert f.heal(d) is None
    assert [c.input for c in host.ran] == [
        f'*filter\n-D BRIDGENET-FAULTS -s 10.77.0.11/32 -m comment --comment "{d.tag}" -j DROP\n'
        "-D INPUT -j BRIDGENET-FAULTS\n-X BRIDGENET-FAULTS\nCOMMIT\n"]
    assert f.active() == []


def test_a_real_failure_to_undo_is_reported(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    d = f.drop("n1", "n2")
    host.saved[("n2", "iptables-save")] = (
        "*filter\n:BRIDGENET-FAULTS - [0:0]\n-A INPUT -j BRIDGENET-FAULTS\n"
        f'-A BRIDGENET-FAULTS -s 10.77.0.11/32 -m comment --comment "{d.tag}" -j DROP\nCOMMIT\n')
    host.restore_fails = True
    with pytest.raises(FaultError, match=r"(?s)could not undo drop n1 -> n2 .*failed \(exit 1\): iptables-restore: line 2"):
        f.heal(d)
    host.restore_fails = False
    d2 = f.drop("n1", "n2")
    host.saved[("n2", "iptables-save")] = host.saved[("n2", "iptables-save")].replace(d.tag, d2.tag)
    host.restore_fails = True
    (line,) = f.heal_all()
    assert line.startswith("ip netns exec n2 iptables-restore --noflush <<'EOF'") and "Bad rule" in line
    with pytest.raises(FaultError, match=r"(?s)faults.drop: ip netns exec n4 iptables-restore.*what it had "
                                         r"changed is undone"):
        f.drop("n3", "n4")
    assert f.active() == []


def test_undoing_in_a_namespace_that_is_gone_is_nothing_to_do(host: FakeHost) -> None:
    f = Faults(object())  # type: ignore[arg-type]
    f.partition(["n1"], ["n3"])
    f.netem("n4", delay="5ms")
    del host.spaces["n1"], host.spaces["n3"], host.spaces["n4"]
    host.ran.clear()
    assert f.heal_all() == []
    assert host.ran == [] and f.active == []


# --- netem ---------------------------------------------------------------------------------------


def test_netem_arguments_and_commands(host: FakeHost) -> None:
    args = netem.netem_args(delay=0.1, jitter="10ms", reorder=25, duplicate="1%", corrupt=0.1, loss=2)
    assert args.argv() == ["netem", "delay", "100ms", "10ms", "reorder", "25%", "duplicate", "1%",
                           "corrupt", "0.1%", "loss", "random", "2%"]
    f = Faults(object())  # type: ignore[arg-type]
    n = f.delay("n1", "100ms", jitter="10ms")
    assert n.kind == "netem" and n.links == (("n1", "eth0", 2),)
    assert [c.full_argv for c in n.commands] == [
        ("ip", "netns", "exec", "n1", "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "100ms", "10ms")]
    assert [c.full_argv for c in n.undo] == [("ip", "netns", "exec", "n1", "tc", "qdisc", "del", "dev", "eth0", "root")]
    assert f.active() == [f"netem delay 100ms 10ms on n1 ({n.tag})"]


def test_netem_on_a_link_with_a_qdisc_of_its_own_is_refused(host: FakeHost) -> None:
    host.qdisc = {"kind": "tbf", "handle": "8001:", "dev": "eth0", "root": True}
    with pytest.raises(FaultError, match="eth0 in n1 already has the root qdisc tbf"):
        Faults(object()).netem("n1", delay="1ms")  # type: ignore[arg-type]
    assert host.ran == []


def test_a_kernel_without_netem_is_named_and_handed_to_the_hook(host: FakeHost) -> None:
    host.netem_ok = False
    seen = []
    f = Faults(object(), on_unavailable=seen.append)  # type: ignore[arg-type]
    with pytest.raises(NetemUnavailableError, match="sch_netem kernel module is missing") as e:
        f.netem("n1", delay="100ms")
    assert seen == [e.value] and isinstance(e.value, FaultError)
    assert (e.value.netns, e.value.link) == ("n1", "eth0")
    assert [c.argv for c in host.ran][-2:] == [("tc", "qdisc", "add", "dev", "eth0", "root", "netem"),
                                              ("tc", "qdisc", "del", "dev", "eth0", "root")]  # the probe
    assert f.active() == []


# --- the shell, the layout -----------------------------------------------------------------------


def test_one_shell_frames_each_command_and_guards_namespaces() -> None:
    cmds = [FaultCommand(None, ("ip", "-json", "netns", "list")),
            FaultCommand("n1", ("iptables-restore", "--noflush"), "*filter\nCOMMIT\n")]
    text = faults_shell.script(cmds, merge_stderr=True)
    assert "if [ -e /run/netns/n1 ]; then printf '%s\\n' '*filter\nCOMMIT\n' | ip netns exec n1 " \
           "iptables-restore --noflush 2>&1; rc=$?; else rc=gone; fi" in text
    out = ("@@bridgenet-fault 0\n[]\n\n@@bridgenet-fault-end 0 0\n"
           "@@bridgenet-fault 1\n\n@@bridgenet-fault-end 1 gone\n")
    assert faults_shell.parse(out, 2) == [Outcome(0, "[]\n"), Outcome(1, "", False)]
    assert faults_shell.parse("", 1) == [Outcome(1, "")]


def test_the_older_module_offers_the_same_objects() -> None:
    for name in older.__all__:
        assert getattr(older, name) is (getattr(faults_mod, name, None) or getattr(faults_links, name)), name
    assert older.Fault is Fault


def test_a_fault_made_elsewhere_cannot_count() -> None:
    f = Fault("drop", "1-1", "bridgenet-fault:1-1", (), (), (("a", ("b",)),), "drop b -> a")
    with pytest.raises(TypeError, match="not made by a Faults object"):
        f.dropped()


def test_a_loss_given_as_a_percent_string_is_that_probability() -> None:
    from bridgenet.testing.faults_rules import probability

    assert probability("30%") == probability(30) == "0.3"
    assert probability("12.5%") == "0.125"
