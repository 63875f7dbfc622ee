"""The pytest plugin, its fixtures, faults and reachability assertions.

The example downstream project in ``tests/example_project`` is copied into a
pytester directory and run: in-process, in a subprocess, with pytest-xdist
(``-n 2 --dist each``: both workers build ``br0`` and ``container4`` at the
same time, each in its own sandbox), and as an unprivileged user. After each
run nothing may be left: no process of the run, no ``/run/netns`` on the
machine, no new link in the machine's network namespace (read with ``ip
-json link``, never changed).

Rootless: as an ordinary user the in-process run is already rootless, and
``test_example_project_rootless`` runs it again with a proof that the
sandbox used a user namespace. As root, that test needs
``BRIDGENET_ROOTLESS_USER`` (an unprivileged user) and
``BRIDGENET_ROOTLESS_PYTHON`` (a python with pytest that user can run) and
runs the project through ``runuser``; without them it skips, saying so.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import bridgenet
from bridgenet.apply import up
from bridgenet.errors import SandboxError, ValidationError
from bridgenet.faults import Faults, qdisc_stats, tbf_args, veth_ends
from bridgenet.testing.processes import NetnsProcesses, NetnsRunner, PortNotReady, ProcessExitedError, listening
from bridgenet.testing.reach import assert_reachable, assert_unreachable
from bridgenet.runners import REQUIRE_SANDBOX_ENV
from bridgenet.sandbox import Sandbox
from bridgenet.tutorial import tutorial

EXAMPLE = Path(__file__).resolve().with_name("example_project")
EXAMPLE_TESTS = 15
NETEM_TESTS = 1
"""Tests of the example project that need the kernel's sch_netem (tc netem); skipped, saying so, where it is missing."""
SOURCE_ROOT = Path(bridgenet.__file__).resolve().parent.parent
RUN_MARK = "BRIDGENET_PLUGIN_TEST_RUN"
"""Environment variable every process of a run inherits; how its leftovers are found."""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PLUGIN = "bridgenet.testing.plugin"
PLUGIN_ENTRY_POINTS = (PLUGIN, "bridgenet.pytest_plugin")
"""The plugin's entry point, and the one an older install of bridgenet has (it loads the same plugin)."""

_SEES_ENTRY_POINT = (
    "import importlib.metadata as m, os\n"
    "print(not os.environ.get('PYTEST_DISABLE_PLUGIN_AUTOLOAD') and any("
    f"e.value in {PLUGIN_ENTRY_POINTS!r} for e in m.entry_points(group='pytest11')))"
)


# --- helpers -------------------------------------------------------------------


def plugin_args_here() -> list[str]:
    """``-p bridgenet.testing.plugin`` unless this process's pytest would load it from its entry point."""
    if not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") and any(
        e.value in PLUGIN_ENTRY_POINTS for e in importlib.metadata.entry_points(group="pytest11")
    ):
        return []
    return ["-p", PLUGIN]


