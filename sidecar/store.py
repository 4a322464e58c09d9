"""All SQL of the sidecar: one PostgreSQL connection, one transaction per write group."""

import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from sidecar import migrations
from sidecar.batching import Batch, StoredEvent, WriteGroup
from sidecar.copy_binary import batches_copy, events_copy
from sidecar.kms_protocol import StoredBatch
from sidecar.rows import epoch_ms, format_timestamp

_COPY_BATCHES = (
    'COPY batches ("batchId", "sidecarId", "data", "signature", "created") '
    "FROM STDIN WITH (FORMAT binary)"
)
_COPY_EVENTS = (
    'COPY events ("eventId", "sidecarId", "batchId", "sequence", "message", "messageJson", '
    '"signature", "created") FROM STDIN WITH (FORMAT binary)'
)

COPY_CHUNK = 1 << 20  # bytes handed to libpq per call

# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
UNAVAILABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A write group with its COPY data already encoded, ready to stream to the server.

    Encoding is CPU work that needs no connection; :func:`prepare` does it in the caller's
    thread, so that it overlaps the server's work on the previous group instead of adding to it.
    """

    group: WriteGroup
    batches_copy: bytes
    events_copy: bytes


def prepare(group: WriteGroup) -> PreparedWrite:
    """Encode a write group's rows for COPY."""
    batches = batches_copy(group.batches) if group.batches else b""
    events = events_copy(group.events) if group.events else b""
    return PreparedWrite(group, batches, events)


class Database:
    """The sidecar's PostgreSQL database. Not thread-safe: one owner (the StoreActor)."""

    def __init__(self, uri: str, service: str, version: str) -> None:
        self._uri = uri
        self._service = service
        self._version = version
        self._connection: Any = None

    def connect(self) -> list[str]:
        """Open the connection and bring the schema up to date; return migrations applied."""
        self.close()
        connection = psycopg2.connect(self._uri, connect_timeout=10, application_name="sidecar")
        connection.autocommit = False
        self._connection = connection
        return migrations.migrate(connection)

    def close(self) -> None:
        """Close the connection, if open."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still have died unnoticed)."""
        return self._connection is not None and not self._connection.closed

    def ping(self) -> None:
        """A round trip to the server; raises one of ``UNAVAILABLE`` when it is away."""
        with self._connection as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def write(self, prepared: PreparedWrite) -> None:
        """Commit a write group atomically: registrations, batches, events, links, acks."""
        group = prepared.group
        with self._connection as connection, connection.cursor() as cursor:
            if group.sidecars:
                psycopg2.extras.execute_values(
                    cursor,
                    'INSERT INTO sidecars ("sidecarId", "serviceName", "version", "created") '
                    "VALUES %s",
                    [
                        (s.sidecar_id, self._service, self._version, s.created)
                        for s in group.sidecars
                    ],
                )
            if prepared.batches_copy:
                cursor.copy_expert(_COPY_BATCHES, io.BytesIO(prepared.batches_copy), COPY_CHUNK)
            if prepared.events_copy:
                cursor.copy_expert(_COPY_EVENTS, io.BytesIO(prepared.events_copy), COPY_CHUNK)
            for batch_id, event_ids in group.links:
                cursor.execute(
                    'UPDATE events SET "batchId" = %s WHERE "eventId" = ANY(%s::uuid[])',
                    (batch_id, event_ids),
                )
            for batch in group.resigned:
                cursor.execute(
                    'UPDATE batches SET "sidecarId" = %s, "signature" = %s WHERE "batchId" = %s',
                    (batch.sidecar_id, batch.signature, batch.batch_id),
                )
            if group.acknowledged:
                cursor.execute(
                    'UPDATE batches SET "acknowledged" = now() '
                    'WHERE "batchId" = ANY(%s::uuid[]) AND "acknowledged" IS NULL',
                    (group.acknowledged,),
                )

    def batches_between(self, start: datetime, end: datetime) -> list[StoredBatch]:
        """This service's batches (any registration) created in ``[start, end]``, oldest first."""
        with self._connection as connection, connection.cursor() as cursor:
            cursor.execute(
                'SELECT b."batchId"::text, b."data" FROM batches b '
                'JOIN sidecars s ON s."sidecarId" = b."sidecarId" '
                'WHERE s."serviceName" = %s AND b."created" BETWEEN %s AND %s '
                'ORDER BY b."created", b."batchId"',
                (self._service, start, end),
            )
            return [StoredBatch(batch_id, data) for batch_id, data in cursor.fetchall()]

    def group_committed(self, group: WriteGroup) -> bool:
        """Whether ``group`` is already in the database (its commit's answer may have been lost).

        Only inserted rows tell; a group of updates alone is safe to apply twice.
        """
        if group.events:
            table, column, key = "events", "eventId", group.events[0].event_id
        elif group.batches:
            table, column, key = "batches", "batchId", group.batches[0].batch_id
        elif group.sidecars:
            table, column, key = "sidecars", "sidecarId", group.sidecars[0].sidecar_id
        else:
            return False
        with self._connection as connection, connection.cursor() as cursor:
            cursor.execute(f'SELECT 1 FROM {table} WHERE "{column}" = %s', (key,))
            return cursor.fetchone() is not None

    def unbatched_events(self, after: tuple[Any, ...] | None, limit: int) -> list[StoredEvent]:
        """This service's stored events that are in no batch, oldest first, after ``after``.

        ``after`` is the ``order_key`` of the last event of the previous page.
        """
        where = ""
        params: list[Any] = [self._service]
        if after is not None:
            where = 'AND (e."created", e."sidecarId", e."sequence") > (%s, %s, %s)'
            params += list(after)
        with self._connection as connection, connection.cursor() as cursor:
            cursor.execute(
                'SELECT e."eventId"::text, e."sidecarId"::text, e."sequence", e."message", '
                'e."messageJson", e."signature", e."created" FROM events e '
                'JOIN sidecars s ON s."sidecarId" = e."sidecarId" '
                f'WHERE e."batchId" IS NULL AND s."serviceName" = %s {where} '
                'ORDER BY e."created", e."sidecarId", e."sequence" LIMIT %s',
                (*params, limit),
            )
            return [
                StoredEvent(
                    event_id,
                    sidecar_id,
                    sequence,
                    json.loads(message_json) if message_json is not None else message,
                    signature,
                    format_timestamp(epoch_ms(created)),
                    (created, sidecar_id, sequence),
                )
                for event_id, sidecar_id, sequence, message, message_json, signature, created in (
                    cursor.fetchall()
                )
            ]

    def unacknowledged_batches(self, exclude: list[str], limit: int) -> list[Batch]:
        """This service's batches the KMS has not acknowledged, oldest first, minus ``exclude``."""
        with self._connection as connection, connection.cursor() as cursor:
            cursor.execute(
                'SELECT b."batchId"::text, b."sidecarId"::text, b."data", b."signature", '
                'b."created" FROM batches b JOIN sidecars s ON s."sidecarId" = b."sidecarId" '
                'WHERE b."acknowledged" IS NULL AND s."serviceName" = %s '
                'AND NOT (b."batchId" = ANY(%s::uuid[])) '
                'ORDER BY b."created", b."batchId" LIMIT %s',
                (self._service, exclude, limit),
            )
            batches = []
            for batch_id, sidecar_id, data, signature, created in cursor.fetchall():
                created_ms = epoch_ms(created)
                batches.append(
                    Batch(
                        batch_id,
                        sidecar_id,
                        data,
                        signature or "",
                        created_ms,
                        created_ms,
                    )
                )
            return batches
