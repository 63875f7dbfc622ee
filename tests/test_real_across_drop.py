"""Real tier: the SSH connection to one host killed in the middle of ``up_all`` (real sshd per host).

The hosts are ``bridgenet.testing.hosts`` with a real ``sshd`` each, run
through :class:`~bridgenet.runners.SshRunner` (one control master per host).
At a chosen command of the second host's ``up``, that host's sshd session
process (the one carrying the connection, every command's channel) is
killed with SIGKILL from inside the host, so the command in flight ends with
ssh's 255 and the control master dies. What each host holds is checked
through its own nsenter runner, never through ssh.

* The connection alone lost: the rollback reconnects (a new master) and
  every host is left exactly as before.
* The host's sshd gone too (unreachable for its own rollback): the error
  names the host and what was left there; its state file records what was
  made, so once it answers again ``down_all`` from the file cleans it.
"""

from __future__ import annotations

import os

import pytest

from bridgenet import across, state
from bridgenet.errors import HostsRolledBackError
from bridgenet.hosts import HostSpec
from bridgenet.stretch import Member, Stretch, stretch
from bridgenet.testing import factories

pytestmark = pytest.mark.real

hosts2 = factories.hosts(2, sshd=True)

# the sshd process carrying this connection: the nearest ancestor named sshd* ("sshd: root@notty", or
# sshd-session on OpenSSH >= 9.8); killed, it drops the connection with every channel on it (sshd(8))
KILL_SESSION = ('p=$$; while [ "$p" -gt 1 ]; do c=$(cat /proc/$p/comm); case "$c" in sshd*) break;; esac; '
                'p=$(awk \'/^PPid:/ {print $2}\' /proc/$p/status); done; ')


def build(hosts) -> Stretch:  # noqa: ANN001
    return stretch("mh", gateway="10.40.0.1/24", hosts=[HostSpec(h.name, f"root@{h.address.ip}") for h in hosts],
                   containers=[Member(h.name, f"c{i}", f"10.40.0.{10 + i}") for i, h in enumerate(hosts, 1)])


def snaps(hosts) -> dict:  # noqa: ANN001
    return {h.name: state.snapshot(h.runner()) for h in hosts}


class Drop:
    """A host's SshRunner whose ``n``-th ``run`` kills the host's sshd session instead (and, with
    ``stop_sshd``, first the host's sshd listener, so no new connection is accepted)."""

    def __init__(self, inner, host, n: int, stop_sshd: bool = False) -> None:  # noqa: ANN001
        self.inner, self.host, self.n, self.stop_sshd, self.count = inner, host, n, stop_sshd, 0

    def __getattr__(self, name: str):  # noqa: ANN204 - state_store, popen, close, check ... as the SshRunner
        return getattr(self.inner, name)

    def run(self, command):  # noqa: ANN001, ANN201
        self.count += 1
        if self.count == self.n:
            if self.stop_sshd:
                self.host.stop_sshd()
            return self.inner.exec(["sh", "-c", KILL_SESSION + 'kill -KILL "$p"; sleep 5'])
        return self.inner.run(command)

    def exec(self, argv, **kw):  # noqa: ANN001, ANN003, ANN201
        return self.inner.exec(argv, **kw)


def test_killing_the_connection_to_the_second_host_mid_up_rolls_back_every_host(hosts2) -> None:  # noqa: ANN001
    h1, h2 = hosts2
    before = snaps(hosts2)
    rs = {h.name: h.ssh_runner() for h in hosts2}
    drop = rs["h2"] = Drop(rs["h2"], h2, 5)
    logins = h2.accepted_logins()
    try:
        with pytest.raises(HostsRolledBackError) as ei:
            across.up_all(build(hosts2), rs)
    finally:
        across.close(rs)
    e = ei.value
    assert drop.count >= 5 and h2.accepted_logins() > logins  # the connection was dropped; a new one rolled back
    assert e.host == "h2" and "255" in str(e.cause), str(e)
    assert [h for h, _ in e.per_host] == ["h2", "h1"] and not e.leftovers, str(e)
    now = snaps(hosts2)
    assert now == before, {h: state.difference(before[h], now[h]) for h in now if now[h] != before[h]}
    assert not any(os.path.exists(f"{h.fs_root}/run/bridgenet/mh.json") for h in hosts2)


def test_a_host_lost_for_its_own_rollback_is_named_with_what_was_left_and_down_all_cleans_it(hosts2) -> None:  # noqa: ANN001
    h1, h2 = hosts2
    before = snaps(hosts2)
    s = build(hosts2)
    rs = {h.name: h.ssh_runner() for h in hosts2}
    rs["h2"] = Drop(rs["h2"], h2, 5, stop_sshd=True)
    try:
        with pytest.raises(HostsRolledBackError) as ei:
            across.up_all(s, rs)
    finally:
        across.close(rs)
    e = ei.value
    msg = str(e)
    assert e.host == "h2" and "h2:" in msg and e.leftovers, msg
    assert all(x.startswith("h2: ") for x in e.leftovers), e.leftovers
    assert snaps(hosts2)["h1"] == before["h1"]  # h1 rolled back
    assert snaps(hosts2)["h2"] != before["h2"]  # h2 keeps what was made before the drop ...
    assert os.path.exists(f"{h2.fs_root}/run/bridgenet/mh.json")  # ... recorded in its state file
    h2.start_sshd()  # h2 answers again: down_all from the file cleans it
    rs = {h.name: h.ssh_runner() for h in hosts2}
    try:
        across.down_all(s, rs)
    finally:
        across.close(rs)
    now = snaps(hosts2)
    assert now == before, {h: state.difference(before[h], now[h]) for h in now if now[h] != before[h]}
