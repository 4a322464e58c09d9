"""An example service client: frames messages and writes them to the sidecar.

python examples/client.py --count 1000 --connections 4
python examples/client.py --count 1000 --acks    # sidecar started with SIDE_CLIENT_ACKS=true
"""

import argparse
import json
import socket
import struct
import sys
import threading
import time

ACK_TIMEOUT_S = 60


def frame(message: bytes) -> bytes:
    """A 4-byte big-endian length, then the message."""
    return struct.pack(">I", len(message)) + message


def read_frame(sock: socket.socket) -> bytes | None:
    """One frame from the sidecar, or None when the connection ends."""
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    return sock.recv(length, socket.MSG_WAITALL)


def send(host: str, port: int, connection: int, count: int, acks: bool) -> None:
    """Write ``count`` JSON log messages on one connection; with ``acks``, wait until stored."""
    with socket.create_connection((host, port)) as sock:
        for sequence in range(count):
            message = {
                "connection": connection,
                "sequence": sequence,
                "at": time.time(),
                "text": "transfer prepared",
            }
            sock.sendall(frame(json.dumps(message).encode()))
        if acks:
            sock.settimeout(ACK_TIMEOUT_S)
            stored = 0
            while stored < count:
                body = read_frame(sock)
                if body is None:
                    raise OSError(f"connection ended with {stored} of {count} stored")
                stored = int(body)  # the cumulative count of this connection's stored messages
            print(f"connection {connection}: all {stored} messages stored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=5678)
    parser.add_argument("--count", type=int, default=100, help="messages per connection")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--acks", action="store_true", help="wait for the stored counts")
    args = parser.parse_args()
    failures: list[str] = []

    def connection(number: int) -> None:
        try:
            send(args.host, args.port, number, args.count, args.acks)
        except OSError as exc:
            failures.append(f"connection {number}: {exc}")

    threads = [threading.Thread(target=connection, args=(c,)) for c in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit("\n".join(failures))
    print(f"sent {args.count * args.connections} messages")


if __name__ == "__main__":
    main()
