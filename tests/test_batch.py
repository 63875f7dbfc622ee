"""The batch runner: its plan and script (fast), and that batching changes nothing (real).

Real tests bring the same network up (and down) one command at a time in
one sandbox and batched in another, and compare the live state read back
with ``ip -json``, ``iptables-save`` and ``sysctl``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

import pytest

import bridgenet
from bridgenet.batch import (
    SH_C_LIMIT,
    BatchRunner,
    Invocation,
    ip_batch_line,
    iptables_restore_rule,
    plan,
    render_shell,
)
from bridgenet.commands import Command, ip, iptables, sysctl_w
from bridgenet.errors import BatchError, CommandError, ValidationError
from bridgenet.runners import RecordingRunner, Result
from bridgenet.sandbox import Sandbox
from helpers import check_golden

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"


def twenty() -> bridgenet.Network:
    """A tagged network of 20 containers (link aliases, iptables comments, FORWARD rules too)."""
    cs = [bridgenet.Container(f"c{i}", f"10.201.0.{10 + i}") for i in range(20)]
    return bridgenet.bridge_network("twenty", cs, tag=True)


NETWORKS = {"tutorial": bridgenet.tutorial, "twenty": twenty}


# --- fast: plan and script -----------------------------------------------------------------




@pytest.mark.parametrize(
    "name, make",
    [
        ("batch-tutorial-up.txt", lambda n: BatchRunner(RecordingRunner()).script(n.up_commands(fast=True))),
        ("batch-tutorial-down.txt",
         lambda n: BatchRunner(RecordingRunner()).script(n.down_commands(), direction="down")),
        ("batch-tutorial-up-lesson.txt", lambda n: BatchRunner(RecordingRunner()).script(n.up_commands())),
    ],
)
def test_script_golden(name, make):
    check_golden(name, make(bridgenet.tutorial()))


def mixed() -> list[Command]:
    """Every kind of command the planner distinguishes, interleaved."""
    return [
        ip("link", "add", "br0", "type", "bridge"),
        ip("netns", "add", "a"),
        ip("link", "set", "dev", "lo", "up", netns="a"),
        ip("netns", "add", "b"),
        ip("link", "set", "dev", "lo", "up", netns="b"),
        sysctl_w("net.ipv4.ip_forward", "1"),
        iptables("-t", "nat", "-A", "POSTROUTING", "-s", "10.201.0.0/24", "-j", "MASQUERADE"),
        ip("route", "add", "default", "via", "10.201.0.1", netns="a"),
        sysctl_w("net.ipv4.ip_forward", "1", netns="a"),
        iptables("-P", "FORWARD", "DROP"),
        iptables("-A", "FORWARD", "-i", "br0", "-j", "ACCEPT"),
        iptables("-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE", netns="b"),
        sysctl_w("net.ipv4.conf.all.rp_filter", "0"),
        Command("tc", ("qdisc", "show")),
        ip("link", "set", "br0", "up"),
    ]


def test_plan_order_up():
    p = plan(mixed(), direction="up")
    assert [shlex.join(i.argv) for i in p] == [
        "ip -batch -",
        "ip -n a -batch -",
        "ip -n b -batch -",
        "sysctl -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0",
        "ip netns exec a sysctl -w net.ipv4.ip_forward=1",
        "iptables-restore --noflush -w",
        "iptables -P FORWARD DROP",
        "iptables-restore --noflush -w",
        "ip netns exec b iptables -t nat -A POSTROUTING -j MASQUERADE",
        "tc qdisc show",
    ]
    assert [i.kind for i in p] == [
        "ip", "ip-netns", "ip-netns", "sysctl", "alone", "iptables", "alone", "iptables", "alone", "alone",
    ]
    assert p[0].lines == ("link add br0 type bridge", "netns add a", "netns add b", "link set br0 up")
    assert p[1].lines == ("link set dev lo up", "route add default via 10.201.0.1")
    assert p[5].lines == ("*nat", "-A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE", "COMMIT")
    assert p[7].lines == ("*filter", "-A FORWARD -i br0 -j ACCEPT", "COMMIT")
    # every command is in exactly one process
    assert sorted(map(str, (c for i in p for c in i.commands))) == sorted(map(str, mixed()))


def test_untranslatable_host_commands_keep_their_place():
    cmds = [
        sysctl_w("net.ipv4.ip_forward", "1"),
        sysctl_w("net.ipv4.conf.all.rp_filter", "0"),
        Command("sysctl", ("-q", "-w", "net.ipv4.ip_forward=0")),
        sysctl_w("net.ipv4.ip_forward", "1"),
        iptables("-A", "FORWARD", "-j", "ACCEPT"),
        iptables("-F", "FORWARD"),
        iptables("-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE"),
        iptables("-A", "FORWARD", "-j", "DROP"),
    ]
    assert [shlex.join(i.argv) for i in plan(cmds)] == [
        "sysctl -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0",
        "sysctl -q -w net.ipv4.ip_forward=0",
        "sysctl -w net.ipv4.ip_forward=1",
        "iptables-restore --noflush -w",
        "iptables -F FORWARD",
        "iptables-restore --noflush -w",
    ]
    last = plan(cmds)[-1]
    assert last.input == "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n*filter\n-A FORWARD -j DROP\nCOMMIT\n"


def test_plan_order_down_mirrors_up():
    up = plan(mixed(), direction="up")
    down = plan(mixed(), direction="down")
    groups = lambda p: [i.argv for i in p]  # noqa: E731
    # the groups come in reverse order, each keeping its own commands in order
    assert groups(down) == (
        groups(up)[9:] + groups(up)[5:9] + groups(up)[3:5] + groups(up)[1:3] + groups(up)[:1]
    )
    assert down[-1].lines == up[0].lines


def test_plan_of_a_network_up_and_down():
    net = twenty()
    up = plan(net.up_commands(fast=True), jobs=1)
    assert [i.argv for i in up] == [
        ("ip", "-batch", "-"),
        *[("ip", "-n", f"c{i}", "-batch", "-") for i in range(20)],
        ("ip", "-batch", "-"),  # plug the ports in last
        ("sysctl", "-w", "net.ipv4.ip_forward=1"),
        ("iptables-restore", "--noflush", "-w"),
    ]
    assert sum(len(i.commands) for i in up) == len(net.up_commands(fast=True))
    assert {c.step.split()[0] for c in up[21].commands} == {"port"}
    assert not any(c.step.startswith("port ") for c in up[0].commands)
    down = plan(net.down_commands(), direction="down")
    assert [i.argv for i in down] == [
        ("iptables-restore", "--noflush", "-w"), ("sysctl", "-w", "net.ipv4.ip_forward=0"), ("ip", "-batch", "-"),
    ]
    rules = [c for c in net.down_commands() if c.tool == "iptables"]
    assert rules and all(c.args[0] in ("-D", "-X") or c.args[2] == "-D" for c in rules)
    assert sorted(ln for ln in down[0].lines if ln.startswith(("-D ", "-X "))) == sorted(
        iptables_restore_rule(c)[1] for c in rules)
    assert "*nat" in down[0].lines and down[0].lines[-1] == "COMMIT"


@pytest.mark.parametrize("jobs", [1, 2])
def test_many_namespaces_enter_with_nsenter(jobs):
    """From NSENTER_MIN namespaces on, each namespace batch is ``nsenter --net=/run/netns/NS ip -batch -``
    (``ip -n`` copies a mount table that grows with the namespaces); below it, ``ip -n NS -batch -``."""
    from bridgenet.batch import NSENTER_MIN

    def namespaced(n: int) -> list[Invocation]:
        cs = [bridgenet.Container(f"c{i}", f"10.202.{i // 200}.{10 + i % 200}") for i in range(n)]
        net = bridgenet.bridge_network("many", cs, gateway="10.202.255.254/16")
        return [i for i in plan(net.up_commands(fast=True), jobs=jobs) if i.kind == "ip-netns"]

    few = namespaced(NSENTER_MIN - 1)
    assert {i.argv[:2] for i in few} == {("ip", "-n")}
    assert [i.argv for i in few[:1]] == [("ip", "-n", "c0", "-batch", "-")]
    many = namespaced(NSENTER_MIN)
    assert len(many) == NSENTER_MIN
    assert all(i.argv == ("nsenter", f"--net=/run/netns/{i.netns}", "ip", "-batch", "-") for i in many)
    assert sorted(i.netns for i in many) == sorted(f"c{i}" for i in range(NSENTER_MIN))


def test_plan_rejects_bad_direction_and_empty_is_empty():
    with pytest.raises(ValueError):
        plan([], direction="sideways")
    assert plan([]) == ()
    r = RecordingRunner()
    BatchRunner(r).execute([])
    assert r.execs == [] and r.commands == []


def test_ip_batch_quoting():
    assert ip_batch_line(ip("link", "set", "dev", "x", "alias", "two words")) == "link set dev x alias 'two words'"
    assert ip_batch_line(ip("link", "set", "dev", "x", "alias", "it's")) == "link set dev x alias it's"
    assert ip_batch_line(ip("link", "set", "dev", "x", "alias", "it's here")) == 'link set dev x alias "it\'s here"'
    assert ip_batch_line(ip("link", "set", "dev", "x", "alias", "'q")) == "link set dev x alias \"'q\""
    assert ip_batch_line(ip("link", "set", "dev", "x", "alias", "")) == "link set dev x alias ''"
    for bad in ("a#b", "two\nlines", "both ' and \""):
        with pytest.raises(ValidationError):
            ip_batch_line(ip("link", "set", "dev", "x", "alias", bad))
    with pytest.raises(ValidationError):
        plan([ip("link", "set", "dev", "x", "alias", "a#b", netns="n")])


def test_iptables_restore_translation():
    assert iptables_restore_rule(iptables("-A", "FORWARD", "-j", "ACCEPT")) == ("filter", "-A FORWARD -j ACCEPT")
    assert iptables_restore_rule(iptables("-t", "nat", "--delete", "POSTROUTING", "-j", "MASQUERADE")) == (
        "nat", "-D POSTROUTING -j MASQUERADE")
    assert iptables_restore_rule(
        iptables("-I", "INPUT", "-m", "comment", "--comment", 'say "hi" \\ there', "-j", "ACCEPT")
    ) == ("filter", r'-I INPUT -m comment --comment "say \"hi\" \\ there" -j ACCEPT')
    # chains: -N/-X CHAIN lines (never the ":CHAIN - [0:0]" declaration, which flushes an existing chain)
    assert iptables_restore_rule(iptables("-N", "BRIDGENET-FORWARD")) == ("filter", "-N BRIDGENET-FORWARD")
    assert iptables_restore_rule(iptables("-t", "nat", "-X", "X")) == ("nat", "-X X")
    for untranslatable in (("-P", "FORWARD", "DROP"), ("-N",), ("-X",), ("-X", "A", "B"), ("-A", "-j"),
                           ("-A", "X", "-t", "nat"), ("-w", "-A", "X", "-j", "ACCEPT"), ("-A",)):
        assert iptables_restore_rule(iptables(*untranslatable)) is None
    assert iptables_restore_rule(ip("link")) is None


def test_script_is_the_plan_rendered():
    cmds = bridgenet.tutorial().up_commands(fast=True)
    b = BatchRunner(RecordingRunner())
    assert b.script(cmds) == render_shell(b.plan(cmds))
    text = b.script(cmds)
    assert text.startswith("set -e\nip -batch - <<'EOF'\nlink add br0 type bridge\n")
    assert text.count("<<'EOF'") == 5  # host, container4, container5, the ports, iptables-restore


def test_heredoc_delimiter_avoids_input_lines():
    text = render_shell([Invocation(("cat",), "EOF\nEOF1\n", (), "ip")])
    assert text == "set -e\ncat <<'EOF2'\nEOF\nEOF1\nEOF2\n"


class FakeRunner(RecordingRunner):
    """Records exec input; fails the exec calls listed in ``fail_exec``.

    ``fail_exec`` maps an argv line, or the line of its first two words
    (``"sh -c"``), to a Result or an error to raise.
    """

    def __init__(self, fail_exec=None):
        super().__init__()
        self.inputs: list[str | None] = []
        self.fail_exec = dict(fail_exec or {})

    def exec(self, argv, *, input=None, check=True, timeout=None):
        argv = tuple(argv)
        self.execs.append(argv)
        self.inputs.append(input)
        bad = self.fail_exec.get(shlex.join(argv), self.fail_exec.get(shlex.join(argv[:2])))
        if bad is None:
            return Result(argv)
        if isinstance(bad, Exception):
            raise bad
        result = bad(input) if callable(bad) else bad
        if check and not result.ok:
            raise CommandError(argv, result.exit_code, result.stderr, result.stdout)
        return result


def without_marks(executed: str) -> str:
    return "".join(
        re.sub(r" \|\| \{ rc=\$\?; echo .@@bridgenet-batch-failed .*$", "", line.replace(" </dev/null", ""))
        for line in executed.splitlines(keepends=True)
        if not line.startswith("echo '@@bridgenet-batch ")
    )


def test_one_shell_runs_the_script_in_one_process():
    cmds = bridgenet.tutorial().up_commands(fast=True)
    r = FakeRunner()
    BatchRunner(r).execute(cmds)
    assert len(r.execs) == 1 and r.execs[0][:2] == ("sh", "-c") and r.inputs == [None]
    assert r.commands == []
    executed = r.execs[0][2]
    # the executed script is the printed one plus marks and </dev/null, nothing else
    assert without_marks(executed) == BatchRunner(r).script(cmds)
    assert "echo '@@bridgenet-batch 4' >&2\n" in executed


def test_one_shell_feeds_a_big_script_on_stdin():
    cs = [bridgenet.Container(f"c{i}", f"10.200.{i // 200}.{i % 200 + 2}/16", veth=f"h{i}") for i in range(600)]
    net = bridgenet.bridge_network("big", cs, gateway="10.200.255.1/16")
    cmds = net.up_commands(fast=True)
    r = FakeRunner()
    BatchRunner(r).execute(cmds)
    assert r.execs == [("sh", "-s")]
    assert len(r.inputs[0].encode()) > SH_C_LIMIT
    assert without_marks(r.inputs[0]) == BatchRunner(r).script(cmds)


def test_exec_mode_runs_each_process():
    cmds = mixed()
    r = FakeRunner()
    BatchRunner(r, one_shell=False).execute(cmds)
    p = plan(cmds)
    assert r.execs == [i.argv for i in p if i.kind != "alone"]
    assert r.inputs == [i.input for i in p if i.kind != "alone"]
    assert r.commands == [i.commands[0] for i in p if i.kind == "alone"]


@pytest.mark.parametrize("one_shell", [True, False])
def test_progress_counts_processes(one_shell):
    cmds = twenty().up_commands(fast=True)  # 24 processes
    seen = []
    BatchRunner(FakeRunner(), one_shell=one_shell, jobs=1).execute(cmds, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 24) and seen[-1] == (24, 24)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})
    if one_shell:
        assert len(seen) == 1 + 12  # chunks of ceil(24 / 20) = 2 processes
    else:
        assert seen == [(i, 24) for i in range(25)]


def test_one_shell_failure_names_the_failing_process():
    cmds = bridgenet.tutorial().up_commands(fast=True)
    stderr = (
        "@@bridgenet-batch 0\n@@bridgenet-batch 1\nsome warning\n@@bridgenet-batch 2\n"
        "RTNETLINK answers: File exists\nCommand failed -:2\n"
    )
    r = FakeRunner({"sh -c": Result(("sh", "-c"), 2, "", stderr)})
    with pytest.raises(BatchError) as info:
        BatchRunner(r).execute(cmds)
    e = info.value
    p = plan(cmds)
    assert isinstance(e, CommandError)
    assert e.argv == ("ip", "-n", "container5", "-batch", "-") == p[2].argv
    assert e.exit_code == 2
    assert e.stderr == "RTNETLINK answers: File exists\nCommand failed -:2\n"
    assert e.lines == p[2].lines and e.commands == p[2].commands
    assert "ip -n container5 -batch -" in str(e)


def test_one_shell_failure_before_any_process():
    r = FakeRunner({"sh -c": CommandError(("sh", "-c"), 127, "sh: command not found")})
    with pytest.raises(BatchError) as info:
        BatchRunner(r).execute(bridgenet.tutorial().up_commands(fast=True))
    assert info.value.argv == ("sh", "-c", "SCRIPT") and info.value.exit_code == 127
    assert info.value.lines[0] == "set -e"


def test_exec_mode_failure():
    cmds = bridgenet.tutorial().up_commands(fast=True)
    err = CommandError(("ip", "-n", "container4", "-batch", "-"), 1, "Error: Nexthop has invalid gateway.\n")
    r = FakeRunner({"ip -n container4 -batch -": err})
    with pytest.raises(BatchError) as info:
        BatchRunner(r, one_shell=False).execute(cmds, progress=lambda d, t: None)
    e = info.value
    assert e.argv == ("ip", "-n", "container4", "-batch", "-") and e.exit_code == 1
    assert "Nexthop" in e.stderr and e.lines[0] == "addr add 10.201.0.4/24 dev veth4"
    assert len(r.execs) == 2  # the host batch, then this one; nothing after


# --- real: batched == step by step -------------------------------------------------------------

_SNAPSHOT = r"""
for ns in "" {names}; do
  if [ -z "$ns" ]; then set --; else set -- -n "$ns"; fi
  echo "@@netns=$ns"
  echo "@@link"; ip "$@" -json -details link show
  echo "@@nsid"; ip "$@" -json netns list-id
  echo "@@addr"; ip "$@" -json addr show
  echo "@@route"; ip "$@" -4 -json route show table all
  echo "@@sysctl"
  if [ -z "$ns" ]; then sysctl -n net.ipv4.ip_forward; else ip netns exec "$ns" sysctl -n net.ipv4.ip_forward; fi
  echo "@@end"