def plugin_args_for(argv_prefix: list[str]) -> list[str]:
    """The same, asked of the python that ``argv_prefix`` starts (with its own environment)."""
    r = subprocess.run([*argv_prefix, "-c", _SEES_ENTRY_POINT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [] if r.stdout.strip() == "True" else ["-p", PLUGIN]


def host_links() -> list[str]:
    """Names of the links in this process's network namespace (read-only)."""
    r = subprocess.run(["ip", "-json", "link"], capture_output=True, text=True, check=True)
    return sorted(link["ifname"] for link in json.loads(r.stdout))


def marked_processes(mark: str) -> list[str]:
    """Live processes whose environment carries ``RUN_MARK=mark`` (zombies have none)."""
    needle = f"{RUN_MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            if needle in env:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry}: {cmdline}")
        except OSError:
            continue
    return found


class Leftovers:
    """What a run must not leave behind, measured before and checked after."""

    def __init__(self) -> None:
        self.mark = uuid.uuid4().hex
        self.links = host_links()
        self.run_netns = sorted(os.listdir("/run/netns")) if os.path.exists("/run/netns") else None

    def check(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while (procs := marked_processes(self.mark)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs, "processes of the run are still alive:\n" + "\n".join(procs)
        if self.run_netns is None:
            assert not os.path.exists("/run/netns"), "/run/netns appeared on the machine"
        else:
            assert sorted(os.listdir("/run/netns")) == self.run_netns
        assert host_links() == self.links, "the machine's network namespace has new or missing links"


@pytest.fixture
def leftovers(monkeypatch: pytest.MonkeyPatch) -> Leftovers:
    watch = Leftovers()
    monkeypatch.setenv(RUN_MARK, watch.mark)
    return watch


@pytest.fixture
def subprocess_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a ``python -m pytest`` subprocess import this bridgenet (pytester runs it from its own directory)."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SOURCE_ROOT), *([old] if old else [])]))


def copy_example(dest: Path) -> None:
    shutil.copytree(EXAMPLE, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))


ROOTLESS_PROOF = '''
import os


def test_the_sandbox_is_rootless(bridgenet_sandbox, bridgenet_tutorial, bridgenet_reach):
    assert os.geteuid() != 0
    assert bridgenet_sandbox.userns  # a user namespace maps this user to root inside
    bridgenet_reach.assert_reachable("container4", "container5")
'''


# --- the example project, four ways ---------------------------------------------------


def assert_example_outcomes(counts: dict[str, int], out: str, *, runs: int = 1, extra: int = 0) -> None:
    """Every example test passed ``runs`` times (plus ``extra`` more), but those that need netem
    where the kernel lacks it: skipped, with a reason naming sch_netem."""
    skipped = counts.get("skipped", 0)
    assert skipped in (0, runs * NETEM_TESTS), out
    if skipped:
        assert re.search(r"SKIPPED .*sch_netem", out), out
    expected = {"passed": runs * EXAMPLE_TESTS + extra - skipped, **({"skipped": skipped} if skipped else {})}
    outcomes = ("passed", "skipped", "failed", "errors", "xfailed", "xpassed")
    assert {k: v for k, v in counts.items() if v and k in outcomes} == expected, out


@pytest.mark.real
def test_example_project_in_process(pytester: pytest.Pytester, leftovers: Leftovers) -> None:
    copy_example(pytester.path)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
    assert_example_outcomes(result.parseoutcomes(), result.stdout.str())
    leftovers.check()


@pytest.mark.real
def test_example_project_subprocess(pytester: pytest.Pytester, leftovers: Leftovers, subprocess_env: None) -> None:
    copy_example(pytester.path)
    args = plugin_args_for([sys.executable])
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=120)
    assert_example_outcomes(result.parseoutcomes(), result.stdout.str())
    result.stdout.fnmatch_lines(["bridgenet: sandbox scope function, *"])
    leftovers.check()


@pytest.mark.real
def test_example_project_xdist(pytester: pytest.Pytester, leftovers: Leftovers, subprocess_env: None) -> None:
    pytest.importorskip("xdist")
    copy_example(pytester.path)
    args = plugin_args_for([sys.executable])
    # --dist each: both workers run every test, at the same time, each test in its own sandbox
    # with the same names (br0, container4, container5, 10.201.0.0/24).
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", "-n", "2", "--dist", "each", "-v",
                                           timeout=120)
    out = result.stdout.str()
    assert_example_outcomes(result.parseoutcomes(), out, runs=2)
    for worker in ("gw0", "gw1"):
        assert re.search(rf"\[{worker}\].*PASSED test_echo.py::test_partition_then_recovery", out), out
    leftovers.check()


