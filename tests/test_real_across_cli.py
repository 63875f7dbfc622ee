"""Real tier: ``bridgenet up/plan/down -f FILE`` of three hosts, each reached over real SSH from its file.

The CLI runs as a new process in the controller (the sandbox's namespace);
each host of the file is one of ``bridgenet.testing.hosts`` with a real
``sshd``, named in the file by its ``ssh`` destination, ``identity`` and
``ssh_config`` exactly as a user writes them. What each host holds is
checked through its own nsenter runner, never through ssh.
"""

from __future__ import annotations

import pytest

from bridgenet import state
from bridgenet.testing import factories
from helpers import bridgenet_cli
from test_real_across import assert_tcp_across, ping

pytestmark = pytest.mark.real

hosts3 = factories.hosts(3, sshd=True)


def network_file(hosts) -> str:  # noqa: ANN001
    lines = ['name = "wide"', 'gateway = "10.42.0.1/24"', "vni = 4242"]
    for h in hosts:
        t = h.ssh_target()
        lines += ["", "[[hosts]]", f'name = "{h.name}"', f'ssh = "{t.destination}"', f'identity = "{t.identity}"',
                  f'ssh_config = "{t.config}"', 'options = ["ServerAliveInterval=5"]']
    for i, h in enumerate(hosts, 1):
        lines += ["", "[[containers]]", f'netns = "c{i}"', f'host = "{h.name}"', f'address = "10.42.0.{10 + i}"']
    return "\n".join(lines) + "\n"


def test_three_hosts_over_ssh_from_the_file_ping_tcp_mtu_converge_and_down_restores(hosts3) -> None:  # noqa: ANN001
    sb = hosts3.sandbox
    h1, h2, h3 = hosts3
    path = "/run/wide.toml"  # the sandbox's own /run: the CLI process sees it there
    with open(f"{hosts3.sandbox_root}{path}", "w") as f:
        f.write(network_file(hosts3))
    before = {h.name: state.snapshot(h.runner()) for h in hosts3}
    r = bridgenet_cli(sb, "up", "-f", path)
    assert r.exit_code == 0, r.stderr
    for h in hosts3:
        assert f"# host {h.name} (root@{h.address.ip})" in r.stdout
        assert f"wide is up on {h.name}" in r.stderr
    for src, ns, dst in ((h1, "c1", "10.42.0.12"), (h2, "c2", "10.42.0.13"), (h3, "c3", "10.42.0.11"),
                         (h3, "c3", "10.42.0.1")):
        p = ping(src, ns, dst)
        assert p.exit_code == 0, f"{ns} -> {dst}: {p.stdout}{p.stderr}"
    # the overlay's MTU, 1500 - 50 = 1450: 1422 bytes of ICMP data + 28 of headers fit, one byte more does not
    fits = h1.run(["ip", "netns", "exec", "c1", "ping", "-M", "do", "-c", "1", "-W", "2", "-s", "1422", "10.42.0.13"],
                  check=False)
    assert fits.exit_code == 0, fits.stdout + fits.stderr
    over = h1.run(["ip", "netns", "exec", "c1", "ping", "-M", "do", "-c", "1", "-W", "2", "-s", "1423", "10.42.0.13"],
                  check=False)
    assert over.exit_code != 0
    assert_tcp_across(h2, "c2", "10.42.0.12", h3, "c3")
    again = bridgenet_cli(sb, "up", "-f", path)
    assert again.exit_code == 0, again.stderr
    assert again.stderr.count(": 0 command(s) run") == 3, again.stderr  # nothing to do on any host
    assert bridgenet_cli(sb, "plan", "--detailed-exitcode", "-f", path).exit_code == 0
    r = bridgenet_cli(sb, "down", "-f", path)
    assert r.exit_code == 0, r.stderr
    assert {h.name: state.snapshot(h.runner()) for h in hosts3} == before
