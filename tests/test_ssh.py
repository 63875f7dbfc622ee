"""SshTarget and SshRunner without a network: argv shapes, validation, the guard, check_hosts' report."""

from __future__ import annotations

import shlex

import pytest

from bridgenet.commands import Command
from bridgenet.errors import BridgenetError, CommandError, HostUnreachableError, NotInSandboxError, ValidationError
from bridgenet.runners import Result, SshRunner, SshTarget, check_hosts

BASE = ("ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPath=/run/cm/%C",
        "-o", "ControlPersist=60", "-o", "ConnectTimeout=10")


def test_the_argv_has_batch_mode_connection_sharing_and_the_quoted_command() -> None:
    t = SshTarget("root@198.51.100.11", control_dir="/run/cm")
    argv = t.ssh_argv(["tee", "/run/a file", "it's"])
    assert argv == (*BASE, "root@198.51.100.11", "--", "tee '/run/a file' 'it'\"'\"'s'")
    assert shlex.split(argv[-1]) == ["tee", "/run/a file", "it's"]  # what the remote shell splits it into


def test_every_setting_has_its_place_before_the_destination() -> None:
    t = SshTarget("h2", port=2222, identity="/k/id", config="/k/config",
                  options=["ServerAliveInterval=5", "UserKnownHostsFile=/k/known"], control_dir="/run/cm",
                  connect_timeout=2.5)
    assert t.ssh_argv(["true"]) == (
        "ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPath=/run/cm/%C",
        "-o", "ControlPersist=60", "-o", "ConnectTimeout=2.5", "-p", "2222", "-i", "/k/id", "-F", "/k/config",
        "-o", "ServerAliveInterval=5", "-o", "UserKnownHostsFile=/k/known", "h2", "--", "true")
    assert t.options == ("ServerAliveInterval=5", "UserKnownHostsFile=/k/known")
    assert t.host == "h2" and SshTarget("root@[2001:db8::1]").host == "[2001:db8::1]"


def test_without_a_control_directory_there_is_no_connection_sharing() -> None:
    argv = SshTarget("h1").ssh_argv(["true"])
    assert not [a for a in argv if a.startswith("Control")]
    with pytest.raises(ValidationError, match="remote_argv"):
        SshTarget("h1").ssh_argv([])


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("destination", "", "not empty"),
    ("destination", "-oProxyCommand=x", "must not start with '-'"),
    ("destination", "root@", "host part"),
    ("destination", "ro ot@h1", "user part"),
    ("destination", "h1 h2", "host part"),
    ("port", 0, "1 to 65535"),
    ("port", 65536, "1 to 65535"),
    ("port", "22", "1 to 65535"),
    ("port", True, "1 to 65535"),
    ("identity", "", "a file name"),
    ("config", "a\nb", "a file name"),
    ("options", ["BatchMode"], "'Key=value'"),
    ("options", ["=yes"], "'Key=value'"),
    ("options", ["Batch Mode=yes"], "'Key=value'"),
    ("control_dir", "run/cm", "absolute path"),
    ("control_dir", "/" + "x" * 48, "at most 48 bytes"),
    ("connect_timeout", 0, "more than 0"),
])
def test_bad_settings_are_refused_naming_the_field(field: str, value: object, rule: str) -> None:
    fields: dict[str, object] = {"destination": "root@198.51.100.11", field: value}
    with pytest.raises(ValidationError, match=rule) as err:
        SshTarget(**fields)  # type: ignore[arg-type]
    assert err.value.field == field and str(err.value).startswith(f"SshTarget: {field}: ")


def test_a_target_is_a_frozen_value() -> None:
    t = SshTarget("h1", port=22)
    assert t == SshTarget("h1", port=22) and hash(t) == hash(SshTarget("h1", port=22))
    with pytest.raises(AttributeError):
        t.port = 23  # type: ignore[misc]


def test_without_a_sandbox_the_guard_refuses_to_start_ssh(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))  # were the guard to let it through, no ssh would be found
    with SshRunner(SshTarget("root@198.51.100.11")) as r:
        with pytest.raises(NotInSandboxError, match="refusing to run 'ssh -o BatchMode=yes"):
            r.exec(["true"])
        with pytest.raises(NotInSandboxError):
            r.run(Command("ip", ("link",)))


def test_the_runner_makes_and_removes_its_own_control_directory() -> None:
    import os

    r = SshRunner(SshTarget("h1"))
    d = r.target.control_dir
    assert d is not None and os.path.isdir(d) and (os.stat(d).st_mode & 0o777) == 0o700
    assert r.control_socket == f"{d}/%C"
    r.close()  # nothing was opened: no ssh -O exit (the guard would refuse it here)
    assert not os.path.exists(d)


class _Fake(SshRunner):
    """An SshRunner whose ssh is replaced by canned (exit code, stderr)."""

    def __init__(self, destination: str, code: int, err: str = "") -> None:
        super().__init__(SshTarget(destination, control_dir="/run/cm"))
        self.seen: list[tuple[str, ...]] = []
        self._local.exec = self._answer  # type: ignore[method-assign]
        self._local._guard = lambda argv: None  # type: ignore[method-assign]  # nothing runs at all
        self.code, self.err = code, err

    def _answer(self, argv, **kw) -> Result:  # noqa: ANN001, ANN003
        self.seen.append(tuple(argv))
        return Result(tuple(argv), self.code, "", self.err)


def test_ssh_failing_itself_is_a_distinct_error_and_a_remote_failure_a_command_error() -> None:
    with pytest.raises(HostUnreachableError, match="root@h1: Permission denied") as err:
        _Fake("root@h1", 255, "root@h1: Permission denied (publickey).\n").exec(["true"])
    assert err.value.hosts == ("root@h1",) and isinstance(err.value, BridgenetError)
    assert not isinstance(err.value, CommandError)
    with pytest.raises(CommandError) as cerr:
        _Fake("root@h1", 2, "RTNETLINK answers: File exists").exec(["ip", "link", "add", "x", "type", "bridge"])
    assert cerr.value.argv == ("ip", "link", "add", "x", "type", "bridge") and cerr.value.exit_code == 2


def test_check_hosts_names_every_host_that_failed_in_order() -> None:
    good, lost, refused = _Fake("h1", 0), _Fake("h2", 255, "ssh: connect to host h2 port 22: No route to host"), \
        _Fake("root@h3", 255, "root@h3: Permission denied (publickey).")
    with pytest.raises(HostUnreachableError) as err:
        check_hosts([lost, good, refused])
    assert err.value.hosts == ("h2", "root@h3")
    assert str(err.value).splitlines() == [
        "cannot reach 2 hosts over ssh (nothing was changed there):",
        "  h2: ssh: connect to host h2 port 22: No route to host",
        "  root@h3: root@h3: Permission denied (publickey).",
    ]
    assert [a[-1] for r in (good, lost, refused) for a in r.seen] == ["true", "true", "true"]
    check_hosts([good])
    check_hosts([])
