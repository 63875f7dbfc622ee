"""Fast tier: names (``names.py``): the /etc/netns files' commands, their text, the ``dns``/``names`` keys."""

from __future__ import annotations

import io
import os
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from bridgenet import config
from bridgenet.batch import BatchRunner
from bridgenet.commands import FilePresent, command_from_dict, command_to_dict
from bridgenet.errors import ValidationError
from bridgenet.names import FAIL_FAST, LOCALHOST, EtcNetns, Names, hosts_text, parse_tree
from bridgenet.runners import DryRunRunner
from bridgenet.topology import BridgeSpec, Node, topology
from helpers import check_golden

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"




def app(**kw):
    return topology("app", bridges=[BridgeSpec("br-app", "10.30.0.1/24")],
                    containers=[Node("web", "10.30.0.10"), Node("db", "10.30.0.11")], **kw)


def names_lines(commands) -> str:
    return "".join(c.shell() + "\n" for c in commands if c.tool in ("mkdir", "tee", "rm", "rmdir"))


def test_dry_run_prints_the_exact_file_writing_commands():
    net = app(dns=["198.51.100.1"])
    check_golden("names-up.txt", names_lines(net.up_commands()))
    check_golden("names-down.txt", names_lines(net.down_commands()))


def test_the_batch_script_writes_the_files_with_three_processes(tmp_path):
    """One mkdir, one tee per distinct text (every namespace's hosts is the same), each a here-document."""
    script = BatchRunner(DryRunRunner()).script(app().up_commands(fast=True))
    tail = script[script.index("mkdir /etc/netns "):]
    check_golden("names-up-batch-tail.txt", tail)
    assert [line.split()[0] for line in tail.splitlines() if line.startswith(("mkdir", "tee"))] == \
        ["mkdir", "tee", "tee"]
    down = BatchRunner(DryRunRunner()).script(app().down_commands(), direction="down")
    assert "rm -f /etc/netns/db/resolv.conf /etc/netns/db/hosts /etc/netns/web/resolv.conf /etc/netns/web/hosts\n" \
        in down  # the reverse order of up
    assert "rmdir --ignore-fail-on-non-empty /etc/netns/db /etc/netns/web /etc/netns\n" in down


def test_the_printed_commands_are_pasteable_shell():
    """Each printed command with its here-document, run by sh into a scratch directory, writes exactly the text."""
    import subprocess

    for c in app().up_commands():
        if c.tool != "tee":
            continue
        line = c.shell().replace("/etc/netns/", "/dev/fd/3/../")  # never pasted into the real /etc: check the form
        first, *body = line.split("\n")
        assert first == f"tee {c.args[0]} >/dev/null <<'EOF'".replace("/etc/netns/", "/dev/fd/3/../")
        assert "\n".join(body[:-1]) + "\n" == c.input and body[-1] == "EOF"
        out = subprocess.run(["sh", "-c", "cat <<'EOF'\n" + c.input + "EOF\n"], capture_output=True, text=True)
        assert out.stdout == c.input


def test_hosts_lists_every_container_by_name_and_name_dot_network():
    text = app().of_type(Names)[0].hosts
    assert text == LOCALHOST + "10.30.0.10\tweb web.app\n10.30.0.11\tdb db.app\n"
    assert {n.hosts for n in app().of_type(Names)} == {text}  # the same file in every namespace


def test_ipv4_first_then_ipv6_one_line_per_address():
    from bridgenet.model import VethPair

    objs = [VethPair("v1", "e1", "web", address6=IPv6Interface("fd00:30::10/64")),
            VethPair("v2", "e2", "web", address=IPv4Interface("10.30.0.10/24")),
            VethPair("v3", "e1", "db", address=IPv4Interface("10.30.0.11/24"), address6=IPv6Interface("fd00:30::11/64"))]
    assert hosts_text("app", ["web", "db"], objs) == LOCALHOST + (
        "10.30.0.10\tweb web.app\nfd00:30::10\tweb web.app\n10.30.0.11\tdb db.app\nfd00:30::11\tdb db.app\n")


def test_resolv_conf_with_and_without_dns():
    assert app().of_type(Names)[0].resolv == FAIL_FAST == "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    assert app(dns=["198.51.100.1", "2001:db8::53"]).of_type(Names)[0].resolv == \
        "nameserver 198.51.100.1\nnameserver 2001:db8::53\n"


