"""Fast tier: the state store's two forms agree (LocalStore: os calls; RunnerStore: commands, flock(1)).

RunnerStore is run here through a runner that starts its commands as plain
local processes on a temporary directory (sh, cat, tee, mv, flock): no
privilege, no network, the same scripts an SshRunner sends to a host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bridgenet.errors import CommandError, LockedError
from bridgenet.ledger import Entry, Ledger, locked
from bridgenet.remote_store import RunnerStore
from bridgenet.runners import DryRunRunner, ShRunner, SshRunner, SshTarget
from bridgenet.runners.base import Result
from bridgenet.state_store import LocalStore, store_for

pytestmark = pytest.mark.skipif(not all(os.path.exists(f"/usr/bin/{t}") or os.path.exists(f"/bin/{t}")
                                        for t in ("flock", "stat")), reason="needs flock(1) and stat(1)")


class ProcessRunner:
    """Runs argv as a local process (what ssh does on the far side, without ssh)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def exec(self, argv, *, input=None, check=True, timeout=None):  # noqa: ANN001, ANN201
        self.calls.append(tuple(argv))
        p = subprocess.run(list(argv), input=input, capture_output=True, text=True)
        if check and p.returncode:
            raise CommandError(tuple(argv), p.returncode, p.stderr, p.stdout)
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)

    def popen(self, argv, *, stderr=subprocess.DEVNULL):  # noqa: ANN001, ANN201
        self.calls.append(tuple(argv))
        return subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)


@pytest.fixture
def root(tmp_path):  # noqa: ANN001, ANN201
    """A host root: the stores keep their files in ROOT/run/bridgenet."""
    return str(tmp_path)


def remote(root: str) -> RunnerStore:
    return RunnerStore(ProcessRunner(), f"{root}/run/bridgenet", where="host far")


def _ledger(store) -> Ledger:  # noqa: ANN001
    ledger = Ledger("web", store, identity={"source": "web.toml"})
    ledger.add([Entry("link br0", None, True, "intent", []), Entry("sysctl x", None, False, "done", [])])
    return ledger


def test_both_stores_write_the_same_file_and_read_each_others(root: str) -> None:
    local, far = LocalStore(root), remote(root)
    assert far.read("web") is None and far.names() == [] and Ledger.open(far, "web").recorded is False
    _ledger(far)
    text = local.read("web")
    assert text is not None and far.read("web") == text
    os.unlink(local.path("web"))
    _ledger(local)
    assert local.read("web") == text  # byte for byte the same
    back = Ledger.open(far, "web")
    assert back.recorded and [e.key for e in back.entries] == ["link br0", "sysctl x"]
    assert back.identity == {"source": "web.toml"} and far.names() == local.names() == ["web"]
    assert sorted(os.listdir(local.directory)) == ["web.json"]  # no temporary file left
    back.drop(["link br0", "sysctl x"])
    assert far.read("web") is None and far.names() == []


def test_under_the_lock_the_files_come_with_it_and_writes_go_through(root: str) -> None:
    far = remote(root)
    _ledger(LocalStore(root))
    with open(f"{root}/run/bridgenet/web.json.999.tmp", "w") as f:
        f.write("half")  # a save killed before its rename
    with locked(far, "web"):
        assert far._snapshot is not None and set(far._snapshot) == {"web"}
        calls = len(far.runner.calls)
        ledger = Ledger.open(far, "web")
        assert far.names() == ["web"] and len(ledger.entries) == 2
        assert len(far.runner.calls) == calls  # read from what the lock process printed
        ledger.drop(["sysctl x"])
        assert len(Ledger.open(far, "web").entries) == 1
        assert sorted(os.listdir(f"{root}/run/bridgenet")) == ["web.json", "web.lock"]  # the .tmp swept
        with open(f"{root}/run/bridgenet/web.lock") as f:
            assert f.read() == f"{os.getpid()} on {os.uname().nodename}\n"
    assert far._snapshot is None
    assert sorted(os.listdir(f"{root}/run/bridgenet")) == ["web.json"]  # lock file removed on release
    assert len(Ledger.open(far, "web").entries) == 1


def test_a_held_network_lock_refuses_either_store_naming_the_holder(root: str) -> None:
    local, far, other = LocalStore(root), remote(root), remote(root)
    with locked(far, "web"):
        with pytest.raises(LockedError, match=rf"PID {os.getpid()} on .* is changing network web on host far"):
            with locked(other, "web"):
                pass
        with pytest.raises(LockedError, match=rf"PID {os.getpid()} on .* is changing network web on this host"):
            with locked(local, "web"):
                pass
        with pytest.raises(LockedError, match="host-wide lock"):  # another network: the host lock is held
            with locked(other, "db", wait=0.2):
                pass
    with locked(local, "web"):  # the other way round: a local holder refuses the remote one
        with pytest.raises(LockedError, match=rf"\(PID {os.getpid()}\) is changing network web on host far"):
            with locked(far, "web"):
                pass


def test_a_held_host_lock_is_waited_for_then_refused(root: str) -> None:
    local, far = LocalStore(root), remote(root)
    with locked(local, None):
        with pytest.raises(LockedError, match=r"host-wide lock on /run/bridgenet of host far for more than 0.2 s"):
            with locked(far, "web", wait=0.2):
                pass
    assert os.listdir(f"{root}/run/bridgenet") == []  # its network lock was given back and removed
    with locked(far, "web", wait=0.2):
        pass


def test_a_killed_holder_leaves_the_locks_free(root: str) -> None:
    code = ("import sys, time\nfrom bridgenet.remote_store import RunnerStore\n"
            "from test_state_store import ProcessRunner\n"
            "s = RunnerStore(ProcessRunner(), sys.argv[1])\n"
            "with s.locked('web', 5):\n    print('held', flush=True)\n    time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    child = subprocess.Popen([sys.executable, "-c", code, f"{root}/run/bridgenet"], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"held\n"
        with pytest.raises(LockedError):
            with locked(remote(root), "web", wait=0.1):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 10  # the lock process sees its stdin end, then exits
        while True:
            try:
                with locked(remote(root), "web", wait=0.1):
                    break
            except LockedError:
                assert time.monotonic() < deadline, "the lock stayed held after its holder was killed"
                time.sleep(0.02)
    finally:
        child.kill()
        child.wait()


def test_which_store_a_runner_gets() -> None:
    assert store_for(DryRunRunner()) is None
    assert store_for(ShRunner(fs_root="/proc/1/root")) == LocalStore("/proc/1/root")
    r = SshRunner(SshTarget("root@198.51.100.11"))
    try:
        s = store_for(r)
        assert isinstance(s, RunnerStore) and s is store_for(r) and s.where == "host root@198.51.100.11"
        assert s.directory == "/run/bridgenet"
        seen = SshRunner(SshTarget("root@198.51.100.11"), fs_root="/proc/7/root")
        assert store_for(seen) == LocalStore("/proc/7/root")  # a host whose files are visible from here
        seen.close()
    finally:
        r.close()
