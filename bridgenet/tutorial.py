"""The lesson: its network, and the narrated run that checks every claim it makes.

``tutorial()`` returns the lesson's network, whose ``up_commands()`` are the
23 commands of the lesson in its order. :func:`run_tutorial` runs them for
real inside a throwaway :class:`bridgenet.sandbox.Sandbox` with an upstream
namespace standing in for the internet, and at the lesson's points checks
what the lesson says a person would see.
"""

from __future__ import annotations

import json
import sys
from typing import IO

import attrs

from .network import Container, Network, bridge_network

BRIDGE = "br0"
GATEWAY = "10.201.0.1/24"
SUBNET = "10.201.0.0/24"
CONTAINERS = (
    Container("container4", "10.201.0.4/24", veth="brid4", peer="veth4"),
    Container("container5", "10.201.0.5/24", veth="brid5", peer="veth5"),
)


def tutorial() -> Network:
    """The lesson's network: br0 at 10.201.0.1/24, container4 and container5, forwarding and NAT.

    Untagged (no link alias, no iptables comment), so that its transcript is
    the lesson's, command for command.
    """
    return bridge_network("tutorial", CONTAINERS, bridge=BRIDGE, gateway=GATEWAY, tag=False, lesson_form=True)


# --- the narrated run ---------------------------------------------------------------


@attrs.frozen
class Check:
    """One claim of the lesson, checked at a point of the run.

    Attributes:
        after: key of the step after which it runs (``""``: after everything,
            before the teardown; ``"down"``: after the teardown).
        claim: what the lesson says, in one line.
        shows: the command a person would type to see it.
        expect: True when the lesson says it succeeds, False when it says it fails.
        why: one line of explanation.
        observe: when True the outcome is reported but does not count
            (the lesson's observation depends on the kernel version).
    """

    after: str
    claim: str
    shows: str
    expect: bool
    why: str
    observe: bool = False


UP_ADDR = "198.51.100.1"
UPLINK_ADDR = "198.51.100.2"

CHECKS = (
    Check("link br0", "br0 has no port yet", "ip -json link show br0", True,
          "the lesson saw DOWN/NO-CARRIER; newer kernels report a bridge without ports as UNKNOWN", observe=True),
    Check("addr veth4@container4", "veth4 is LOWERLAYERDOWN", "ip netns exec container4 ip -json link show veth4",
          True, "its peer brid4 is still down, so the cable is not live yet"),
    Check("port brid5", "container4 reaches container5", "ip netns exec container4 ping -c 1 10.201.0.5", True,
          "both are bridge ports of br0: one layer-2 segment"),
    Check("port brid5", "container5 reaches container4", "ip netns exec container5 ping -c 1 10.201.0.4", True,
          "the same segment, the other way"),
    Check("port brid5", "the host cannot reach container4 yet", "ping -c 1 10.201.0.4", False,
          "the host has no address on 10.201.0.0/24, so no route there (its packets go to its default gateway)"),
    Check("addr 10.201.0.1/24 dev br0@host", "the host has the connected route 10.201.0.0/24 dev br0",
          "ip -json route show 10.201.0.0/24", True, "an address on br0 brings its subnet's route"),
    Check("addr 10.201.0.1/24 dev br0@host", "the host reaches container4", "ping -c 1 10.201.0.4", True,
          "10.201.0.0/24 is now on-link through br0"),
    Check("addr 10.201.0.1/24 dev br0@host", "container4 cannot reach the upstream: Network is unreachable",
          f"ip netns exec container4 ping -c 1 {UP_ADDR}", False,
          "container4 only has a route for 10.201.0.0/24; no default route yet"),
    Check("", "iptables -t nat lists MASQUERADE for 10.201.0.0/24 in POSTROUTING",
          "iptables -t nat -S POSTROUTING", True, "the rule the lesson added"),
    Check("", "container4 reaches the upstream", f"ip netns exec container4 ping -c 1 {UP_ADDR}", True,
          "default route to br0's address, forwarding on, and NAT on the way out"),
    Check("", f"the upstream sees the host's uplink address {UPLINK_ADDR}, not 10.201.0.4",
          f"ip netns exec container4 python3 -c 'connect to {UP_ADDR}:8080' (a server in upstream prints the peer)",
          True, "MASQUERADE rewrote the source; the upstream has no route back to 10.201.0.0/24"),
    Check("", "container5 sees container4's connections coming from 10.201.0.1",
          "ip netns exec container4 python3 -c 'connect to 10.201.0.5:8081' (a server in container5 prints the peer)",
          True, "with br_netfilter, bridged traffic passes POSTROUTING too, and the lesson's rule (no ! -o br0, "
          "unlike Docker's) masquerades it as well", observe=True),
    Check("down", "after taking the network down, the sandbox is as it was before",
          "ip -json link/addr/route, ip netns list, ip_forward, iptables-save: before == after", True,
          "down deletes each veth from its host end, the namespaces, the bridge, the rule, and resets ip_forward"),
)


