"""Real tier: ``clean`` across hosts (``across.clean_all``, ``bridgenet clean -f FILE``) on harness hosts.

Two ``bridgenet.testing.hosts`` with a real sshd: the first run through its
nsenter runner, the second over ssh. Each host is checked through its own
nsenter runner: after ``clean`` it is exactly as before ``up``.
"""

from __future__ import annotations

import os

import pytest

from bridgenet import across, cli, state
from bridgenet.hosts import HostSpec
from bridgenet.stretch import Member, stretch
from bridgenet.testing import factories

pytestmark = pytest.mark.real

hosts2 = factories.hosts(2, sshd=True)


def build(hosts):  # noqa: ANN001, ANN201
    return stretch("mh", gateway="10.40.0.1/24", hosts=[HostSpec(h.name, f"root@{h.address.ip}") for h in hosts],
                   containers=[Member(h.name, f"c{i}", f"10.40.0.{10 + i}") for i, h in enumerate(hosts, 1)])


def snaps(hosts) -> dict:  # noqa: ANN001
    return {h.name: state.snapshot(h.runner()) for h in hosts}


def test_clean_all_cleans_every_host_one_over_ssh(hosts2) -> None:  # noqa: ANN001
    h1, h2 = hosts2
    s = build(hosts2)
    before = snaps(hosts2)
    across.up_all(s, {h.name: h.runner() for h in hosts2})
    assert snaps(hosts2) != before
    rs = {"h1": h1.runner(), "h2": h2.ssh_runner()}
    seen = []
    try:
        reports = across.clean_all(s, rs, on_host=lambda h: seen.append(h.name))
    finally:
        across.close(rs)
    assert seen == ["h2", "h1"]  # the gateway host last
    assert [(r.host.name, r.report.networks) for r in reports] == [("h2", ("mh",)), ("h1", ("mh",))]
    assert all(r.report.ran for r in reports)
    now = snaps(hosts2)
    assert now == before, {h: state.difference(before[h], now[h]) for h in now if now[h] != before[h]}
    assert not any(os.path.exists(f"{h.fs_root}/run/bridgenet/mh.json") for h in hosts2)


def test_cli_clean_f_reports_per_host(hosts2, tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    text = ('name = "mh"\ngateway = "10.40.0.1/24"\n'
            + "".join(f'[[hosts]]\nname = "{h.name}"\nssh = "root@{h.address.ip}"\n' for h in hosts2)
            + "".join(f'[[containers]]\nnetns = "c{i}"\nhost = "{h.name}"\naddress = "10.40.0.{10 + i}"\n'
                      for i, h in enumerate(hosts2, 1)))
    monkeypatch.setattr(across, "default_runners", lambda s, **kw: {h.name: h.ssh_runner() for h in hosts2})
    p = tmp_path / "two.toml"
    p.write_text(text)
    before = snaps(hosts2)
    assert cli.main(["up", "-q", "-f", str(p)]) == 0
    capsys.readouterr()
    assert cli.main(["clean", "-f", str(p)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# host h2 (") and "\n# host h1 (" in out
    assert "bridgenet: h2: cleaned mh;" in err and "bridgenet: h1: cleaned mh;" in err
    assert snaps(hosts2) == before
