"""Teardown in one kernel request: links into a group, the group deleted at once."""

from __future__ import annotations

import pytest

import bridgenet
from bridgenet import apply
from bridgenet.errors import CommandError
from bridgenet.state import EMPTY_NS, LiveState, Link
from bridgenet.teardown import default_group, grouped, pick_group, will_group
from helpers import diff, snap


def test_links_go_in_one_group_delete_before_the_namespaces():
    net = bridgenet.tutorial()
    raw = net.down_commands(group=False)
    out = grouped(raw, 4321)
    shells = [c.shell() for c in out]
    assert shells[:2] == [c.shell() for c in raw[:2]]  # iptables, sysctl first, untouched
    assert shells[2:] == ["ip link set dev brid5 group 4321", "ip link set dev brid4 group 4321",
                          "ip link set dev br0 group 4321", "ip link del group 4321",
                          "ip netns del container5", "ip netns del container4"]
    assert net.down_commands() == grouped(raw, default_group("tutorial"))
    one = [c for c in raw if c.args[:2] != ("link", "del") or c.args[2] == "br0"]
    assert not will_group(one) and grouped(one, 4321) == one  # one link: one request anyway


def test_the_group_is_one_no_host_link_is_in():
    g = default_group("shop")
    assert g == default_group("shop") and 10000 <= g < 60000
    state = LiveState(EMPTY_NS, {}, frozenset(), frozenset(), {}, {}, {})
    assert pick_group("shop", state) == g
    host = bridgenet.state.NsState({"x": Link("x", "dummy", 5, group=str(g)),
                                    "y": Link("y", "dummy", 6, group=str(g + 1)),
                                    "lo": Link("lo", None, 1, group="default")}, ())
    assert pick_group("shop", LiveState(host, {}, frozenset(), frozenset(), {}, {}, {})) == g + 2




@pytest.mark.real
def test_a_users_link_in_the_default_group_stays_and_names_are_free_at_once(sb):
    net, r = bridgenet.tutorial(), sb.runner()
    g = default_group("tutorial")
    sb.run(["ip", "link", "add", "mine", "type", "bridge"])
    sb.run(["ip", "link", "set", "dev", "mine", "group", str(g)])  # the user's, in "our" group
    before = snap(sb)
    apply.up(net, r, batch=True)
    report = apply.down(net, r)
    assert f"ip link del group {g + 1}" in [c.shell() for c in report.ran]
    assert snap(sb) == before, diff(before, snap(sb))
    apply.up(net, r)  # at once, one command at a time: no "File exists" anywhere
    apply.down(net, r)
    assert snap(sb) == before, diff(before, snap(sb))


@pytest.mark.real
def test_when_the_batch_fails_the_rest_is_undone_one_command_at_a_time(sb, monkeypatch):
    from bridgenet import batch

    net, r = bridgenet.tutorial(), sb.runner()
    before = snap(sb)
    apply.up(net, r)

    def fail(self, commands, **kw):  # noqa: ANN001
        raise CommandError(("sh", "-c", "SCRIPT"), 1, "injected", "")

    monkeypatch.setattr(batch.BatchRunner, "execute", fail)
    report = apply.down(net, r)
    assert "ip link del brid4" in [c.shell() for c in report.ran]
    assert snap(sb) == before, diff(before, snap(sb))
