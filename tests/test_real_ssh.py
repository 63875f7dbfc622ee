"""SshRunner for real: two hosts in one sandbox, each with a real sshd; the ssh client runs in the controller.

Nothing leaves the sandbox: the client runs in its network namespace, which
holds only the underlay (198.51.100.0/24, RFC 5737) and the hosts on it.
"""

from __future__ import annotations

import json
import os

import pytest

from bridgenet.commands import Command
from bridgenet.errors import CommandError, HostUnreachableError
from bridgenet.runners import SshRunner, check_hosts
from bridgenet.testing import factories
from bridgenet.testing.hosts import CLIENT_DIR, Hosts

pytestmark = pytest.mark.real

ssh_hosts = factories.hosts(2, sshd=True)


def _addresses(stdout: str) -> dict[str, list[str]]:
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", []) if a["family"] == "inet"]
            for link in json.loads(stdout)}


def test_each_host_answers_with_its_own_links(ssh_hosts: Hosts) -> None:
    for h in ssh_hosts:
        with h.ssh_runner() as r:
            links = json.loads(r.exec(["ip", "-json", "link"]).stdout)
            mine = json.loads(h.run(["ip", "-json", "link"]).stdout)  # through nsenter, for comparison
            assert [(x["ifname"], x["address"]) for x in links] == [(x["ifname"], x["address"]) for x in mine]
            assert _addresses(r.exec(["ip", "-json", "addr"]).stdout) == {"lo": ["127.0.0.1"],
                                                                          "eth0": [str(h.address.ip)]}


def test_a_command_with_input_arrives(ssh_hosts: Hosts) -> None:
    h1, h2 = ssh_hosts
    text = "line one\nit's $HOME, `quoted`\n"
    with h1.ssh_runner() as r:
        result = r.run(Command("tee", ("/run/bridgenet-ssh test",), input=text))
    assert result.argv == ("tee", "/run/bridgenet-ssh test")
    assert h1.run(["cat", "/run/bridgenet-ssh test"]).stdout == text
    assert h2.run(["cat", "/run/bridgenet-ssh test"], check=False).exit_code != 0  # on h1 only


def test_a_failing_remote_command_raises_command_error(ssh_hosts: Hosts) -> None:
    with ssh_hosts[0].ssh_runner() as r:
        argv = ["sh", "-c", "echo 'no such thing' >&2; exit 3"]
        with pytest.raises(CommandError) as err:
            r.exec(argv)
        assert not isinstance(err.value, HostUnreachableError)
        assert (err.value.argv, err.value.exit_code, err.value.stderr.strip()) == (tuple(argv), 3, "no such thing")
        assert r.exec(argv, check=False).exit_code == 3
        with pytest.raises(CommandError) as err:
            r.exec(["ip", "link", "del", "nosuchlink"])
        assert err.value.exit_code != 0 and "nosuchlink" in err.value.stderr


def test_a_remote_timeout_ends_the_command(ssh_hosts: Hosts) -> None:
    with ssh_hosts[0].ssh_runner() as r:
        with pytest.raises(CommandError, match="timed out after 0.3 s") as err:
            r.exec(["sleep", "5"], timeout=0.3)
        assert err.value.exit_code == 124


def test_unreachable_hosts_and_refused_keys_fail_the_check_with_every_host_named(ssh_hosts: Hosts) -> None:
    h1, h2 = ssh_hosts
    sb = ssh_hosts.sandbox
    sb.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{CLIENT_DIR}/stranger"], check=True)
    nobody = h1.ssh_target(destination="root@198.51.100.99", connect_timeout=2)  # an underlay address nobody holds
    refused = h2.ssh_target(identity=f"{CLIENT_DIR}/stranger")
    runners = [SshRunner(t, prefix=sb.nsenter_prefix(), sandbox=sb) for t in (h1.ssh_target(), nobody, refused)]
    with pytest.raises(HostUnreachableError) as err:
        check_hosts(runners)
    assert err.value.hosts == ("root@198.51.100.99", f"root@{h2.address.ip}")
    reasons = dict(err.value.failures)
    assert "198.51.100.99" in reasons["root@198.51.100.99"]
    assert "Permission denied (publickey)" in reasons[f"root@{h2.address.ip}"]
    assert h2.accepted_logins() == 0 and h1.accepted_logins() == 1  # the good host was checked too
    with pytest.raises(HostUnreachableError, match="Permission denied"):
        runners[2].exec(["touch", "/run/never"])
    assert not os.path.exists(f"{h2.fs_root}/run/never")
    for r in runners:
        r.close()
    check_hosts(runners[:1])  # a good host alone passes


def test_commands_share_one_connection_per_host(ssh_hosts: Hosts) -> None:
    h1, h2 = ssh_hosts
    sockets = f"{ssh_hosts.sandbox_root}{CLIENT_DIR}/cm"
    r1, r2 = h1.ssh_runner(), h2.ssh_runner()
    check_hosts([r1, r2])
    for _ in range(3):
        r1.exec(["true"])
        r2.run(Command("ip", ("link", "show", "eth0")))
    assert (h1.accepted_logins(), h2.accepted_logins()) == (1, 1)
    assert len(os.listdir(sockets)) == 2  # one control socket per host
    r1.close()
    assert len(os.listdir(sockets)) == 1  # ssh -O exit ended h1's master
    r1.exec(["true"])
    assert h1.accepted_logins() == 2  # a new connection after close
    r1.close()
    r2.close()
