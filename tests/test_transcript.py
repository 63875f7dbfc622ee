"""Fast tier: the lesson's transcripts, byte for byte, and the CLI's printing modes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bridgenet
from bridgenet.cli import main
from bridgenet.runners import DryRunRunner, RecordingRunner, run_all
from bridgenet.teardown import default_group

GOLDEN = Path(__file__).parent / "golden"
LESSON = """\
ip link add br0 type bridge
ip link set br0 up
ip netns add container4
ip link add brid4 type veth peer name veth4
ip link set veth4 netns container4
ip netns exec container4 ip addr add 10.201.0.4/24 dev veth4
ip netns exec container4 ip link set dev lo up
ip netns exec container4 ip link set dev veth4 up
ip link set brid4 master br0
ip link set dev brid4 up
ip netns add container5
ip link add brid5 type veth peer name veth5
ip link set veth5 netns container5
ip netns exec container5 ip addr add 10.201.0.5/24 dev veth5
ip netns exec container5 ip link set dev lo up
ip netns exec container5 ip link set dev veth5 up
ip link set brid5 master br0
ip link set dev brid5 up
ip addr add 10.201.0.1/24 brd 10.201.0.255 dev br0
ip netns exec container4 ip route add default via 10.201.0.1
ip netns exec container5 ip route add default via 10.201.0.1
sysctl -w net.ipv4.ip_forward=1
iptables -t nat -A POSTROUTING -s 10.201.0.0/24 -j MASQUERADE
"""


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_lesson_transcript_is_exactly_the_23_commands():
    lines = [c.shell() for c in bridgenet.tutorial().up_commands()]
    assert "\n".join(lines) + "\n" == LESSON
    assert len(lines) == 23


@pytest.mark.parametrize(
    "argv, golden",
    [
        (["up", "--dry-run"], "tutorial-up.txt"),
        (["down", "--dry-run"], "tutorial-down.txt"),
        (["up", "--dry-run", "--explain"], "tutorial-up-explain.txt"),
    ],
)
def test_cli_dry_run_matches_golden_file(capsys, argv, golden):
    code, out, err = cli(capsys, *argv)
    assert code == 0
    assert out == (GOLDEN / golden).read_text()
    assert err == ""


def test_golden_up_is_the_lesson():
    assert (GOLDEN / "tutorial-up.txt").read_text() == LESSON


def test_explain_only_adds_comment_and_blank_lines(capsys):
    _, out, _ = cli(capsys, "up", "--dry-run", "--explain")
    kept = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert "\n".join(kept) + "\n" == LESSON
    assert sum(1 for line in out.splitlines() if line.startswith("# 1. ")) == 1


def test_sudo_prefixes_every_command(capsys):
    _, out, _ = cli(capsys, "up", "--dry-run", "--sudo")
    assert out == "".join(f"sudo {line}\n" for line in LESSON.splitlines())


def test_down_transcript_deletes_links_in_one_request_before_the_namespaces():
    lines = (GOLDEN / "tutorial-down.txt").read_text().splitlines()
    g = default_group("tutorial")
    assert lines == [
        "iptables -t nat -D POSTROUTING -s 10.201.0.0/24 -j MASQUERADE",
        "sysctl -w net.ipv4.ip_forward=0",
        f"ip link set dev brid5 group {g}",
        f"ip link set dev brid4 group {g}",
        f"ip link set dev br0 group {g}",
        f"ip link del group {g}",
        "ip netns del container5",
        "ip netns del container4",
    ]


def test_dry_run_works_without_ip_installed(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "bridgenet", "up", "--dry-run"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == LESSON


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["up", "--explain"])
    assert ei.value.code == 2
    with pytest.raises(SystemExit) as ei:
        main(["frobnicate"])
    assert ei.value.code == 2


@pytest.mark.parametrize("cmd", ["up", "down", "plan", "clean", "tutorial"])
def test_every_command_has_help(capsys, cmd):
    with pytest.raises(SystemExit) as ei:
        main([cmd, "--help"])
    assert ei.value.code == 0
    assert "usage: bridgenet" in capsys.readouterr().out


def test_invalid_network_file_exits_2_naming_the_field(capsys, tmp_path):
    f = tmp_path / "net.toml"
    f.write_text('name = "x"\n[[containers]]\nnetns = "c1"\naddress = "10.88.0.4"\nveth = "waytoolonginterface"\n')
    code, out, err = cli(capsys, "up", "--dry-run", "--file", str(f))
    assert code == 2
    assert "veth" not in out
    assert "name" in err and "15 bytes" in err


def test_network_file_dry_run(capsys, tmp_path):
    f = tmp_path / "net.toml"
    f.write_text('name = "demo"\nbridge = "br1"\ngateway = "10.88.0.1/24"\ntag = false\n'
                 '[[containers]]\nnetns = "web"\naddress = "10.88.0.10"\n')
    code, out, _ = cli(capsys, "up", "--dry-run", "--file", str(f))
    assert code == 0
    assert out.splitlines()[:5] == [
        "ip link add br1 type bridge",
        "ip link set br1 up",
        "ip netns add web",
        "ip link add v-web type veth peer name eth0 netns web",
        "ip netns exec web ip addr add 10.88.0.10/24 dev eth0",
    ]
    assert out.splitlines()[-1] == "iptables -t nat -A POSTROUTING -s 10.88.0.0/24 '!' -o br1 -j MASQUERADE"


def test_recording_runner_records_in_order():
    r = RecordingRunner()
    run_all(r, bridgenet.tutorial().up_commands())
    assert "\n".join(r.lines) + "\n" == LESSON


def test_dry_run_runner_prints_shell_quoted(capsys):
    from bridgenet.commands import ip

    DryRunRunner().run(ip("link", "set", "dev", "x", "alias", "a b"))
    assert capsys.readouterr().out == "ip link set dev x alias 'a b'\n"
