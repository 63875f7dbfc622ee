"""Fast tier: ``bridgenet graph`` (issue 13), the diagram of a network drawn from its model.

Golden diagrams of the lesson and examples/campus.toml in every format
(BRIDGENET_UPDATE_GOLDEN=1 rewrites them); the CLI and the Python API give
the same text; from a file or the lesson nothing is started; bad arguments
are usage errors; the dot output renders with Graphviz without a warning
(skipped when ``dot`` is not installed); a network that is up is found by
its state file; IPv6 addresses and published ports are drawn when the
model has them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import bridgenet
from bridgenet import Address, Bridge, Namespace, Network, Route, VethPair, config
from bridgenet.cli import main
from bridgenet.diagram import HOST, MAX_ROUTES, _published, picture
from bridgenet.recorded import network_named
from bridgenet.errors import ValidationError
from helpers import check_golden

ROOT = Path(__file__).resolve().parent.parent
CAMPUS = ROOT / "examples" / "campus.toml"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGENET_UPDATE_GOLDEN") == "1"

CASES = [  # (golden name, CLI arguments, network)
    ("tutorial", [], bridgenet.tutorial),
    ("campus", ["-f", str(CAMPUS)], lambda: config.load(CAMPUS)),
]
FORMATS = [  # (suffix, CLI arguments, API keywords)
    ("txt", [], {}),
    ("ascii.txt", ["--ascii"], {"ascii": True}),
    ("dot", ["--format", "dot"], {"format": "dot"}),
    ("mmd", ["--format", "mermaid"], {"format": "mermaid"}),
]




def cli(capsys, *argv):
    code = main(["graph", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix,fmt_args,kwargs", FORMATS, ids=[f[0] for f in FORMATS])
@pytest.mark.parametrize("name,args,make", CASES, ids=[c[0] for c in CASES])
def test_golden(capsys, name, args, make, suffix, fmt_args, kwargs):
    code, out, err = cli(capsys, *args, *fmt_args)
    assert (code, err) == (0, "")
    check_golden(f"graph-{name}.{suffix}", out)
    assert bridgenet.graph(make(), **kwargs) == out  # the API draws what the CLI prints
    assert bridgenet.graph(make(), **kwargs) == out  # and the same every time


@pytest.mark.parametrize("name,args,make", CASES, ids=[c[0] for c in CASES])
def test_text_fits_a_terminal(name, args, make):
    text = bridgenet.graph(make())
    assert max(len(line) for line in text.splitlines()) <= 100
    assert not any(line != line.rstrip() for line in text.splitlines())
    plain = bridgenet.graph(make(), ascii=True)
    assert plain.isascii()
    assert len(plain.splitlines()) == len(text.splitlines())
    for fmt in ("dot", "mermaid"):
        assert bridgenet.graph(make(), format=fmt).isascii()


def test_text_shows_the_lesson():
    text = bridgenet.graph(bridgenet.tutorial())
    for part in ("br0 (bridge)", "br0 10.201.0.1/24 (gateway)", "host (ip_forward=1)", "MASQUERADE 10.201.0.0/24",
                 "upstream", "veth4 10.201.0.4/24", "─ brid4 ─┤", "─ brid5 ─┘", "route default via 10.201.0.1"):
        assert part in text, part


def test_campus_router_and_bare_link():
    pic = picture(config.load(CAMPUS))
    r1 = pic.box("r1")
    assert r1.router and r1.title == "r1 (router: ip_forward=1)"
    assert [(f.name, f.bridge, f.port) for f in r1.ifaces] == [("eth0", "lan0", "v-r1"), ("eth1", "lan1", "v-r1-1")]
    assert [(link.a, link.b, link.mtu) for link in pic.links] == [(("b", "to-c"), ("c", "to-b"), 1400)]
    assert pic.box("b").ifaces[1].addresses == ("10.99.0.1/30",)  # the name end's Address
    assert pic.nat == ("MASQUERADE 10.10.0.0/24 (not out lan0)",)
    assert pic.box(HOST).ifaces[0].gateway and not pic.box("a").ifaces[0].gateway


def _no_process(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"graph started a process: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "system"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse)


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
@pytest.mark.parametrize("name,args,make", CASES, ids=[c[0] for c in CASES])
def test_runs_nothing(capsys, monkeypatch, name, args, make, fmt):
    _no_process(monkeypatch)
    import bridgenet.runners as runners

    for cls in (runners.ShRunner,):
        monkeypatch.setattr(cls, "run", lambda *a, **k: pytest.fail("graph ran a command"))
    code, out, err = cli(capsys, *args, "--format", fmt)
    assert code == 0 and out and err == ""


@pytest.mark.parametrize("argv,message", [
    (["--format", "svg"], "invalid choice: 'svg'"),
    (["--ascii", "--format", "dot"], "--ascii goes with --format text"),
    (["-f", str(CAMPUS), "campus"], "not both"),
])
def test_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["graph", *argv])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "usage: bridgenet graph" in err


def test_invalid_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nbridges = [{ name = "br0" }]\nlinks = 3\n')
    code, out, err = cli(capsys, "-f", str(bad))
    assert code == 2 and out == "" and "invalid network" in err
    code, out, err = cli(capsys, "-f", str(tmp_path / "missing.toml"))
    assert code == 2 and out == "" and "must exist" in err


def test_api_errors():
    net = bridgenet.tutorial()
    with pytest.raises(ValidationError, match="format: one of text, dot, mermaid"):
        bridgenet.graph(net, format="svg")
    with pytest.raises(ValidationError, match="plain ASCII goes with the text format"):
        bridgenet.graph(net, format="dot", ascii=True)
    with pytest.raises(ValidationError, match="ascii: true or false"):
        bridgenet.graph(net, ascii="yes")
    with pytest.raises(ValidationError, match="a bridgenet.Network"):
        bridgenet.graph("br0")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
@pytest.mark.parametrize("name,args,make", CASES, ids=[c[0] for c in CASES])
def test_dot_renders_without_warnings(name, args, make):
    proc = subprocess.run(["dot", "-Tsvg"], input=bridgenet.graph(make(), format="dot"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "<svg" in proc.stdout
    assert all(f">{b.name}" in proc.stdout for b in make().bridges)


def test_dot_and_mermaid_quote_names():
    net = Network("odd", [Bridge("br-x.1"), Namespace("end"), Namespace("end-1"),
                          VethPair("v1", "eth0", "end", "br-x.1"), VethPair("v2", "eth0", "end-1", "br-x.1")])
    mermaid = bridgenet.graph(net, format="mermaid")
    assert 'br_br_x_1{{"br-x.1<br>bridge"}}' in mermaid
    assert "  ns_end[" in mermaid and "  ns_end_1[" in mermaid
    assert "\n  end" not in mermaid  # 'end' closes a subgraph in Mermaid: never a bare id
    dot = bridgenet.graph(net, format="dot")
    assert '"bridge br-x.1" -- "netns end-1" [label="v2 - eth0"];' in dot


def test_mermaid_ids_do_not_collide():
    net = Network("ids", [Namespace("a-b"), Namespace("a_b"), VethPair("x1", "y1", "a-b", name_netns="a_b")])
    mermaid = bridgenet.graph(net, format="mermaid")
    assert "  ns_a_b[" in mermaid and "  ns_a_b_2[" in mermaid
    assert "  ns_a_b_2 ---|\"x1 - y1\"| ns_a_b" in mermaid


def test_a_veth_to_the_host_and_many_routes():
    routes = [Route("n1", "10.5.0.1", f"10.{i}.0.0/16") for i in range(10, 10 + MAX_ROUTES + 3)]
    net = Network("hostlink", [Namespace("n1"), VethPair("h1", "eth0", "n1", address="10.5.0.2/24"),
                               Address("h1", "10.5.0.1/24"), *routes])
    pic = picture(net)
    assert pic.links[0].a == (HOST, "h1") and pic.links[0].b == ("n1", "eth0")
    assert pic.box(HOST).ifaces[0].gateway
    assert pic.box("n1").notes[-1] == "... and 3 more routes"
    assert len(pic.box("n1").notes) == MAX_ROUTES + 1
    text = bridgenet.graph(net)
    assert "h1 10.5.0.1/24 (gateway) (veth to n1)" in text and "eth0 10.5.0.2/24 (veth to the host)" in text
    assert "bare veth" in text


def test_a_network_without_anything_in_the_host():
    net = Network("bare", [Namespace("n1"), Namespace("n2"), VethPair("ve1", "ve2", "n2", name_netns="n1")])
    text = bridgenet.graph(net)
    assert "(no interface of this network)" in text and "upstream" not in text and "bridge" not in text.split("\n\n")[1]


# --- what the model gains elsewhere (IPv6, published ports), read by name ---------------------------------


def test_ipv6_addresses_and_published_ports_drawn():
    """The dual-stack example's IPv6 addresses and the ports example's published ports (golden files)."""
    for example in ("dualstack", "ports"):
        net = config.load(ROOT / "examples" / f"{example}.toml")
        text = bridgenet.graph(net)
        check_golden(f"graph-{example}.txt", text)
    dual = bridgenet.graph(config.load(ROOT / "examples" / "dualstack.toml"))
    assert "fd00:30::30/64" in dual and "fd00:30::1/64" in dual
    ports = bridgenet.graph(config.load(ROOT / "examples" / "ports.toml"))
    assert "tcp 0.0.0.0:8080 -> web 10.88.0.10:80" in ports
    assert "tcp 127.0.0.1:8081 -> web 10.88.0.10:80" in ports
    assert "udp 0.0.0.0:5353 -> web 10.88.0.10:53" in ports
    assert _published(object()) is None


# --- a network that is up: its state file ----------------------------------------------------------------


def _state(root: Path, name: str, source: str | None) -> None:
    d = root / "run" / "bridgenet"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps({"version": 1, "network": name,
                                                 "identity": {"source": source, "bridges": []},
                                                 "entries": [{"key": "link x", "covered_by": None, "owns": True,
                                                              "status": "done", "undo": []}]}))


def test_network_named_from_its_state_file(tmp_path):
    _state(tmp_path, "campus", str(CAMPUS))
    _state(tmp_path, "tutorial", "the lesson")
    _state(tmp_path, "py", None)
    _state(tmp_path, "moved", str(CAMPUS))
    assert network_named("campus", str(tmp_path)) == config.load(CAMPUS)
    assert network_named("tutorial", str(tmp_path)) == bridgenet.tutorial()
    with pytest.raises(ValidationError, match="built from Python"):
        network_named("py", str(tmp_path))
    with pytest.raises(ValidationError, match="now defines the network campus, not moved"):
        network_named("moved", str(tmp_path))
    with pytest.raises(ValidationError, match=r"known: campus, moved, py, tutorial"):
        network_named("nope", str(tmp_path))
    with pytest.raises(ValidationError, match="a network name"):
        network_named("../etc", str(tmp_path))


def test_cli_name_not_up(capsys):
    code, out, err = cli(capsys, "no-such-network-of-graph-tests")
    assert code == 2 and out == "" and "state file" in err


def test_a_namespace_called_host():
    net = Network("h", [Namespace("host"), VethPair("hv", "eth0", "host", address="10.6.0.2/24"),
                        Address("hv", "10.6.0.1/24")])
    pic = picture(net)
    assert [b.title for b in pic.boxes] == ["host", "netns host"]
    assert pic.links[0].a == (HOST, "hv") and pic.links[0].b == ("host", "eth0")
    assert '  host ---|"hv - eth0"| ns_host' in bridgenet.graph(net, format="mermaid")
    assert '"host" -- "netns host"' in bridgenet.graph(net, format="dot")