@pytest.mark.real
def test_example_project_rootless(pytester: pytest.Pytester, leftovers: Leftovers) -> None:
    if os.geteuid() != 0:
        copy_example(pytester.path)
        pytester.makepyfile(test_rootless_proof=ROOTLESS_PROOF)
        result = pytester.runpytest_inprocess(*plugin_args_here(), "-p", "no:cacheprovider")
        assert_example_outcomes(result.parseoutcomes(), result.stdout.str(), extra=1)
        leftovers.check()
        return
    user = os.environ.get("BRIDGENET_ROOTLESS_USER")
    python = os.environ.get("BRIDGENET_ROOTLESS_PYTHON")
    if not (user and python):
        pytest.skip("running as root: set BRIDGENET_ROOTLESS_USER (an unprivileged user) and "
                    "BRIDGENET_ROOTLESS_PYTHON (a python with pytest that user can run) to run the "
                    "example project rootless")
    runuser = shutil.which("runuser")
    assert runuser, "runuser (util-linux) is needed to run as another user"
    pw = pwd.getpwnam(user)
    assert pw.pw_uid != 0, f"{user} is root"
    work = Path(tempfile.mkdtemp(prefix="bridgenet-rootless-"))  # pytester's directory is root's, mode 0700
    try:
        project = work / "project"
        copy_example(project)
        (project / "test_rootless_proof.py").write_text(ROOTLESS_PROOF)
        for path in [work, *work.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
        env = {"PATH": PATH, "HOME": str(work), "PYTHONPATH": str(SOURCE_ROOT), "PYTHONDONTWRITEBYTECODE": "1",
               RUN_MARK: leftovers.mark}
        as_user = [runuser, "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), python]
        args = plugin_args_for(as_user)
        r = subprocess.run([*as_user, "-m", "pytest", *args, "-p", "no:cacheprovider", f"--basetemp={work}/tmp",
                            "-ra"], cwd=project, capture_output=True, text=True, timeout=180)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "rootless (user namespace)" in out, out
        assert_example_outcomes(pytest.RunResult.parse_summary_nouns(out.splitlines()), out, extra=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    leftovers.check()


# --- keep, skip, scopes, environment -------------------------------------------------------


@pytest.mark.real
def test_failed_test_keeps_its_sandbox(pytester: pytest.Pytester, leftovers: Leftovers,
                                       subprocess_env: None) -> None:
    pytester.makepyfile(test_keep='''
        def test_breaks(bridgenet_tutorial, netns_process):
            netns_process("container5", ["sleep", "30"])
            assert False, "on purpose"

        def test_passes(bridgenet_tutorial):
            pass
    ''')
    args = plugin_args_for([sys.executable])
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", "--bridgenet-keep", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*- bridgenet: sandbox kept alive -*", "*bridgenet: sandboxes kept alive for inspection*"])
    pids = set(re.findall(r"kill -KILL (\d+)", out))
    assert len(pids) == 1, out
    pid = int(pids.pop())
    enter = re.search(r"^\s*(nsenter --target %d .*-- sh)$" % pid, out, re.M)
    assert enter, out
    try:
        # pytest has exited; the failed test's sandbox lives on, with its network
        assert os.path.exists(f"/proc/{pid}")
        look = subprocess.run([*shlex.split(enter.group(1))[:-1], "ip", "-json", "netns", "list"],
                              capture_output=True, text=True, timeout=10)
        assert {"container4", "container5"} <= {n["name"] for n in json.loads(look.stdout)}, look
        # its background process was ended at teardown all the same
        assert not [p for p in marked_processes(leftovers.mark) if "sleep 30" in p]
    finally:
        os.kill(pid, signal.SIGKILL)  # what the report's `kill -KILL PID` does
    leftovers.check()


def test_skips_with_the_exact_reason_when_no_sandbox_can_be_made(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    pytester.makepyfile(test_needs_sandbox="def test_it(bridgenet_sandbox):\n    pass\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare, nsenter or ip
    with pytest.raises(SandboxError) as e:
        Sandbox().start()
    reason = str(e.value)
    assert "unshare is not installed" in reason

    result = pytester.runpytest_inprocess(*plugin_args_here(), "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] *: {reason}"])

    result = pytester.runpytest_inprocess(*plugin_args_here(), "--bridgenet-no-skip")
    result.assert_outcomes(errors=1)
    assert reason in result.stdout.str()


def test_plugin_requires_a_sandbox_for_the_session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SANDBOX_ENV, raising=False)
    pytester.makepyfile(test_env=f'''
        import os, pytest
        from bridgenet.errors import NotInSandboxError
        from bridgenet.runners import ShRunner

        def test_env():
            assert os.environ["{REQUIRE_SANDBOX_ENV}"] == "1"
            with pytest.raises(NotInSandboxError):
                ShRunner().exec(["true"])
    ''')
    result = pytester.runpytest_inprocess(*plugin_args_here())
    result.assert_outcomes(passed=1)
    assert REQUIRE_SANDBOX_ENV not in os.environ  # put back as it was after the session


SCOPES_FILE = '''
import pytest

PIDS = {}


def test_a(bridgenet_sandbox):
    PIDS["a"] = bridgenet_sandbox.pid


def test_b(bridgenet_sandbox):
    assert bridgenet_sandbox.pid != PIDS["a"]  # a new sandbox per test


@pytest.mark.bridgenet(scope="module", upstream=True)
def test_c(bridgenet_tutorial, bridgenet_sandbox, bridgenet_faults, netns_process):
    PIDS["c"] = bridgenet_sandbox.pid
    bridgenet_faults.link_down("uplink")          # undone after the test
    netns_process(None, ["sleep", "300"])         # ended after the test


@pytest.mark.bridgenet(scope="module", upstream=True)
def test_d(bridgenet_tutorial, bridgenet_sandbox, netns_run):
    # same sandbox; the lesson's network could be built again, so it was taken down after test_c
    assert bridgenet_sandbox.pid == PIDS["c"]
    assert "UP" in netns_run(None, "ip -br link show dev uplink", check=True).stdout
    assert "sleep" not in netns_run(None, "ps -e -o comm", check=True).stdout


@pytest.mark.bridgenet(scope="module")
def test_e(bridgenet_sandbox):
    assert bridgenet_sandbox.pid != PIDS["c"]  # no upstream: another shared sandbox
    assert not bridgenet_sandbox.upstream


@pytest.mark.bridgenet(scope="class")
class TestClass:
    def test_f(self, bridgenet_sandbox):
        PIDS["f"] = bridgenet_sandbox.pid

    def test_g(self, bridgenet_sandbox):
        assert bridgenet_sandbox.pid == PIDS["f"]
'''

OPTION_FILE = '''
PIDS = []


def test_one(bridgenet_sandbox):
    PIDS.append(bridgenet_sandbox.pid)


def test_two(bridgenet_sandbox):
    PIDS.append(bridgenet_sandbox.pid)
    assert len(set(PIDS)) == 1
'''


@pytest.mark.real
def test_scope_from_marker_option_and_ini(pytester: pytest.Pytester, leftovers: Leftovers) -> None:
    pytester.makepyfile(test_scopes=SCOPES_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "test_scopes.py")
    result.assert_outcomes(passed=7)

    pytester.makepyfile(test_option=OPTION_FILE)
    result = pytester.runpytest_inprocess(*plugin_args_here(), "--bridgenet-scope=session", "test_option.py")
    result.assert_outcomes(passed=2)

    pytester.makeini("[pytest]\nbridgenet_scope = module\n")
    result = pytester.runpytest_inprocess(*plugin_args_here(), "test_option.py")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["bridgenet: sandbox scope module, *"])

    result = pytester.runpytest_inprocess(*plugin_args_here(), "--bridgenet-scope=function", "test_option.py")
    result.assert_outcomes(passed=1, failed=1)  # the command line wins over the ini file
    leftovers.check()


