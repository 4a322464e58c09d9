"""End to end, with real processes: PostgreSQL, ``sidecar devkms`` and ``sidecar run``.

A client writes framed messages over real TCP connections; the tests then check through the
database and through the development KMS that every message is stored exactly once, in a batch
the KMS acknowledged and verified.
"""

import signal
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e import (
    FLOW_TIMEOUT,
    START_TIMEOUT,
    SidecarLauncher,
    assert_gapless_sequences,
    assert_kms_has_every_batch,
    send_concurrently,
    start_devkms,
    stored_messages,
    wait_all_acknowledged,
)
from tests.shared_files import large_message, load_vectors
from tests.support import DevKms, free_port, send_messages, wait_until

pytestmark = pytest.mark.e2e


def test_every_message_is_stored_once_in_an_acknowledged_verified_batch(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=64)
    vectors = [bytes.fromhex(case["frameHex"]) for case in load_vectors()["rows"]]
    special = [*vectors, b"nul \x00 inside", large_message()]
    per_connection = [[f"conn {c} message {i}".encode() for i in range(750)] for c in range(4)]
    per_connection[0][100:100] = special
    send_concurrently(sidecar.port, per_connection)
    total = sum(map(len, per_connection))

    wait_all_acknowledged(sidecar, total)
    expected = Counter(
        m.decode("utf-8", "replace") for messages in per_connection for m in messages
    )
    assert Counter(stored_messages(sidecar)) == expected
    assert_gapless_sequences(sidecar)
    assert_kms_has_every_batch(sidecar, devkms)
    # frames of one connection keep their order
    rows = sidecar.query(
        'SELECT "message" FROM events WHERE "message" LIKE %s ORDER BY "sequence"',
        "conn 2 message %",
    )
    assert [message for (message,) in rows] == [f"conn 2 message {i}" for i in range(750)]

    result = devkms.inquire(sidecar.service, started, datetime.now(UTC) + timedelta(seconds=1))
    [(batch_count,)] = sidecar.query("SELECT count(*) FROM batches")
    assert result["total"] == batch_count
    assert result["verified"], [b for b in result["batches"] if not b["verified"]][:3]
    assert Counter(row["message"] for row in result["rows"]) == expected


def test_a_partial_batch_closes_after_the_batch_time_interval(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=5, BATCH_TIME_INTERVAL=1500)
    send_messages(sidecar.port, [b"m%d" % i for i in range(7)])
    wait_all_acknowledged(sidecar, 7)
    rows = sidecar.query(
        'SELECT b."created", count(e.*) FROM batches b '
        'JOIN events e ON e."batchId" = b."batchId" GROUP BY b."batchId" '
        'ORDER BY b."created"'
    )
    assert [count for _, count in rows] == [5, 2]
    assert rows[1][0] - rows[0][0] >= timedelta(milliseconds=1500)


def test_kms_health_check_gets_the_specified_answer(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    sidecar = start_sidecar(devkms.url)
    send_messages(sidecar.port, [b"a", b"b", b"c"])
    wait_until(
        lambda: sidecar.query("SELECT count(*) FROM events")[0][0] == 3,
        FLOW_TIMEOUT,
        "3 events stored",
    )
    [registered] = devkms.sidecars(sidecar.service)
    status, body = devkms.admin("POST", f"/sidecars/{registered['id']}/healthcheck")
    assert status == 200, body
    result = body["result"]
    assert result["id"] == registered["id"]
    assert result["eventCountLastHour"] == 3
    assert isinstance(result["uptime"], int) and result["uptime"] >= 0
    assert result["version"]
    assert abs(datetime.fromisoformat(result["current"]) - datetime.now(UTC)) < timedelta(minutes=1)
    status, body = sidecar.health_report()
    assert status == 200 and body["status"] == "OK"
    with urllib.request.urlopen(sidecar.health + "/metrics", timeout=5) as response:
        exposition = response.read().decode()
    assert "sidecar_events_received_total 3.0" in exposition
    assert "sidecar_commit_latency_seconds_count" in exposition


def test_a_kms_drop_is_reconnected_under_a_new_sidecar_id_and_events_keep_flowing(
    devkms: DevKms, start_sidecar: SidecarLauncher
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=10)
    send_messages(sidecar.port, [b"before %d" % i for i in range(95)])
    wait_until(
        lambda: sidecar.query("SELECT count(*) FROM events")[0][0] == 95,
        FLOW_TIMEOUT,
        "the first events stored",
    )
    status, body = devkms.admin("POST", "/connections/close")
    assert status == 200 and body["closed"] == 1
    wait_until(
        lambda: (
            len([s for s in devkms.sidecars(sidecar.service) if s["ready"]]) == 1
            and len(devkms.sidecars(sidecar.service)) == 2
        ),
        FLOW_TIMEOUT,
        "a second registration",
    )
    send_messages(sidecar.port, [b"after %d" % i for i in range(105)])
    wait_all_acknowledged(sidecar, 200)

    counts = assert_gapless_sequences(sidecar)
    assert len(counts) == 2 and sum(counts.values()) == 200
    assert Counter(stored_messages(sidecar)) == Counter(
        [f"before {i}" for i in range(95)] + [f"after {i}" for i in range(105)]
    )
    assert_kms_has_every_batch(sidecar, devkms)
    result = devkms.inquire(sidecar.service, started, datetime.now(UTC) + timedelta(seconds=1))
    assert result["verified"] and len(result["rows"]) == 200


def test_a_kms_that_is_down_at_start_is_waited_for(
    tmp_path: Path, start_sidecar: SidecarLauncher
) -> None:
    port, admin_port = free_port(), free_port()
    sidecar = start_sidecar(f"ws://127.0.0.1:{port}/sidecar", wait_ready=False)
    wait_until(
        lambda: "cannot connect to KMS" in sidecar.process.output,
        START_TIMEOUT,
        "a failed connection attempt",
    )
    assert sidecar.health_report()[0] == 503
    kms = start_devkms(tmp_path, port, admin_port)
    try:
        wait_until(lambda: sidecar.health_report()[0] == 200, START_TIMEOUT, "the sidecar to serve")
        send_messages(sidecar.port, [b"late %d" % i for i in range(70)])
        wait_all_acknowledged(sidecar, 70)
    finally:
        sidecar.process.stop()
        assert kms.stop() == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stores_reports_and_exits_zero(
    devkms: DevKms, start_sidecar: SidecarLauncher, stop_signal: int
) -> None:
    sidecar = start_sidecar(devkms.url, BATCH_SIZE=64, BATCH_TIME_INTERVAL=600000)
    send_messages(sidecar.port, [b"pending %d" % i for i in range(10)])
    wait_until(
        lambda: sidecar.query("SELECT count(*) FROM events")[0][0] == 10,
        FLOW_TIMEOUT,
        "10 events stored",
    )
    assert sidecar.process.stop(stop_signal) == 0
    [(unbatched,)] = sidecar.query('SELECT count(*) FROM events WHERE "batchId" IS NULL')
    [(unacknowledged,)] = sidecar.query('SELECT count(*) FROM batches WHERE "acknowledged" IS NULL')
    assert (unbatched, unacknowledged) == (0, 0)
    assert "sidecar stopped" in sidecar.process.output
    assert len(devkms.get("/batches")) == 1
