"""The tutorial's optional chapter (``bridgenet tutorial --publish``): container5's port 80 published as 8080.

After the lesson's last step, a tiny TCP server in container5 (port 80)
is published on the host as port 8080 (``ports.py``: the DNAT chain, the
published port, hairpin on brid5), and the chapter checks that the
upstream reaches it through the host's uplink address and that the server
sees the upstream's own address (no SNAT for inbound connections), and
that container5 itself and its neighbour container4 reach it through the
host's addresses (hairpin). The lesson's own steps and checks are as without
the flag; the lesson's network is untagged, so the chapter's rules are too.
"""

from __future__ import annotations

from ipaddress import IPv4Interface
from typing import TYPE_CHECKING

from .network import Network
from .ports import Publish, port_objects
from .tutorial import BRIDGE, GATEWAY, LESSON_SOURCE, UP_ADDR, UPLINK_ADDR, Check, Probe, tutorial

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox

HOST_PORT, SERVER_PORT = 8080, 80
PUBLISHED = f"{HOST_PORT}:{SERVER_PORT}"
GATEWAY_ADDR = str(IPv4Interface(GATEWAY).ip)


def publish_network() -> Network:
    """The lesson's network with container5's ``8080:80`` published (the chapter's objects after the lesson's)."""
    lesson = tutorial()
    extra = port_objects([Publish("container5", (PUBLISHED,), IPv4Interface("10.201.0.5/24"), BRIDGE, "brid5")])
    return Network(lesson.name, [*lesson.objects, *extra], tag=lesson.tag, move_peers=lesson.move_peers,
                   source=LESSON_SOURCE)


def _seen_through(client_netns: str | None, address: str, expect: str | None) -> Probe:
    """A server in container5 on 0.0.0.0:80; the client connects to ``address``:8080; the peer it saw."""
    def probe(sb: Sandbox) -> tuple[bool, str]:
        from . import checks

        with checks.tcp_server(sb, "0.0.0.0", SERVER_PORT, netns="container5", mode="whois") as srv:
            reply = checks.tcp_request(sb, address, HOST_PORT, netns=client_netns)
            peers = srv.seen_peers()
        if not reply.ok:
            return False, f"no reply from {address}:{HOST_PORT} ({reply.summary})"
        seen = peers[0] if peers else "nothing"
        return expect is None or seen == expect, f"container5's server saw the connection come from {seen}"
    return probe


CHAPTER_CHECKS = (
    Check("publish", f"the upstream reaches container5's port {SERVER_PORT} through {UPLINK_ADDR}:{HOST_PORT}, "
          f"and the server sees {UP_ADDR}",
          f"ip netns exec upstream python3 -c 'connect to {UPLINK_ADDR}:{HOST_PORT}' (the server prints the peer)",
          "DNAT in PREROUTING rewrote the destination only; the reply is un-NATed on its way back",
          _seen_through("upstream", UPLINK_ADDR, UP_ADDR)),
    Check("publish", f"container5 reaches itself through the host's address {UPLINK_ADDR}:{HOST_PORT} (hairpin)",
          f"ip netns exec container5 python3 -c 'connect to {UPLINK_ADDR}:{HOST_PORT}'",
          "hairpin mode on brid5 sends the translated frame back out of the port it came in by; the MASQUERADE "
          "for 10.201.0.5 -> 10.201.0.5 makes the reply come back through the host",
          _seen_through("container5", UPLINK_ADDR, GATEWAY_ADDR)),
    Check("publish", f"container4 reaches container5's server through the host's address {GATEWAY_ADDR}:{HOST_PORT}",
          f"ip netns exec container4 python3 -c 'connect to {GATEWAY_ADDR}:{HOST_PORT}'",
          "br_netfilter translates the destination at the bridge; the lesson's MASQUERADE (no ! -o br0) "
          "rewrites the bridged source too",
          _seen_through("container4", GATEWAY_ADDR, None)),
)

INTRO = (
    f"Chapter: publish container5's port {SERVER_PORT} on the host as port {HOST_PORT} (Docker's -p {PUBLISHED}).",
    "  Destination NAT in bridgenet's chain BRIDGENET-DNAT, jumped to from PREROUTING and OUTPUT for the",
    "  host's own addresses; the filter rule lets that flow through; hairpin lets the bridge send a frame",
    "  back out of the port it came in by.",
)