class Narrator:
    """Prints the lesson as it runs: steps, commands, checks with ✓/✗."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.ok = True

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, n: int, title: str, why: str) -> None:
        self.say()
        self.say(f"{n}. {title[:1].upper() + title[1:]}.")
        for line in _wrap(why, 74):
            self.say(f"   {line}")

    def command(self, line: str) -> None:
        self.say(f"   $ {line}")

    def check(self, check: Check, passed: bool | None, detail: str) -> None:
        if passed is None:
            mark, verdict = "?", "would check"
        elif check.observe:
            mark, verdict = "i", "observed"
        else:
            mark = "✓" if passed else "✗"
            verdict = ""
            if not passed:
                self.ok = False
        lead = f"   {mark} {check.claim}"
        if passed is None:
            kind = "observe" if check.observe else "check"
            self.say(f"   ? {kind}: {check.claim}")
            self.say(f"       {check.shows}")
            return
        self.say(lead + (f" [{verdict}]" if verdict else ""))
        self.say(f"       {detail}")
        self.say(f"       ({check.why})")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def run_tutorial(*, dry_run: bool = False, out: IO[str] | None = None, userns: bool | None = None) -> int:
    """Run the lesson for real in a throwaway sandbox (or narrate it, with ``dry_run``).

    Returns:
        0 when every check behaved as the lesson says, 1 otherwise.

    Raises:
        SandboxError: no sandbox can be made here (the message says why).
    """
    out = out if out is not None else sys.stdout
    net = tutorial()
    steps = net.steps()
    talk = Narrator(out)
    talk.say("bridgenet tutorial: the lesson, run for real in a throwaway sandbox.")
    talk.say("  The sandbox has its own network, mount and PID namespaces; its network namespace")
    talk.say("  plays the lesson's host. Nothing on this machine is created or changed.")
    talk.say(f"  The namespace 'upstream' ({UP_ADDR}, RFC 5737 documentation address) stands in for")
    talk.say(f"  the internet, reached from the sandbox host by the veth 'uplink' ({UPLINK_ADDR}).")
    if dry_run:
        talk.say("  (dry run: nothing is run)")
        for n, step in enumerate(steps, 1):
            talk.step(n, step.title, step.why)
            for c in step.up:
                talk.command(c.shell())
            for check in CHECKS:
                if check.after == step.key:
                    talk.check(check, None, "")
        for check in CHECKS:
            if check.after == "":
                talk.check(check, None, "")
        talk.say()
        talk.say("Take the network down:")
        for c in net.down_commands():
            talk.command(c.shell())
        for check in CHECKS:
            if check.after == "down":
                talk.check(check, None, "")
        return 0

    from .sandbox import Sandbox

    with Sandbox(upstream=True, userns=userns) as sb:
        _live(sb, net, steps, talk)
    talk.say()
    if talk.ok:
        talk.say("Every check behaved as the lesson says. The sandbox is gone; this machine was not touched.")
        return 0
    talk.say("Some checks did NOT behave as the lesson says (marked ✗ above).")
    return 1


def _live(sb, net: Network, steps, talk: Narrator) -> None:  # noqa: ANN001
    from . import checks, state
    from .errors import CommandError

    runner = sb.runner()
    before = state.snapshot(runner)
    ran = []
    try:
        for n, step in enumerate(steps, 1):
            talk.step(n, step.title, step.why)
            for c in step.up:
                talk.command(c.shell())
                runner.run(c)
                ran.append(c)
            for check in CHECKS:
                if check.after == step.key:
                    _do_check(sb, check, talk, checks, state)
        for check in CHECKS:
            if check.after == "":
                _do_check(sb, check, talk, checks, state)
    except CommandError as e:
        talk.say(f"   ✗ command failed (exit {e.exit_code}): {e.stderr.strip()}")
        talk.ok = False
    talk.say()
    talk.say("Take the network down (each veth from its host end, then its namespace; the rule;")
    talk.say("ip_forward back to 0; the bridge):")
    covered = {c.step for c in ran}
    done_steps = [s for s in steps if s.key in covered]
    for c in net.down_commands(done_steps):
        talk.command(c.shell())
        try:
            runner.run(c)
        except CommandError as e:
            talk.say(f"   ✗ {e.stderr.strip()}")
            talk.ok = False
    after = state.snapshot(runner)
    for check in CHECKS:
        if check.after == "down":
            same = before == after
            diff = "" if same else "differs: " + _diff(before, after)
            talk.check(check, same, "links, addresses, routes, netns, ip_forward and iptables are as before"
                       if same else diff)


def _diff(before: dict, after: dict, path: str = "") -> str:
    """Name the first places where two snapshots differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after), key=str)
        parts = [_diff(before.get(k), after.get(k), f"{path}/{k}") for k in keys if before.get(k) != after.get(k)]
        return "; ".join(parts[:3])
    return f"{path}: {json.dumps(before, default=str)[:200]} -> {json.dumps(after, default=str)[:200]}"


