"""Nothing lost: faults injected with real processes, real signals and a real PostgreSQL.

Each test checks, through the database and the development KMS's inquiry, that every message
the client sent (or, after a SIGKILL, every message the sidecar acknowledged as stored) is
present exactly once, in a batch the KMS verified.
"""

import signal
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e import (
    FLOW_TIMEOUT,
    Sidecar,
    SidecarLauncher,
    assert_gapless_sequences,
    assert_kms_has_every_batch,
    start_devkms,
    stored_messages,
    wait_all_acknowledged,
)
from tests.support import (
    AckingClient,
    DevKms,
    TemporaryPostgres,
    encode_frame,
    send_messages,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def kms_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a test's development KMS keeps its state across restarts."""
    directory = tmp_path / "kms"
    directory.mkdir()
    yield directory


def verify_everything(
    sidecar: Sidecar, kms: DevKms, expected: Counter[str], since: datetime
) -> None:
    """Every expected message once in the database, and an inquiry that verifies them all."""
    assert Counter(stored_messages(sidecar)) == expected
    assert_gapless_sequences(sidecar)
    assert_kms_has_every_batch(sidecar, kms)
    result = kms.inquire(sidecar.service, since, datetime.now(UTC) + timedelta(seconds=5))
    assert result["verified"], [b for b in result["batches"] if not b["verified"]][:3]
    assert Counter(row["message"] for row in result["rows"]) == expected
    [(batches,)] = sidecar.query("SELECT count(*) FROM batches")
    assert result["total"] == batches


def messages(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix} {i}".encode() for i in range(count)]


def expected_of(*groups: list[bytes]) -> Counter[str]:
    return Counter(m.decode() for group in groups for m in group)


def test_kms_outage_events_keep_flowing_and_the_backlog_is_reported_after_reconnect(
    kms_dir: Path, start_sidecar: SidecarLauncher
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    kms = start_devkms(kms_dir)
    sidecar = start_sidecar(kms.url, BATCH_SIZE=10)
    before, during, after = messages("before", 50), messages("during", 305), messages("after", 45)
    send_messages(sidecar.port, before)
    wait_all_acknowledged(sidecar, 50)
    [first] = [s["id"] for s in kms.sidecars(sidecar.service)]

    assert kms.stop() == 0
    send_messages(sidecar.port, during)
    wait_until(
        lambda: (
            sidecar.query('SELECT count(*) FROM batches WHERE "acknowledged" IS NULL')[0][0] == 31
        ),
        FLOW_TIMEOUT,
        "the outage's batches stored, unacknowledged",
    )
    status, health = sidecar.health_report()
    assert status == 200 and health["kms"] != "ready" and health["database"] == "reachable"

    kms = start_devkms(kms_dir, kms.port, kms.admin_port)
    try:
        send_messages(sidecar.port, after)
        wait_all_acknowledged(sidecar, 400)
        second = [s["id"] for s in kms.sidecars(sidecar.service) if s["id"] != first]
        assert len(second) == 1
        # the outage's batches were re-signed by, and reported under, the new registration
        reporters = {b["sidecarId"] for b in kms.get("/batches")}
        assert reporters == {first, second[0]}
        verify_everything(sidecar, kms, expected_of(before, during, after), since)
    finally:
        sidecar.process.stop()
        assert kms.stop() == 0


def test_sigkill_loses_nothing_stored_and_the_restart_batches_and_reports_it(
    kms_dir: Path, start_sidecar: SidecarLauncher
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    kms = start_devkms(kms_dir)
    sidecar = start_sidecar(kms.url, BATCH_SIZE=64, BATCH_TIME_INTERVAL=600000, CLIENT_ACKS="true")
    first, second = messages("first", 1000), messages("second", 300)
    client = AckingClient(sidecar.port)
    client.send(first)
    wait_until(lambda: client.acknowledged == 1000, FLOW_TIMEOUT, "1000 messages acknowledged")
    assert kms.stop() == 0  # what follows is stored, batched, but never reported
    client.send(second)
    wait_until(lambda: client.acknowledged == 1300, FLOW_TIMEOUT, "1300 messages acknowledged")
    client.close()

    sidecar.kill()
    [(unbatched,)] = sidecar.query('SELECT count(*) FROM events WHERE "batchId" IS NULL')
    [(unreported,)] = sidecar.query('SELECT count(*) FROM batches WHERE "acknowledged" IS NULL')
    assert unbatched == 1300 % 64 and unreported == 1300 // 64 - 1000 // 64

    kms = start_devkms(kms_dir, kms.port, kms.admin_port)
    try:
        restarted = start_sidecar.restart(sidecar)
        wait_all_acknowledged(restarted, 1300)
        # the recovered rows kept their registration's keyId and sequence
        keys = restarted.query(
            'SELECT DISTINCT "sidecarId"::text FROM events WHERE "message" LIKE %s', "second %"
        )
        assert len(keys) == 1
        verify_everything(restarted, kms, expected_of(first, second), since)
    finally:
        restarted.process.stop()
        assert kms.stop() == 0


def test_database_outage_holds_bounded_data_pushes_back_and_loses_nothing(
    tmp_path: Path, devkms: DevKms
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    postgres = TemporaryPostgres(tmp_path / "pg")
    launcher = SidecarLauncher(postgres.uri, tmp_path)
    try:
        sidecar = launcher(
            devkms.url, BATCH_SIZE=64, MAX_UNSTORED_BYTES=1 << 20, CONNECTION_UNSTORED_BYTES=1 << 20
        )
        early = messages("early", 100)
        send_messages(sidecar.port, early)
        wait_all_acknowledged(sidecar, 100)

        postgres.stop()
        wait_until(
            lambda: sidecar.health_report()[1]["database"] == "unreachable",
            FLOW_TIMEOUT,
            "/health to say the database is unreachable",
        )
        flood = [b"flood %06d " % i + b"x" * 180 for i in range(60_000)]  # ~12 MB
        sender = threading.Thread(target=send_messages, args=(sidecar.port, flood))
        sender.start()

        def held_back() -> bool:
            status, body = sidecar.health_report()
            return status == 200 and body["unstoredBytes"] > (1 << 19)

        wait_until(held_back, FLOW_TIMEOUT, "the sidecar to hold data while the database is away")
        sender.join(timeout=3)
        assert sender.is_alive(), "backpressure: the client cannot send 12 MB into 1 MB"
        assert sidecar.health_report()[1]["unstoredBytes"] <= (1 << 20) + 2 * 256 * 1024
        assert sidecar.process.alive()

        postgres.start()
        sender.join(timeout=FLOW_TIMEOUT)
        assert not sender.is_alive()
        wait_all_acknowledged(sidecar, 60_100, timeout=120)
        verify_everything(sidecar, devkms, expected_of(early, flood), since)
        assert sidecar.health_report()[1]["database"] == "reachable"
    finally:
        launcher.stop_all()
        postgres.remove()


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def metric(sidecar: Sidecar, name: str) -> float:
    with urllib.request.urlopen(sidecar.health + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_bad_client_input_affects_only_the_offending_connection(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    sidecar = start_sidecar(devkms.url, MAX_MESSAGE_SIZE=1024, MAX_CONNECTIONS=3, IDLE_TIMEOUT=2000)
    send_messages(sidecar.port, messages("good", 50))

    too_large = socket.create_connection(("127.0.0.1", sidecar.port))
    too_large.sendall((1025).to_bytes(4, "big") + b"x" * 100)
    assert read_until_closed(too_large) == b""  # closed by the sidecar, nothing written back

    mid_frame = socket.create_connection(("127.0.0.1", sidecar.port))
    mid_frame.sendall(encode_frame(b"whole") + (100).to_bytes(4, "big") + b"only part")
    mid_frame.close()

    zeros = socket.create_connection(("127.0.0.1", sidecar.port))
    zeros.sendall(encode_frame(b"") * 20_000 + encode_frame(b"\xff\xfe bad utf-8 \xc3"))
    zeros.close()
    wait_all_acknowledged(sidecar, 50 + 1 + 20_001)

    idle = [socket.create_connection(("127.0.0.1", sidecar.port)) for _ in range(3)]
    wait_until(lambda: sidecar.health_report()[1]["connections"] == 3, FLOW_TIMEOUT, "3 open")
    refused = socket.create_connection(("127.0.0.1", sidecar.port))
    assert read_until_closed(refused) == b""  # MAX_CONNECTIONS=3
    for connection in idle:
        assert read_until_closed(connection) == b""  # IDLE_TIMEOUT

    send_messages(sidecar.port, messages("still good", 50))
    wait_all_acknowledged(sidecar, 50 + 1 + 20_001 + 50)
    stored = Counter(stored_messages(sidecar))
    assert stored[""] == 20_000 and stored["\ufffd\ufffd bad utf-8 \ufffd"] == 1
    assert stored["whole"] == 1 and stored["good 49"] == 1 and stored["still good 49"] == 1
    assert metric(sidecar, 'sidecar_connections_rejected_total{reason="frame-too-large"}') == 1
    assert metric(sidecar, 'sidecar_connections_rejected_total{reason="too-many-connections"}') == 1
    assert metric(sidecar, 'sidecar_connections_rejected_total{reason="idle"}') == 3
    assert metric(sidecar, "sidecar_partial_frames_lost_total") == 1
    output = sidecar.process.output
    assert "frame declares 1025 bytes, above the limit of 1024 bytes" in output
    assert "closed mid-frame: 13 bytes of a partial frame lost" in output
    assert "MAX_CONNECTIONS=3 reached" in output
    assert sidecar.process.alive()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_takes_in_what_clients_sent_and_the_next_start_reports_the_rest(
    kms_dir: Path, start_sidecar: SidecarLauncher, stop_signal: int
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    kms = start_devkms(kms_dir)
    sidecar = start_sidecar(
        kms.url, BATCH_SIZE=64, BATCH_TIME_INTERVAL=600000, SHUTDOWN_TIMEOUT=1000
    )
    sent = messages("sent", 5000)
    client = socket.create_connection(("127.0.0.1", sidecar.port))
    wait_until(lambda: sidecar.health_report()[1]["connections"] == 1, FLOW_TIMEOUT, "accepted")
    client.sendall(b"".join(encode_frame(m) for m in sent))
    assert kms.stop() == 0  # nothing can be reported during this shutdown
    assert sidecar.process.stop(stop_signal) == 0
    client.close()
    [(events, unbatched)] = sidecar.query(
        'SELECT count(*), count(*) FILTER (WHERE "batchId" IS NULL) FROM events'
    )
    assert (events, unbatched) == (5000, 0)
    assert "unreported batches stay stored for the next start" in sidecar.process.output

    kms = start_devkms(kms_dir, kms.port, kms.admin_port)
    try:
        restarted = start_sidecar.restart(sidecar)
        wait_all_acknowledged(restarted, 5000)
        verify_everything(restarted, kms, expected_of(sent), since)
    finally:
        restarted.process.stop()
        assert kms.stop() == 0


def test_garbage_from_the_kms_is_logged_answered_and_survived(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=10)
    [registration] = devkms.sidecars(sidecar.service)
    status, answer = devkms.admin("POST", "/misbehave", {"mode": "garbage"}, timeout=60)
    assert status == 200 and answer["sent"] == 1

    def answered() -> dict[str, object] | None:
        [current] = [s for s in devkms.sidecars(sidecar.service) if s["id"] == registration["id"]]
        codes = {e["id"]: e["error"]["code"] for e in current["unsolicited"] if "error" in e}
        ids = current["garbageIds"]
        if ids and ids["unknownMethod"] in codes and ids["badInquiry"] in codes:
            return {"unknown": codes[ids["unknownMethod"]], "inquiry": codes[ids["badInquiry"]]}
        return None

    codes = wait_until(answered, FLOW_TIMEOUT, "the sidecar's answers to the garbage")
    assert codes == {"unknown": -32601, "inquiry": -32602}
    sent = messages("after garbage", 95)
    send_messages(sidecar.port, sent)
    wait_all_acknowledged(sidecar, 95)
    assert [s["id"] for s in devkms.sidecars(sidecar.service)] == [registration["id"]]  # same link
    output = sidecar.process.output
    assert "skipping malformed frame from KMS" in output
    assert "KMS answered an unknown request id" in output
    assert "skipped a 67108864 byte frame from KMS" in output
    assert "KMS called unknown method 'teleport'" in output
    verify_everything(sidecar, devkms, expected_of(sent), since)


def test_a_kms_that_stops_answering_times_out_and_is_reconnected(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=10, KMS__REQUEST_TIMEOUT=1000)
    assert devkms.admin("POST", "/misbehave", {"mode": "silent"})[0] == 200
    silent = messages("while silent", 50)
    send_messages(sidecar.port, silent)
    wait_until(
        lambda: "did not answer batch request" in sidecar.process.output,
        FLOW_TIMEOUT,
        "a batch request to time out",
    )
    wait_until(
        lambda: "did not answer register request" in sidecar.process.output,
        FLOW_TIMEOUT,
        "the re-registration to time out as well",
    )
    assert sidecar.query("SELECT count(*) FROM events")[0][0] == 50  # still storing

    assert devkms.admin("POST", "/misbehave", {"mode": "normal"})[0] == 200
    wait_all_acknowledged(sidecar, 50)
    assert sidecar.process.alive()
    verify_everything(sidecar, devkms, expected_of(silent), since)