def test_bad_marker_argument_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad='''
        import pytest

        @pytest.mark.bridgenet(scop="module")
        def test_it(bridgenet_sandbox):
            pass
    ''')
    result = pytester.runpytest_inprocess(*plugin_args_here())
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.bridgenet has no argument 'scop'*"])


# --- reach, faults, processes, directly --------------------------------------------------


@pytest.fixture
def lesson():
    """The lesson's network up in a fresh sandbox."""
    with Sandbox() as sb:
        up(tutorial(), sb.runner(), batch=True)
        yield sb


@pytest.mark.real
def test_unreachable_message_shows_what_a_person_would_look_at(lesson: Sandbox) -> None:
    sb = lesson
    assert_reachable(sb, "container4", "container5")
    faults = Faults(sb)
    assert faults.partition("container5") == ["brid5"]
    assert_unreachable(sb, "container4", "10.201.0.5")
    with pytest.raises(AssertionError) as e:
        assert_reachable(sb, "container4", "container5", timeout=1)
    msg = str(e.value)
    for expected in [
        "not reachable: container4 -> 10.201.0.5 (container5) by ping",
        "diagnosis (port-down): bridge port brid5 (br0) in host", "fix: ip link set dev brid5 up",
        "sandbox host: link brid5 (bridge port of br0) is administratively DOWN",
        "container5: link veth5 is up but",
        "--- container4 ---", "--- container5 ---", "--- sandbox host ---",
        "$ ip -n container4 route", "default via 10.201.0.1 dev veth4",
        "$ ip -n container4 neigh",
        "$ ip -n container5 -br link",
        "$ ip netns exec container4 iptables -nvL",
        "$ ip netns exec container5 iptables -t nat -nvL",
        "$ iptables -t nat -nvL", "MASQUERADE",
    ]:
        assert expected in msg, f"{expected!r} missing from:\n{msg}"

    faults.heal("container5")
    assert_reachable(sb, "container4", "container5")
    # (not `-s 10.201.0.4`: the lesson's MASQUERADE also rewrites bridged traffic, so container5
    # sees container4's packets coming from 10.201.0.1)
    sb.run(["iptables", "-A", "INPUT", "-p", "icmp", "-j", "DROP"], netns="container5", check=True)
    with pytest.raises(AssertionError) as e:
        assert_reachable(sb, "container4", "container5", timeout=0.5)
    assert re.search(r"container5: iptables filter INPUT: \d+ packet\(s\) hit DROP", str(e.value)), str(e.value)

    with pytest.raises(AssertionError) as e:
        assert_unreachable(sb, None, "10.201.0.4")
    assert str(e.value).startswith("unexpectedly reachable: sandbox host -> 10.201.0.4 (container4) by ping")
    with pytest.raises(ValueError, match="neither an IPv4 address nor a network namespace"):
        assert_reachable(sb, "container4", "container9")


