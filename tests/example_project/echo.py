"""A tiny TCP echo service: the networked code under test in this example project.

    python echo.py serve ADDRESS PORT
    python echo.py send ADDRESS PORT TEXT [--timeout SECONDS]
        sends one line, prints the line that comes back
    python echo.py transfer ADDRESS PORT NBYTES [--timeout SECONDS]
        sends NBYTES, reads them back, prints "NBYTES SECONDS" (time from connect to the last byte)

Exit codes: 0 done; 2 timed out; 3 any other network error.
"""

import argparse
import socket
import sys
import threading
import time


def serve(address: str, port: int) -> None:
    srv = socket.create_server((address, port), reuse_port=False)
    print(f"listening on {address}:{port}", flush=True)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def send(address: str, port: int, text: str, timeout: float) -> None:
    with socket.create_connection((address, port), timeout=timeout) as c:
        c.sendall(text.encode() + b"\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
    print(got.decode(), end="")


def transfer(address: str, port: int, nbytes: int, timeout: float) -> None:
    start = time.monotonic()
    with socket.create_connection((address, port), timeout=timeout) as c:
        received = 0

        def read() -> None:
            nonlocal received
            while received < nbytes:
                chunk = c.recv(65536)
                if not chunk:
                    return
                received += len(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        block = b"x" * 16384
        left = nbytes
        while left > 0:
            left -= c.send(block[: min(left, len(block))])
        reader.join(timeout)
    took = time.monotonic() - start
    if received < nbytes:
        raise TimeoutError(f"got {received} of {nbytes} bytes back in {took:.3f} s")
    print(f"{received} {took:.3f}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["serve", "send", "transfer"])
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("what", nargs="?")
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    try:
        if a.command == "serve":
            serve(a.address, a.port)
        elif a.command == "send":
            send(a.address, a.port, a.what or "", a.timeout)
        else:
            transfer(a.address, a.port, int(a.what), a.timeout)
    except TimeoutError as e:
        print(f"timed out: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{type(e).__name__}: {e.strerror or e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
