"""Soak: a million messages while the KMS restarts every few seconds and the sidecar is killed.

    python benchmarks/soak.py                      # 1,000,000 messages (a few minutes)
    python benchmarks/soak.py --messages 100000    # shorter

Clients send in acknowledgement mode (CLIENT_ACKS) over several connections. The development
KMS is restarted every ``--kms-restart`` seconds; the sidecar is killed with SIGKILL and started
again twice, at a third and at two thirds of the messages. A client whose connection dies with
the sidecar reconnects and goes on with its next message (nothing is resent, so nothing can be
stored twice by the client's doing). At the end the script waits until every stored event is in
an acknowledged batch, runs an inquiry over the whole run through the KMS, and prints:

- sent: messages written to a socket;
- acknowledged: messages the sidecar said were durably stored;
- found exactly once / duplicated / missing: of every message sent, how often it is stored;
  missing ones must all be in flight at a SIGKILL (never acknowledged): "acknowledged but
  missing" must be 0;
- verified: whether the KMS verified every batch of the inquiry.

The exit code is 0 when nothing acknowledged is missing, nothing is duplicated and the inquiry
verified; 1 otherwise.
"""

import argparse
import contextlib
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from sidecar.framing import encode_frame  # noqa: E402
from tests.e2e import Sidecar, SidecarLauncher, start_devkms  # noqa: E402
from tests.support import DevKms, wait_until  # noqa: E402

CHUNK = 500  # messages per sendall
WINDOW = 5_000  # messages a client has in flight (sent, not yet acknowledged), per connection


class SoakClient(threading.Thread):
    """One service, at least once: sends in order, resends what a SIGKILL left unacknowledged."""

    def __init__(self, number: int, count: int, port: int) -> None:
        super().__init__(daemon=True)
        self.number = number
        self.count = count
        self.port = port
        self.acknowledged = 0  # messages 0 .. acknowledged-1 are durably stored
        self.transmitted = 0  # messages written to a socket, resends included
        self.resent = 0
        self._progress = threading.Condition()

    def message(self, index: int) -> bytes:
        return f"soak {self.number} {index:07d}".encode()

    def run(self) -> None:
        while self.acknowledged < self.count:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                time.sleep(0.1)  # the sidecar is restarting
                continue
            first = self.acknowledged
            alive = threading.Event()
            alive.set()
            reader = threading.Thread(target=self._read_acks, args=(sock, first, alive))
            reader.start()
            sent = first
            try:
                while sent < self.count and alive.is_set():
                    with self._progress:
                        if sent - self.acknowledged >= WINDOW:
                            self._progress.wait(0.5)
                            continue
                    end = min(sent + CHUNK, self.count)
                    sock.sendall(b"".join(encode_frame(self.message(i)) for i in range(sent, end)))
                    self.transmitted += end - sent
                    sent = end
                with self._progress:
                    while alive.is_set() and self.acknowledged < sent:
                        self._progress.wait(0.5)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # ends the reader's recv; close() would not
                sock.close()
                reader.join()
            self.resent += sent - self.acknowledged

    def _read_acks(self, sock: socket.socket, first: int, alive: threading.Event) -> None:
        buffer = bytearray()
        sock.settimeout(None)
        try:
            while data := sock.recv(65536):
                buffer += data
                while len(buffer) >= 4 and len(buffer) >= 4 + int.from_bytes(buffer[:4], "big"):
                    length = int.from_bytes(buffer[:4], "big")
                    count = int(buffer[4 : 4 + length])
                    del buffer[: 4 + length]
                    with self._progress:
                        self.acknowledged = first + count
                        self._progress.notify_all()
        except OSError:
            pass
        finally:
            with self._progress:
                alive.clear()
                self._progress.notify_all()


def stored_counts(uri: str) -> Counter[str]:
    with psycopg2.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute('SELECT "message" FROM events')
        counts = Counter(message for (message,) in cursor.fetchall())
    connection.close()
    return counts


def settled(sidecar: Sidecar) -> bool:
    [(unbatched,)] = sidecar.query('SELECT count(*) FROM events WHERE "batchId" IS NULL')
    [(unacknowledged,)] = sidecar.query('SELECT count(*) FROM batches WHERE "acknowledged" IS NULL')
    return unbatched == 0 and unacknowledged == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--kms-restart", type=float, default=4.0, help="seconds between restarts")
    parser.add_argument("--database-uri", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sidecar-soak-"))
    name = f"soak_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(args.database_uri)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    uri = args.database_uri.rsplit("/", 1)[0] + f"/{name}"
    print(
        f"soak: {args.messages:,} messages over {args.connections} connections; "
        f"database {name}; logs in {work}"
    )

    kms: DevKms = start_devkms(work)
    launcher = SidecarLauncher(uri, work)
    sidecar = launcher(kms.url, CLIENT_ACKS="true", LOG_LEVEL="INFO", BATCH_TIME_INTERVAL=1000)
    since = datetime.now(UTC) - timedelta(seconds=1)
    per_client = args.messages // args.connections
    clients = [SoakClient(n, per_client, sidecar.port) for n in range(args.connections)]
    total = per_client * args.connections
    started = time.monotonic()
    for client in clients:
        client.start()

    kills = 0
    kms_restarts = 0
    next_kms_restart = time.monotonic() + args.kms_restart
    try:
        while any(client.is_alive() for client in clients):
            acknowledged = sum(client.acknowledged for client in clients)
            if kills < 2 and acknowledged >= total * (kills + 1) // 3:
                sidecar.kill()
                kills += 1
                print(
                    f"  {time.monotonic() - started:6.1f} s: SIGKILL sidecar at "
                    f"{acknowledged:,} acknowledged"
                )
                sidecar = launcher.restart(sidecar)
            if time.monotonic() >= next_kms_restart:
                port, admin_port = kms.port, kms.admin_port
                kms.stop()
                kms = start_devkms(work, port, admin_port)
                kms_restarts += 1
                next_kms_restart = time.monotonic() + args.kms_restart
            time.sleep(0.2)
        sending_s = time.monotonic() - started
        print(f"  {sending_s:6.1f} s: all sent; waiting for every batch to be acknowledged")
        wait_until(
            lambda: settled(sidecar),
            600,
            "every stored event batched and acknowledged",
            interval=0.5,
        )
        counts = stored_counts(uri)
        result = kms.inquire(
            sidecar.service, since, datetime.now(UTC) + timedelta(seconds=5), timeout=600
        )
    finally:
        launcher.stop_all()
        kms.stop()
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()

    once = duplicated = missing = 0
    for client in clients:
        for index in range(client.count):
            found = counts.get(client.message(index).decode(), 0)
            once += found == 1
            duplicated += found > 1
            missing += found == 0
    stored = sum(counts.values())
    inquiry_rows = len(result["rows"])
    print(f"""
messages sent                {total:>10,}
  written to sockets         {sum(c.transmitted for c in clients):>10,} (resends included)
  resent after a SIGKILL     {sum(c.resent for c in clients):>10,} (unacknowledged at the kill)
acknowledged as stored       {sum(c.acknowledged for c in clients):>10,}
found exactly once           {once:>10,}
duplicated                   {duplicated:>10,} (a resent message whose first copy was stored)
missing                      {missing:>10,}
stored events, inquiry rows  {stored:>10,} {inquiry_rows:>10,}
batches verified by the KMS  {result["verified"]} ({result["total"]:,} batches)
sidecar kills, KMS restarts  {kills}, {kms_restarts}
time sending, in all         {sending_s:.1f} s, {time.monotonic() - started:.1f} s""")
    ok = missing == 0 and result["verified"] and inquiry_rows == stored
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
