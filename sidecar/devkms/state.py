"""What the development KMS remembers: sidecar registrations and reported batches.

Kept in memory; with a SQLite file, every change is also written through so that a restarted
devkms still knows every key and batch. Used from the asyncio loop's thread only.
"""

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sidecar.rows import format_timestamp

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    sidecar_id   TEXT PRIMARY KEY,
    service_name TEXT NOT NULL,
    row_key      TEXT NOT NULL,
    batch_key    TEXT NOT NULL,
    registered   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id   TEXT NOT NULL UNIQUE,
    sidecar_id TEXT NOT NULL,
    signature  TEXT NOT NULL,
    received   TEXT NOT NULL
);
"""


def now_iso() -> str:
    """The current UTC time as the project writes it (``2017-07-10T15:45:32.123Z``)."""
    return format_timestamp(time.time_ns() // 1_000_000)


@dataclass(frozen=True, slots=True)
class SidecarRegistration:
    """One registered sidecar id and the keys the KMS gave it."""

    sidecar_id: str
    service_name: str
    row_key: bytes
    batch_key: bytes  # TweetNaCl form: 32-byte seed + 32-byte public key
    registered: str

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key of the batch key."""
        return self.batch_key[32:]


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """A batch id as a sidecar reported it."""

    batch_id: str
    sidecar_id: str
    signature: str
    received: str


class KmsState:
    """Registrations and batches, in memory and (optionally) in a SQLite file."""

    def __init__(self, path: Path | None = None) -> None:
        self._registrations: dict[str, SidecarRegistration] = {}
        self._batches: dict[str, RecordedBatch] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._load(self._db)

    def _load(self, db: sqlite3.Connection) -> None:
        rows = db.execute(
            "SELECT sidecar_id, service_name, row_key, batch_key, registered"
            " FROM registrations ORDER BY rowid"
        )
        for sidecar_id, service, row_key, batch_key, registered in rows:
            self._registrations[sidecar_id] = SidecarRegistration(
                sidecar_id, service, bytes.fromhex(row_key), bytes.fromhex(batch_key), registered
            )
        rows = db.execute(
            "SELECT batch_id, sidecar_id, signature, received FROM batches ORDER BY seq"
        )
        for batch_id, sidecar_id, signature, received in rows:
            self._batches[batch_id] = RecordedBatch(batch_id, sidecar_id, signature, received)

    def close(self) -> None:
        """Close the SQLite file, if any."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def is_registered(self, sidecar_id: str) -> bool:
        """Whether ``sidecar_id`` was ever registered here."""
        return sidecar_id in self._registrations

    def add_registration(self, registration: SidecarRegistration) -> None:
        """Remember a new registration; raises KeyError if the id is taken."""
        if registration.sidecar_id in self._registrations:
            raise KeyError(registration.sidecar_id)
        if self._db is not None:
            with self._db:
                self._db.execute(
                    "INSERT INTO registrations VALUES (?, ?, ?, ?, ?)",
                    (
                        registration.sidecar_id,
                        registration.service_name,
                        registration.row_key.hex(),
                        registration.batch_key.hex(),
                        registration.registered,
                    ),
                )
        self._registrations[registration.sidecar_id] = registration

    def registration(self, sidecar_id: str) -> SidecarRegistration | None:
        """The registration of ``sidecar_id``, if there is one."""
        return self._registrations.get(sidecar_id)

    def registrations(self) -> Iterator[SidecarRegistration]:
        """Every registration, oldest first."""
        return iter(list(self._registrations.values()))

    def record_batch(self, batch: RecordedBatch) -> bool:
        """Record a reported batch; False if its id is known already (the first report wins)."""
        if batch.batch_id in self._batches:
            return False
        if self._db is not None:
            with self._db:
                self._db.execute(
                    "INSERT INTO batches (batch_id, sidecar_id, signature, received)"
                    " VALUES (?, ?, ?, ?)",
                    (batch.batch_id, batch.sidecar_id, batch.signature, batch.received),
                )
        self._batches[batch.batch_id] = batch
        return True

    def batch(self, batch_id: str) -> RecordedBatch | None:
        """The recorded batch ``batch_id``, if any."""
        return self._batches.get(batch_id)

    def batches(self) -> Iterator[RecordedBatch]:
        """Every recorded batch, in the order recorded."""
        return iter(list(self._batches.values()))
