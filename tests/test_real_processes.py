"""Background processes in a sandbox: waiting for THIS process's socket (TCP, UDP) and for a line of its output."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bridgenet.apply import up
from bridgenet.sandbox import Sandbox
from bridgenet.testing.processes import NetnsProcesses, OutputNotSeen, PortNotReady, ProcessExitedError
from bridgenet.testing.sockets import Socket, _address, parse_table
from bridgenet.tutorial import tutorial

TCP_SERVER = ("import socket, sys, time; s = socket.create_server(('', int(sys.argv[1]))); "
              "print('listening', flush=True); time.sleep(30)")
UDP_ECHO = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('10.201.0.5', int(sys.argv[1]))); print('bound', flush=True); "
            "d, a = s.recvfrom(100); s.sendto(d.upper(), a)")


@pytest.fixture
def procs(tmp_path: Path):
    with Sandbox() as sb:
        up(tutorial(), sb.runner(), batch=True)
        started = NetnsProcesses(sb, tmp_path)
        yield started
        started.stop_all()


@pytest.mark.real
def test_a_second_server_on_a_taken_port_is_not_taken_for_the_first(procs: NetnsProcesses) -> None:
    first = procs("container5", [sys.executable, "-c", TCP_SERVER, "7000"]).wait_for_port(7000)
    # A shell in between: the socket is a grandchild's, and still this process's own.
    second = procs("container5", ["sh", "-c", f"sleep 0.3; {sys.executable} -c \"$0\" 7000; exit $?", TCP_SERVER])
    with pytest.raises(ProcessExitedError) as e:
        second.wait_for_port(7000, timeout=10)
    assert "exited with code 1 before listening on TCP port 7000" in str(e.value)
    assert "Address already in use" in str(e.value)
    assert first.running
    (sock,) = first.sockets()
    assert (sock.port, sock.listening, str(sock.address)) == (7000, True, "0.0.0.0")


@pytest.mark.real
def test_a_port_in_another_namespace_or_of_another_process_is_not_this_ones(procs: NetnsProcesses) -> None:
    procs("container4", [sys.executable, "-c", TCP_SERVER, "7001"]).wait_for_port(7001)
    idle = procs("container5", ["sh", "-c", "sleep 30"])
    with pytest.raises(PortNotReady, match=r"nothing listens on TCP port 7001 in container5 from sh -c"):
        idle.wait_for_port(7001, timeout=0.3)


@pytest.mark.real
def test_udp_waits_for_the_bound_socket_then_it_answers(procs: NetnsProcesses) -> None:
    tcp_only = procs("container5", [sys.executable, "-c", TCP_SERVER, "7002"]).wait_for_port(7002)
    with pytest.raises(PortNotReady, match="nothing listens on UDP port 7002"):
        tcp_only.wait_for_port(7002, udp=True, timeout=0.3)
    echo = procs("container5", [sys.executable, "-c", UDP_ECHO, "7003"])
    assert echo.wait_for_port(7003, udp=True, address="10.201.0.5") is echo
    with pytest.raises(PortNotReady):
        echo.wait_for_port(7003, timeout=0.2)  # no TCP socket
    with pytest.raises(PortNotReady):
        echo.wait_for_port(7003, udp=True, address="10.201.0.4", timeout=0.2)  # bound to .5 only
    client = procs("container4", [sys.executable, "-c",
                                  "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                  "s.settimeout(5); s.sendto(b'ping', ('10.201.0.5', 7003)); "
                                  "print(s.recv(100).decode(), flush=True)"])
    assert client.wait_for_output("^PING$").group(0) == "PING"


@pytest.mark.real
def test_wait_for_output_returns_the_match_and_says_why_it_failed(procs: NetnsProcesses) -> None:
    talker = procs("container4", ["sh", "-c", "echo starting; sleep 0.2; echo 'port=7123' >&2; sleep 30"])
    m = talker.wait_for_output(r"port=(\d+)")
    assert m.group(1) == "7123"
    assert talker.wait_for_output("starting", stream="stdout").group(0) == "starting"
    with pytest.raises(OutputNotSeen) as e:
        talker.wait_for_output("port=", stream="stdout", timeout=0.3)
    assert "wrote no line matching 'port=' on stdout in 0.3 s" in str(e.value)
    assert "starting" in str(e.value) and "port=7123" in str(e.value)  # the tail of both
    quitter = procs("container4", ["sh", "-c", "echo bye; exit 4"])
    with pytest.raises(ProcessExitedError, match=r"exited with code 4 before writing a line matching 'ready'"):
        quitter.wait_for_output("ready")
    last = procs("container4", ["printf", "no newline at the end"])
    assert last.wait_for_output("end$").group(0) == "end"  # its last line counts once it has exited
    with pytest.raises(ValueError, match="stream must be one of stdout, stderr, both"):
        talker.wait_for_output("x", stream="out")
    with pytest.raises(ValueError, match="is not a regular expression"):
        talker.wait_for_output("(")
    with pytest.raises(ValueError, match="port must be 1-65535"):
        talker.wait_for_port(0)


@pytest.mark.parametrize(("line", "expected"), [
    ("0: 0100007F:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4242 1",
     ("127.0.0.1", 7000, 0x0A, 4242)),
    ("0: 00000000000000000000000001000000:1B59 00000000000000000000000000000000:0000 07 "
     "00000000:00000000 00:00000000 00000000 0 0 99 2", ("::1", 7001, 0x07, 99)),
])
def test_proc_net_lines_are_read_as_the_kernel_writes_them(line: str, expected: tuple) -> None:
    if sys.byteorder != "little":
        pytest.skip("the sample lines are a little-endian machine's")
    (s,) = parse_table("header\n" + line, "tcp", 1)
    assert (str(s.address), s.port, s.state, s.inode) == expected
    assert str(_address("0500C90A")) == "10.201.0.5"
    assert Socket("udp", _address("00000000"), 53, 7, 1, 1).serves(53, "10.0.0.1")


@pytest.mark.real
def test_a_failed_run_in_an_unknown_namespace_names_it(sb) -> None:
    from bridgenet.errors import CommandError
    from bridgenet.testing.processes import NetnsRunner

    with pytest.raises(CommandError) as e:
        NetnsRunner(sb)("nosuchns", ["true"], check=True)
    assert "ip netns exec nosuchns true" in str(e.value) and "nosuchns" in e.value.stderr
