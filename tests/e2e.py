"""Helpers for end-to-end tests: a sidecar process, its database, and what to check in them."""

import json
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.support import (
    DevKms,
    Process,
    free_port,
    http_json,
    send_messages,
    sidecar_command,
    wait_until,
)

START_TIMEOUT = 60
FLOW_TIMEOUT = 90


def start_devkms(log_dir: Path, port: int | None = None, admin_port: int | None = None) -> DevKms:
    """A development KMS that keeps its state in ``log_dir`` (so a restart remembers)."""
    return DevKms(log_dir, port, admin_port, state=log_dir / "devkms.sqlite")


@dataclass
class Sidecar:
    """A ``sidecar run`` process and the database it writes."""

    process: Process
    port: int
    health_port: int
    service: str
    database_uri: str
    env: dict[str, str]
    killed: bool = field(default=False)

    @property
    def health(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def health_report(self) -> tuple[int, Any]:
        return http_json("GET", self.health + "/health", timeout=2)

    def wait_serving(self) -> None:
        wait_until(lambda: self.health_report()[0] == 200, START_TIMEOUT, "the sidecar to serve")

    def kill(self) -> None:
        """SIGKILL: no chance to store or report anything more."""
        self.killed = True
        self.process.stop(signal.SIGKILL)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg2.connect(self.database_uri) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        connection.close()
        return rows


SidecarFactory = Callable[..., Sidecar]


class SidecarLauncher:
    """Starts sidecar processes as a user would; a restart keeps ports, service and database."""

    def __init__(self, database_uri: str, log_dir: Path) -> None:
        self.database_uri = database_uri
        self.log_dir = log_dir
        self.started: list[Sidecar] = []

    def __call__(self, kms_url: str, wait_ready: bool = True, **settings: Any) -> Sidecar:
        service = settings.pop("SERVICE", f"Ledger-{uuid.uuid4().hex[:8]}")
        env = {
            "SIDE_DATABASE_URI": self.database_uri,
            "SIDE_SERVICE": service,
            "SIDE_HOST": "127.0.0.1",
            "SIDE_PORT": str(free_port()),
            "SIDE_HEALTH_PORT": str(free_port()),
            "SIDE_KMS__URL": kms_url,
            "SIDE_KMS__RECONNECT_INTERVAL": "200",
            "SIDE_KMS__CONNECT_TIMEOUT": "2000",
            "SIDE_LOG_LEVEL": "DEBUG",
            "SIDE_BATCH_TIME_INTERVAL": "500",
            **{f"SIDE_{key}": str(value) for key, value in settings.items()},
        }
        return self._start(env, wait_ready)

    def restart(self, sidecar: Sidecar, wait_ready: bool = True) -> Sidecar:
        """Start a new process with the same settings (after a stop or a kill)."""
        return self._start(sidecar.env, wait_ready)

    def _start(self, env: dict[str, str], wait_ready: bool) -> Sidecar:
        port, health_port = int(env["SIDE_PORT"]), int(env["SIDE_HEALTH_PORT"])
        log_path = self.log_dir / f"sidecar-{port}-{len(self.started)}.log"
        process = Process(sidecar_command("run"), env, log_path)
        sidecar = Sidecar(process, port, health_port, env["SIDE_SERVICE"], self.database_uri, env)
        self.started.append(sidecar)
        if wait_ready:
            sidecar.wait_serving()
        return sidecar

    def stop_all(self) -> None:
        """Stop what still runs; every process not killed on purpose must exit 0."""
        for sidecar in self.started:
            code = sidecar.process.stop()
            if not sidecar.killed:
                assert code == 0, sidecar.process.output[-5000:]


def stored_messages(sidecar: Sidecar) -> list[str]:
    """Every stored message, exactly (U+0000 included)."""
    rows = sidecar.query('SELECT "message", "messageJson" FROM events')
    return [json.loads(message_json) if message_json else message for message, message_json in rows]


def wait_all_acknowledged(
    sidecar: Sidecar, expected_events: int, timeout: float = FLOW_TIMEOUT
) -> None:
    """Wait until ``expected_events`` are stored, each in a batch, every batch acknowledged."""

    def settled() -> bool:
        [(events, unbatched)] = sidecar.query(
            'SELECT count(*), count(*) FILTER (WHERE "batchId" IS NULL) FROM events'
        )
        [(unacknowledged,)] = sidecar.query(
            'SELECT count(*) FROM batches WHERE "acknowledged" IS NULL'
        )
        return events == expected_events and unbatched == 0 and unacknowledged == 0

    wait_until(settled, timeout, f"{expected_events} events stored, batched and acknowledged")


def assert_gapless_sequences(sidecar: Sidecar) -> dict[str, int]:
    """Each registration's sequences are 1..n; returns n per sidecar id."""
    rows = sidecar.query(
        'SELECT "sidecarId"::text, array_agg("sequence" ORDER BY "sequence") '
        'FROM events GROUP BY "sidecarId"'
    )
    for sidecar_id, sequences in rows:
        assert sequences == list(range(1, len(sequences) + 1)), sidecar_id
    return {sidecar_id: len(sequences) for sidecar_id, sequences in rows}


def assert_kms_has_every_batch(sidecar: Sidecar, devkms: DevKms) -> None:
    """Every stored batch was reported to (and recorded by) the KMS."""
    stored = {batch_id for (batch_id,) in sidecar.query('SELECT "batchId"::text FROM batches')}
    recorded = {batch["id"] for batch in devkms.get("/batches")}
    assert stored <= recorded


def send_concurrently(port: int, per_connection: list[list[bytes]]) -> None:
    errors: list[BaseException] = []

    def send(messages: list[bytes]) -> None:
        try:
            send_messages(port, messages)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(messages,)) for messages in per_connection]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