@pytest.mark.parametrize("dns, rule", [
    (["198.51.100.300"], "each name server is text, a unicast IPv4 or IPv6 address"),
    ([53], "each name server is text"),  # was nameserver 0.0.0.53
    ([True], "each name server is text"),  # was nameserver 0.0.0.1
    (["224.0.0.1"], "not a multicast"),
    (["ff02::1"], "not a multicast"),
    (["0.0.0.0"], "not the unspecified"),
    (["::"], "not the unspecified"),
    (["255.255.255.255"], "limited broadcast"),
    (["fe80::1"], "not link-local"),
    (["169.254.1.1"], "not link-local"),
    (["fd00:50::1%eth0"], "no scope id"),
    (["198.51.100.1", "198.51.100.1"], "listed once"),
    (["2001:db8::53", "2001:DB8:0::53"], "listed once"),
    ("198.51.100.1", "dns is a list"),
    (["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"], "at most 3"),
])
def test_bad_dns_is_refused(dns, rule):
    with pytest.raises(ValidationError) as ei:
        app(dns=dns)
    assert rule in ei.value.rule and ei.value.field.startswith("dns"), ei.value


def test_bad_dns_in_a_file_names_the_entry():
    with pytest.raises(ValidationError) as ei:
        config.from_dict({"name": "app", "bridge": "br-app", "gateway": "10.30.0.1/24", "dns": ["198.51.100.1", 53],
                          "containers": [{"netns": "web", "address": "10.30.0.10"}]})
    assert ei.value.field == "dns[1]" and "text" in ei.value.rule


def test_names_off_and_the_lesson_shape_write_nothing():
    assert not app(names=False).of_type(Names) and not app(names=False).of_type(EtcNetns)
    lesson_shaped = config.from_dict({"name": "one", "containers": [{"netns": "web", "address": "10.201.0.10"}]})
    assert not lesson_shaped.of_type(Names)
    assert not any(c.tool in ("tee", "mkdir") for c in lesson_shaped.up_commands())


def test_the_file_keys(tmp_path):
    f = tmp_path / "app.toml"
    f.write_text('name = "app"\nbridge = "br-app"\ngateway = "10.30.0.1/24"\ndns = ["198.51.100.1"]\n'
                 '[[containers]]\nnetns = "web"\naddress = "10.30.0.10"\n'
                 '[[containers]]\nnetns = "db"\naddress = "10.30.0.11"\n')
    net = config.load(f)
    assert [n.netns for n in net.of_type(Names)] == ["web", "db"]
    assert net.of_type(Names)[0].resolv == "nameserver 198.51.100.1\n"
    f.write_text(f.read_text().replace('dns = ["198.51.100.1"]', "names = false"))
    assert not config.load(f).of_type(Names)
    f.write_text(f.read_text().replace("names = false", 'names = "yes"'))
    with pytest.raises(ValidationError, match="names"):
        config.load(f)


def test_a_file_command_survives_the_state_file():
    c = next(c for c in app().up_commands() if c.tool == "tee")
    back = command_from_dict(command_to_dict(c))
    assert back == c and back.input == c.input and back.effect == c.effect
    assert isinstance(back.effect, FilePresent) and back.effect.owner == "web"


def test_a_here_document_never_ends_early():
    n = Names("web", "EOF\n127.0.0.1\tlocalhost\n", FAIL_FAST)
    line = next(c for c in n.steps()[0].up if c.tool == "tee").shell()
    assert line.endswith("\nEOF1") and "<<'EOF1'" in line


def test_the_tree_read_parses_a_tar_archive():
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        d = tarfile.TarInfo("netns")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        data = b"nameserver 127.0.0.1\n"
        f = tarfile.TarInfo("netns/web/resolv.conf")
        f.size = len(data)
        tar.addfile(f, io.BytesIO(data))
    files, dirs = parse_tree(0, buf.getvalue().decode())
    assert files == {"/etc/netns/web/resolv.conf": "nameserver 127.0.0.1\n"} and dirs == {"/etc/netns"}
    assert parse_tree(2, "\0" * 10240) == ({}, frozenset())  # tar of a missing /etc/netns: an empty archive


def test_the_lesson_prints_no_file():
    from bridgenet.tutorial import tutorial

    net = tutorial()  # (the lesson's goldens themselves are compared byte for byte in test_transcript.py)
    assert not any(c.tool in ("tee", "mkdir", "rm", "rmdir") for c in [*net.up_commands(), *net.down_commands()])


@pytest.mark.parametrize("names, clash", [
    (["Web", "web"], "'web' is also a name of Web"),  # hosts ignores case: both listed, one wins
    (["web", "web.app"], "'web.app' is also a name of web"),  # web.app listed twice
    (["web.app", "web"], "'web.app' is also a name of web.app"),
    (["localhost"], "not named 'localhost'"),
    (["IP6-Loopback"], "not named"),
])
def test_host_name_clashes_are_refused(names, clash):
    nodes = [Node(n, f"10.30.0.{10 + i}") for i, n in enumerate(names)]
    with pytest.raises(ValidationError) as ei:
        topology("app", bridges=[BridgeSpec("br-app", "10.30.0.1/24")], containers=nodes)
    assert ei.value.field == "netns" and ei.value.obj.startswith("Container ") and clash in ei.value.rule, ei.value
    assert topology("app", bridges=[BridgeSpec("br-app", "10.30.0.1/24")], containers=nodes, names=False)