def _do_check(sb, check: Check, talk: Narrator, checks, state) -> None:  # noqa: ANN001
    passed, detail = _evaluate(sb, check, checks, state)
    talk.check(check, passed, detail)


def _evaluate(sb, check: Check, checks, state) -> tuple[bool, str]:  # noqa: ANN001
    claim = check.claim
    if claim.startswith("br0 has no port"):
        link = json.loads(sb.run(["ip", "-json", "link", "show", "dev", "br0"]).stdout)[0]
        flags = ",".join(link.get("flags", []))
        return True, f"br0 is {link.get('operstate')} <{flags}>"
    if claim.startswith("veth4 is LOWERLAYERDOWN"):
        link = json.loads(sb.run(["ip", "-json", "link", "show", "dev", "veth4"], netns="container4").stdout)[0]
        state_ = link.get("operstate")
        return (state_ == "LOWERLAYERDOWN") == check.expect, f"veth4 is {state_}"
    if claim.startswith("the host has the connected route"):
        routes = json.loads(sb.run(["ip", "-json", "route", "show", SUBNET]).stdout or "[]")
        hit = [r for r in routes if r.get("dst") == SUBNET and r.get("dev") == BRIDGE]
        return bool(hit) == check.expect, (f"{SUBNET} dev {BRIDGE} proto {hit[0].get('protocol')}" if hit
                                           else f"no route {SUBNET} dev {BRIDGE}")
    if claim.startswith("iptables"):
        from .state import read_rules

        rules = read_rules(sb.runner(), "nat", "POSTROUTING")
        want = ("-s", SUBNET, "-j", "MASQUERADE")
        return (want in rules) == check.expect, ("-A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE" if want in rules
                                                 else f"rules: {rules}")
    if claim.startswith("the upstream sees"):
        with checks.tcp_server(sb, UP_ADDR, 8080, netns="upstream", mode="whois") as srv:
            reply = checks.tcp_request(sb, UP_ADDR, 8080, netns="container4")
            peers = srv.seen_peers()
        seen = peers[0] if peers else (reply.value or "nothing")
        return (seen == UPLINK_ADDR) == check.expect, f"the upstream saw the connection come from {seen}"
    if claim.startswith("container5 sees"):
        with checks.tcp_server(sb, "10.201.0.5", 8081, netns="container5", mode="whois") as srv:
            checks.tcp_request(sb, "10.201.0.5", 8081, netns="container4")
            peers = srv.seen_peers()
        return True, f"container5 saw the connection come from {peers[0] if peers else 'nothing'}"
    if check.shows.startswith("ip netns exec") or check.shows.startswith("ping"):
        parts = check.shows.split()
        netns = parts[3] if parts[0] == "ip" else None
        dst = parts[-1]
        r = checks.ping(sb, dst, netns=netns)
        detail = r.summary
        if "unreachable" in claim.lower():
            return not r.ok and "Network is unreachable" in r.output, detail
        return r.ok == check.expect, detail
    raise AssertionError(f"no evaluator for check {claim!r}")  # pragma: no cover