done
echo "@@iptables"; iptables-save
"""


def read(sb, *argv: str) -> str:
    """stdout of ``argv`` in the sandbox host, which must succeed.

    Through the runner without a timeout (``Sandbox.run`` wraps commands in
    timeout(1), one process more).
    """
    return sb.runner().exec(argv, check=True).stdout


def _raw(sb) -> tuple[list[str], dict[str, dict[str, str]], str]:
    names = sorted(n["name"] for n in json.loads(read(sb, "ip", "-json", "netns", "list") or "[]"))
    out = read(sb, "sh", "-c", _SNAPSHOT.format(names=" ".join(map(shlex.quote, names))))
    sections: dict[str, dict[str, str]] = {}
    ns = section = None
    buf: list[str] = []
    iptables_text = ""
    for line in out.splitlines():
        if line.startswith("@@netns="):
            ns = line[len("@@netns="):] or "<host>"
            sections[ns] = {}
            continue
        if line.startswith("@@"):
            if section is not None and ns is not None:
                sections[ns][section] = "\n".join(buf)
            section, buf = line[2:], []
            continue
        buf.append(line)
    iptables_text = "\n".join(buf) if section == "iptables" else ""
    return names, sections, iptables_text


def _iptables(text: str) -> list[str]:
    """iptables-save without comments, counters, and tables holding no rule and default policies."""
    out: list[str] = []
    table: list[str] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = [line]
        elif line == "COMMIT":
            trivial = all(t.startswith("*") or (t.startswith(":") and " ACCEPT " in t + " ") for t in table)
            if not trivial:
                out.extend(table + [line])
            table = []
        else:
            table.append(line.split(" [")[0] if line.startswith(":") else line)
    return out


def snapshot(sb) -> dict:
    """Normalised live state of the sandbox host and every namespace (no ifindex, no MAC)."""
    names, sections, ipt = _raw(sb)
    links = {ns: json.loads(s["link"] or "[]") for ns, s in sections.items()}
    by_index = {ns: {ln["ifindex"]: ln["ifname"] for ln in ls} for ns, ls in links.items()}
    state: dict = {"netns": names, "iptables": _iptables(ipt)}
    for ns, s in sections.items():
        nsids = {n["nsid"]: n.get("name", "<host>") for n in json.loads(s["nsid"] or "[]")}
        norm_links = []
        for ln in links[ns]:
            peer = None
            if "link_index" in ln:
                where = nsids.get(ln["link_netnsid"], "?") if "link_netnsid" in ln else ns
                peer = (where, by_index.get(where, {}).get(ln["link_index"], "?"))
            info = ln.get("linkinfo", {})
            norm_links.append({
                "ifname": ln["ifname"], "kind": info.get("info_kind"), "master": ln.get("master"),
                "operstate": ln.get("operstate"), "flags": sorted(ln.get("flags", [])), "mtu": ln.get("mtu"),
                "alias": ln.get("ifalias"), "peer": peer,
            })
        addrs = []
        for ln in json.loads(s["addr"] or "[]"):
            for a in ln.get("addr_info", []):
                if a.get("family") == "inet6" and a.get("scope") == "link":
                    continue  # made from the random MAC
                addrs.append((ln["ifname"], a.get("family"), a.get("local"), a.get("prefixlen"),
                              a.get("broadcast"), a.get("scope")))
        routes = sorted(
            json.dumps({k: v for k, v in r.items() if k != "flags"}, sort_keys=True)
            for r in json.loads(s["route"] or "[]")
        )
        state[ns] = {
            "links": sorted(norm_links, key=lambda d: d["ifname"]), "addrs": sorted(addrs, key=str),
            "routes": routes, "ip_forward": s["sysctl"].strip().splitlines()[-1] if s["sysctl"].strip() else None,
        }
    return state


def settled(sb, timeout: float = 5.0) -> dict:
    """``snapshot`` once two reads 0.2 s apart agree (operstate and carrier flags follow link
    events asynchronously: the kernel's linkwatch may wait up to a second)."""
    last = snapshot(sb)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = snapshot(sb)
        if now == last:
            return now
        last = now
    return last


def _stepwise(name: str) -> dict[str, dict]:
    net = NETWORKS[name]()
    with Sandbox() as sb:
        r = sb.runner()
        empty = settled(sb)
        for c in net.up_commands():
            r.run(c)
        up = settled(sb)
        for c in net.down_commands():
            r.run(c)
        down = settled(sb)
    return {"empty": empty, "up": up, "down": down}


_STEPWISE: dict[str, dict[str, dict]] = {}


def stepwise(name: str) -> dict[str, dict]:
    if name not in _STEPWISE:
        _STEPWISE[name] = _stepwise(name)
    return _STEPWISE[name]


@pytest.mark.real
@pytest.mark.parametrize("one_shell", [True, False], ids=["one-shell", "exec-each"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_batch_equals_step_by_step(name, one_shell):
    ref = stepwise(name)
    net = NETWORKS[name]()
    with Sandbox() as sb:
        empty = settled(sb)
        assert empty == ref["empty"]
        b = BatchRunner(sb.runner(), one_shell=one_shell)
        b.execute(net.up_commands(fast=True))
        up = settled(sb)
        assert up["netns"] == sorted(ns.name for ns in net.namespaces)
        assert any(rule.startswith("-A POSTROUTING") for rule in up["iptables"])
        assert up["<host>"]["ip_forward"] == "1"
        assert up == ref["up"]
        b.execute(net.down_commands(), direction="down")
        down = settled(sb)
        assert down == ref["down"] == empty


def awkward() -> list[Command]:
    """Arguments that need quoting in a batch file (spaces, quotes, a backslash)."""
    return [
        ip("link", "add", "br0", "type", "bridge"),
        ip("link", "set", "dev", "br0", "alias", "two words, it's"),
        ip("netns", "add", "a"),
        ip("link", "set", "dev", "lo", "alias", 'say "hi"', netns="a"),
        iptables("-t", "nat", "-A", "POSTROUTING", "-s", "10.201.0.0/24", "-m", "comment",
                 "--comment", 'say "hi" \\ twice', "-j", "MASQUERADE"),
        iptables("-A", "FORWARD", "-m", "comment", "--comment", "it's here", "-j", "ACCEPT"),
    ]


@pytest.mark.real
@pytest.mark.parametrize("one_shell", [True, False], ids=["one-shell", "exec-each"])
def test_nsenter_batches_equal_step_by_step(monkeypatch, one_shell):
    """Above NSENTER_MIN namespaces, ``nsenter --net=... ip -batch -`` builds the same network."""
    from bridgenet import batchplan as batch_module

    monkeypatch.setattr(batch_module, "NSENTER_MIN", 2)
    ref = stepwise("twenty")
    net = NETWORKS["twenty"]()
    with Sandbox() as sb:
        b = BatchRunner(sb.runner(), one_shell=one_shell)
        assert any(i.argv[0] == "nsenter" for i in b.plan(net.up_commands(fast=True)))
        b.execute(net.up_commands(fast=True))
        assert settled(sb) == ref["up"]
        b.execute(net.down_commands(), direction="down")
        assert settled(sb) == ref["down"]


@pytest.mark.real
def test_quoted_arguments_arrive_intact():
    states = []
    for batched in (False, True):
        with Sandbox() as sb:
            if batched:
                BatchRunner(sb.runner()).execute(awkward())
            else:
                for c in awkward():
                    sb.runner().run(c)
            states.append(settled(sb))
    step, batch = states
    assert batch == step
    aliases = {ln["ifname"]: ln["alias"] for ln in batch["<host>"]["links"]}
    assert aliases["br0"] == "two words, it's"
    assert {ln["ifname"]: ln["alias"] for ln in batch["a"]["links"]}["lo"] == 'say "hi"'
    assert any("say" in rule and "twice" in rule for rule in batch["iptables"])


@pytest.mark.real
def test_iptables_restore_is_all_or_nothing():
    """A restore file whose second line fails changes nothing (nf_tables: one transaction)."""
    cmds = [
        iptables("-t", "nat", "-A", "POSTROUTING", "-s", "10.201.0.0/24", "-j", "MASQUERADE"),
        iptables("-t", "nat", "-D", "POSTROUTING", "-s", "10.9.0.0/24", "-j", "MASQUERADE"),  # no such rule
    ]
    with Sandbox() as sb:
        with pytest.raises(BatchError) as info:
            BatchRunner(sb.runner()).execute(cmds)
        assert info.value.argv == ("iptables-restore", "--noflush", "-w")
        assert "-A POSTROUTING" not in read(sb, "iptables-save")


@pytest.mark.real
@pytest.mark.parametrize("one_shell", [True, False], ids=["one-shell", "exec-each"])
def test_failing_batch_raises_batch_error(one_shell):
    net = bridgenet.tutorial()
    with Sandbox() as sb:
        read(sb, "ip", "link", "add", "br0", "type", "bridge")  # the batch's first line will fail
        with pytest.raises(BatchError) as info:
            BatchRunner(sb.runner(), one_shell=one_shell).execute(net.up_commands(fast=True))
        e = info.value
        assert e.argv == ("ip", "-batch", "-")
        assert e.exit_code != 0
        assert "File exists" in e.stderr  # strerror(EEXIST)
        assert "@@bridgenet-batch" not in e.stderr
        assert e.lines[0] == "link add br0 type bridge"
        assert e.commands[0].shell() == "ip link add br0 type bridge"
        # ip -batch stopped at line 1: nothing after it ran
        assert read(sb, "ip", "netns", "list").strip() == ""
        assert "MASQUERADE" not in read(sb, "iptables-save")


@pytest.mark.real
@pytest.mark.parametrize("one_shell", [True, False], ids=["one-shell", "exec-each"])
def test_failing_namespace_batch_reports_its_own_stderr(one_shell):
    cmds = [
        ip("netns", "add", "a"),
        ip("netns", "add", "b"),
        ip("link", "set", "dev", "lo", "up", netns="a"),
        ip("route", "add", "default", "via", "10.9.9.9", netns="b"),  # no such on-link subnet
        sysctl_w("net.ipv4.ip_forward", "1"),
    ]
    with Sandbox() as sb:
        with pytest.raises(BatchError) as info:
            BatchRunner(sb.runner(), one_shell=one_shell).execute(cmds)
        e = info.value
        assert e.argv == ("ip", "-n", "b", "-batch", "-")
        assert e.exit_code != 0 and e.stderr.strip()
        assert e.lines == ("route add default via 10.9.9.9",)
        # what came before ran; what came after did not
        listed = json.loads(read(sb, "ip", "-json", "netns", "list") or "[]")
        assert sorted(n["name"] for n in listed) == ["a", "b"]
        assert read(sb, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
