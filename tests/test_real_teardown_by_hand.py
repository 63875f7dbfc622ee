"""Real tier: `up` right after the lesson's namespaces were deleted by hand (issue 9, misleading messages).

Deleting a namespace destroys the veth end inside it and then, asynchronously,
its peer in the host (KERNEL-NOTES). Before planning waited for it, an
immediate `up` failed in 8 of 10 rounds here with "a veth brid5 whose peer is
another link".
"""

import time

import pytest

import bridgenet
from bridgenet import apply, plan
from bridgenet.errors import ConflictError, VethFreeingConflict
from bridgenet.sandbox import Sandbox
from helpers import snap

pytestmark = pytest.mark.real

ROUNDS = 5


def test_up_right_after_ip_netns_del_succeeds(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    for _ in range(ROUNDS):
        apply.up(net, r)
        sb.run(["ip", "netns", "del", "container4"])
        sb.run(["ip", "netns", "del", "container5"])
        apply.up(net, r)  # before: ConflictError "a veth brid4 whose peer is another link", most rounds
        s = snap(sb)
        assert {"container4", "container5"} <= set(s["netns"])
        ping = sb.run(["ping", "-c", "1", "-W", "2", "10.201.0.5"], netns="container4", check=False)
        assert ping.exit_code == 0, ping.stdout + ping.stderr
    apply.down(net, r)


def test_a_veth_held_by_a_process_is_named_with_the_fix(sb, monkeypatch):
    """A process in the deleted namespace keeps its veth alive: after the deadline, say what and how to fix."""
    monkeypatch.setattr(plan, "SETTLE_SECONDS", 0.5)
    net, r = bridgenet.tutorial(), sb.runner()
    apply.up(net, r)
    sleeper = sb.popen(["sleep", "300"], netns="container4")
    try:
        time.sleep(0.2)
        sb.run(["ip", "netns", "del", "container4"])  # the name goes; the namespace lives on with veth4
        t0 = time.monotonic()
        with pytest.raises(VethFreeingConflict) as ei:
            apply.up(net, r)
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 5
        msg = str(ei.value)
        assert isinstance(ei.value, ConflictError)
        assert "brid4" in msg and "container4 does not exist" in msg and "still there after 0.5 s" in msg
        assert "asynchronously" in msg and "ip link del brid4" in msg
    finally:
        Sandbox.terminate(sleeper)
    # Once the process is gone, the kernel frees the veth and up goes through.
    apply.up(net, r)
    apply.down(net, r)