@pytest.mark.real
def test_rate_limit_puts_tbf_on_both_ends_and_restore_removes_it(lesson: Sandbox) -> None:
    sb = lesson
    assert veth_ends(sb, "container4")[0].host == "brid4"
    faults = Faults(sb)
    shaped = faults.rate_limit("container4", rate="1mbit", burst="16kb", latency="50ms")
    assert shaped == [("brid4", None), ("veth4", "container4")]
    assert qdisc_stats(sb, "brid4")["kind"] == "tbf"
    assert qdisc_stats(sb, "veth4", netns="container4")["options"]["rate"] == 125000  # bytes/s
    faults.link_down("veth4", netns="container4")
    assert faults.active == ["link veth4 in container4 down", "tbf on brid4", "tbf on veth4 in container4"]
    assert faults.restore() == []
    assert faults.active == []
    assert qdisc_stats(sb, "brid4")["kind"] == "noqueue"
    assert_reachable(sb, "container4", "container5")


def test_tbf_arguments_are_checked() -> None:
    assert tbf_args(2_000_000, 16384, 0.05) == ["tbf", "rate", "2000000bit", "burst", "16384", "latency", "50ms"]
    for kwargs, field in [({"rate": "fast"}, "rate"), ({"rate": "1mbit", "burst": "lots"}, "burst"),
                          ({"rate": "1mbit", "latency": -1}, "latency"), ({"rate": 0}, "rate")]:
        with pytest.raises(ValidationError) as e:  # a ValueError too, as before
            tbf_args(**kwargs)
        assert e.value.field == field and str(e.value).startswith(f"faults.rate_limit: {field}: ")


@pytest.mark.real
def test_processes_ports_and_timeouts(lesson: Sandbox, tmp_path: Path) -> None:
    sb = lesson
    run = NetnsRunner(sb)
    r = run("container4", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert run("container4", ["cat"], input="fed\n").stdout == "fed\n"
    start = time.monotonic()
    r = run("container4", ["sleep", "30"], timeout=0.3)
    assert r.exit_code == 124 and "timed out after 0.3 s" in r.stderr
    assert time.monotonic() - start < 3
    assert "sleep" not in run(None, ["ps", "-e", "-o", "comm"]).stdout  # killed, not left behind

    procs = NetnsProcesses(sb, tmp_path)
    with pytest.raises(ProcessExitedError, match="exited with code 2 before listening"):
        procs("container5", ["sh", "-c", "echo nope >&2; exit 2"]).wait_for_port(7000, timeout=5)
    idle = procs("container5", ["sleep", "30"])
    with pytest.raises(PortNotReady, match="nothing listens on TCP port 7000"):
        idle.wait_for_port(7000, timeout=0.2)
    server = procs("container5", [sys.executable, "-c",
                                  "import socket, time; s = socket.create_server(('10.201.0.5', 7000)); "
                                  "print('up', flush=True); time.sleep(30)"])
    server.wait_for_port(7000, address="10.201.0.5")
    assert listening(sb, 7000, netns="container5") and not listening(sb, 7000, netns="container4")
    assert server.stdout == "up\n"
    assert_reachable(sb, "container4", "container5", port=7000)
    procs.stop_all()
    assert not server.running and not idle.running
    with pytest.raises(AssertionError, match="by TCP port 7000"):
        assert_reachable(sb, "container4", "container5", port=7000, timeout=0.3)
