"""Fast tier: ``bridgenet.across`` without privilege: host order, runner checks, errors, the CLI's refusals
before any change, and FDB entries in planning (``effects.satisfied``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgenet import across
from bridgenet.cli import main
from bridgenet.commands import FdbAbsent, FdbPresent
from bridgenet.effects import gone, satisfied
from bridgenet.errors import CommandError, HostsRolledBackError, HostUnreachableError, ValidationError
from bridgenet.hosts import HostSpec
from bridgenet.interrupts import Interrupted
from bridgenet.state import LiveState, NsState
from bridgenet.stretch import Member, stretch

TWO = Path(__file__).resolve().parent.parent / "examples" / "stretch.toml"


def three(gateway_host=None):  # noqa: ANN001, ANN201
    hosts = [HostSpec(f"h{i}", f"root@198.51.100.{10 + i}") for i in (1, 2, 3)]
    kw = {"gateway_host": gateway_host} if gateway_host else {}
    return stretch("mh", gateway="10.40.0.1/24", hosts=hosts,
                   containers=[Member(h.name, f"c{i}", f"10.40.0.{10 + i}") for i, h in enumerate(hosts, 1)], **kw)


def test_the_gateway_host_comes_first_then_file_order():
    assert [h.name for h, _ in across.order(three())] == ["h1", "h2", "h3"]
    assert [h.name for h, _ in across.order(three("h2"))] == ["h2", "h1", "h3"]


def test_every_host_needs_a_runner_and_no_runner_without_a_host():
    s = three()
    with pytest.raises(ValidationError, match="none for h3"):
        across.reach(s, {"h1": object(), "h2": object()})
    with pytest.raises(ValidationError, match="no host h9"):
        across.reach(s, {"h1": object(), "h2": object(), "h3": object(), "h9": object()})


def test_a_host_target_carries_its_ssh_settings():
    h = HostSpec("h2", "root@198.51.100.12", port=2222, options=["ServerAliveInterval=5"])
    t = across.target_of(h)
    assert (t.destination, t.port, t.options) == ("root@198.51.100.12", 2222, ("ServerAliveInterval=5",))
    with pytest.raises(ValidationError, match="ssh"):
        across.target_of(HostSpec("me"))


def test_the_rollback_error_names_the_host_the_cause_and_every_host():
    e = HostsRolledBackError("h2", CommandError(("ip", "link"), 2, "boom"), [("h2", ["a"]), ("h1", ["b", "c"])])
    assert str(e).startswith("host h2: command failed") and "h2: 1 command(s), h1: 2 command(s)" in str(e)
    assert "every host is back where it was" in str(e) and e.undone == ("a", "b", "c")
    e = HostsRolledBackError("h1", Interrupted(15), [], ["h1: link br0: busy"])
    assert e.cause.signum == 15 and "could NOT undo: h1: link br0: busy" in str(e)


@pytest.mark.parametrize("argv", [["up"], ["down"], ["plan"], ["show"]])
def test_cli_across_hosts_refuses_an_unreachable_host_before_any_change(capsys, monkeypatch, argv):
    ran = []

    def unreachable(runners):  # noqa: ANN001, ANN202
        ran.extend(runners)
        raise HostUnreachableError([("root@198.51.100.12", "Connection refused")])

    monkeypatch.setattr(across, "check_hosts", unreachable)
    code = main([*argv, "-f", str(TWO)])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "") and len(ran) == 2
    assert "cannot reach 1 host" in err and "h2 (root@198.51.100.12): Connection refused" in err  # named as the file does


def test_cli_across_hosts_runs_no_ssh_outside_a_sandbox(capsys):
    """The suite's guard (BRIDGENET_REQUIRE_SANDBOX): the ssh client is refused, nothing runs."""
    code = main(["plan", "-f", str(TWO)])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "") and "sandbox" in err


def test_fdb_entries_are_planned_from_what_was_read():
    s = LiveState(NsState({}, []), {}, frozenset(), frozenset(), {}, {},
                  fdb={("vx1", None): frozenset({("00:00:00:00:00:00", "198.51.100.12")})})
    assert satisfied(FdbPresent("vx1", "00:00:00:00:00:00", "198.51.100.12"), s)
    assert not satisfied(FdbPresent("vx1", "00:00:00:00:00:00", "198.51.100.13"), s)
    assert satisfied(FdbAbsent("vx1", "00:00:00:00:00:00", "198.51.100.13"), s)
    assert not satisfied(FdbPresent("vx2", "00:00:00:00:00:00", "198.51.100.12"), s)  # not read: run it
    assert gone(FdbAbsent("vx1", "00:00:00:00:00:00", "198.51.100.12"), s) == "link vx1 is gone"
