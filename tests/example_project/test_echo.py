"""The echo service on the lesson's network: server in container5, client in container4."""

import sys
from pathlib import Path

import pytest

ECHO = Path(__file__).with_name("echo.py")
PORT = 7000


def send(netns_run, text, timeout=1.0):
    """One line from the client in container4 to the server at 10.201.0.5."""
    return netns_run("container4", [sys.executable, ECHO, "send", "10.201.0.5", str(PORT), text,
                                    "--timeout", str(timeout)], timeout=timeout + 10)


def transfer(netns_run, nbytes):
    """Send nbytes from container4 and read them back; seconds it took."""
    r = netns_run("container4", [sys.executable, ECHO, "transfer", "10.201.0.5", str(PORT), str(nbytes),
                                 "--timeout", "10"], timeout=30, check=True)
    count, seconds = r.stdout.split()
    assert int(count) == nbytes
    return float(seconds)


@pytest.fixture
def echo_server(bridgenet_tutorial, netns_process):
    """The echo service listening on 10.201.0.5:7000 inside container5."""
    address = bridgenet_tutorial.address("container5")
    server = netns_process("container5", [sys.executable, ECHO, "serve", address, str(PORT)])
    return server.wait_for_port(PORT, address=address)


def test_round_trip(echo_server, netns_run):
    r = send(netns_run, "hello")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "hello\n"


def test_partition_then_recovery(echo_server, netns_run, bridgenet_faults, bridgenet_reach):
    assert send(netns_run, "before").stdout == "before\n"

    cut = bridgenet_faults.partition("container5")  # container5's bridge port goes down
    assert cut == ["brid5"]
    r = send(netns_run, "lost", timeout=1.0)
    assert r.exit_code == 2, (r.exit_code, r.stderr)  # the client's own timeout, not an error
    assert "timed out" in r.stderr
    bridgenet_reach.assert_unreachable("container4", "container5", port=PORT)

    bridgenet_faults.heal("container5")
    bridgenet_reach.assert_reachable("container4", "container5", port=PORT)
    r = send(netns_run, "after", timeout=2.0)
    assert (r.exit_code, r.stdout) == (0, "after\n"), r.stderr


def test_rate_limit(echo_server, netns_run, bridgenet_faults):
    size = 128 * 1024  # bytes each way: bounded, ≈0.5 s at 2 Mbit/s
    fast = transfer(netns_run, size)

    bridgenet_faults.rate_limit("container5", rate="2mbit", burst="16kb", latency="200ms")
    slow = transfer(netns_run, size)

    assert slow >= 0.3, f"{size} bytes through a 2 Mbit/s limit took only {slow:.3f} s"
    assert slow > 3 * fast, (fast, slow)
