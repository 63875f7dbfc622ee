"""A replicated counter over UDP: a grow-only counter (G-counter CRDT), the distributed code under test.

    python counter.py serve ID ADDRESS PORT [PEER ...] [--interval SECONDS]
        one replica: keeps {node id: count}, adds 1 to its own entry on each "inc" request,
        sends its whole vector to every PEER (an address; same PORT) every --interval seconds
        (default 0.05) and merges what it receives by taking the maximum of each entry
    python counter.py inc ADDRESS PORT [--times N] [--timeout SECONDS]
        asks the replica at ADDRESS to count one, N times (default 1); prints its new total
    python counter.py state PORT ADDRESS [ADDRESS ...] [--timeout SECONDS]
        prints one JSON object: {address: {"id", "counts", "total", "rounds"} or null if it did not answer}
    python counter.py probe ADDRESS PORT [--count N] [--timeout SECONDS]
        sends N numbered pings (2 ms apart), waits --timeout for the last replies,
        prints "SENT ANSWERED MEDIAN_RTT" (seconds; - when none answered)

Requests are single JSON datagrams. An "inc" carries a request id and the replica counts each id
once, so a client may resend it when an answer is lost. Exit codes: 0 done; 2 timed out.
"""

import argparse
import json
import socket
import statistics
import sys
import time
import uuid


def serve(node: str, address: str, port: int, peers: list[str], interval: float) -> None:
    counts = {node: 0}
    seen: set[str] = set()  # ids of the inc requests counted already
    rounds = 0  # gossip rounds sent
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print(f"{node} listening on {address}:{port}, peers {' '.join(peers) or 'none'}", flush=True)
    next_gossip = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_gossip:
            vector = json.dumps({"op": "gossip", "counts": counts}).encode()
            for peer in peers:
                try:
                    sock.sendto(vector, (peer, port))
                except OSError:  # e.g. no route while a link is down: the next round tries again
                    pass
            rounds += 1
            next_gossip = now + interval
        sock.settimeout(max(0.001, next_gossip - time.monotonic()))
        try:
            data, sender = sock.recvfrom(65536)
        except TimeoutError:
            continue
        msg = json.loads(data)
        if msg["op"] == "gossip":
            for n, c in msg["counts"].items():
                counts[n] = max(counts.get(n, 0), c)
            continue
        if msg["op"] == "inc" and msg["rid"] not in seen:
            seen.add(msg["rid"])
            counts[node] += 1
        reply = {"op": msg["op"], "id": node, "counts": counts, "total": sum(counts.values()),
                 "rounds": rounds, "seq": msg.get("seq")}
        sock.sendto(json.dumps(reply).encode(), sender)


def ask(sock: socket.socket, address: str, port: int, request: dict, timeout: float) -> dict:
    """Send ``request`` until its answer comes (every 0.1 s, for ``timeout`` s); the answer."""
    deadline = time.monotonic() + timeout
    while True:
        sock.sendto(json.dumps(request).encode(), (address, port))
        sock.settimeout(min(0.1, max(0.001, deadline - time.monotonic())))
        try:
            while True:
                data, sender = sock.recvfrom(65536)
                if sender[0] == address:
                    return json.loads(data)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from {address}:{port} in {timeout:g} s") from None


def probe(address: str, port: int, count: int, timeout: float) -> tuple[int, int, float | None]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}

    def receive() -> None:
        seq = json.loads(sock.recv(65536))["seq"]
        rtts.setdefault(seq, time.monotonic() - sent[seq])

    sock.setblocking(False)
    for seq in range(count):
        sent[seq] = time.monotonic()
        sock.sendto(json.dumps({"op": "ping", "seq": seq}).encode(), (address, port))
        time.sleep(0.002)
        try:
            while True:
                receive()
        except BlockingIOError:
            pass
    deadline = time.monotonic() + timeout
    while len(rtts) < count and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            receive()
        except TimeoutError:
            break
    return count, len(rtts), statistics.median(rtts.values()) if rtts else None


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("id")
    s.add_argument("address")
    s.add_argument("port", type=int)
    s.add_argument("peers", nargs="*")
    s.add_argument("--interval", type=float, default=0.05)
    i = sub.add_parser("inc")
    i.add_argument("address")
    i.add_argument("port", type=int)
    i.add_argument("--times", type=int, default=1)
    i.add_argument("--timeout", type=float, default=2.0)
    st = sub.add_parser("state")
    st.add_argument("port", type=int)
    st.add_argument("addresses", nargs="+")
    st.add_argument("--timeout", type=float, default=0.5)
    pr = sub.add_parser("probe")
    pr.add_argument("address")
    pr.add_argument("port", type=int)
    pr.add_argument("--count", type=int, default=200)
    pr.add_argument("--timeout", type=float, default=0.5)
    a = p.parse_args()
    try:
        if a.command == "serve":
            serve(a.id, a.address, a.port, a.peers, a.interval)
        elif a.command == "inc":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(a.times):
                total = ask(sock, a.address, a.port, {"op": "inc", "rid": uuid.uuid4().hex}, a.timeout)["total"]
            print(total)
        elif a.command == "state":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out = {}
            for address in a.addresses:
                try:
                    r = ask(sock, address, a.port, {"op": "state"}, a.timeout)
                    out[address] = {k: r[k] for k in ("id", "counts", "total", "rounds")}
                except TimeoutError:
                    out[address] = None
            print(json.dumps(out))
        else:
            sent, answered, rtt = probe(a.address, a.port, a.count, a.timeout)
            print(sent, answered, "-" if rtt is None else f"{rtt:.6f}")
    except TimeoutError as e:
        print(f"timed out: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
