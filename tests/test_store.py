"""The Database against a real PostgreSQL: schema, group commit, exact messages, inquiries."""

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from sidecar.batching import Batcher
from sidecar.kms_protocol import Registration
from sidecar.signing import BatchSigner, RowSigner
from sidecar.store import Database, prepare
from tests.shared_files import load_vectors

VECTORS = load_vectors()
ORIGINAL_SCHEMA = """
CREATE TABLE sidecars ("sidecarId" uuid PRIMARY KEY, "serviceName" text NOT NULL,
    "version" text NOT NULL, "created" timestamptz NOT NULL);
CREATE TABLE batches ("batchId" uuid PRIMARY KEY,
    "sidecarId" uuid NOT NULL REFERENCES sidecars, "data" text NOT NULL,
    "signature" varchar(128), "created" timestamptz NOT NULL);
CREATE INDEX batches_sidecarid_index ON batches ("sidecarId");
CREATE TABLE events ("eventId" uuid PRIMARY KEY, "sidecarId" uuid NOT NULL REFERENCES sidecars,
    "batchId" uuid NULL REFERENCES batches, "sequence" integer NOT NULL, "message" text NOT NULL,
    "signature" varchar(128), "created" timestamptz NOT NULL,
    UNIQUE ("sidecarId", "sequence"));
INSERT INTO sidecars VALUES ('11111111-1111-4111-8111-111111111111', 'Old', '0.1.0', now());
"""


def registration(sidecar_id: str = VECTORS["sidecarId"]) -> Registration:
    return Registration(
        sidecar_id,
        RowSigner.from_hex(VECTORS["rowKey"]),
        BatchSigner.from_hex(VECTORS["batchKey"]),
        "challenge",
    )


def query(uri: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg2.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@pytest.fixture
def database(database_uri: str):
    db = Database(database_uri, "TestService", "1.2.3")
    db.connect()
    yield db
    db.close()


def test_migrations_adopt_a_database_the_original_created(database_uri: str) -> None:
    with psycopg2.connect(database_uri) as connection, connection.cursor() as cursor:
        cursor.execute(ORIGINAL_SCHEMA)
    db = Database(database_uri, "TestService", "1.2.3")
    applied = db.connect()
    assert applied == [
        "0001_original_schema.sql",
        "0002_exact_messages_and_acknowledgements.sql",
        "0003_lz4_compression.sql",
    ]
    assert db.connect() == []  # a second start applies nothing
    db.close()
    assert query(database_uri, 'SELECT "serviceName" FROM sidecars') == [("Old",)]
    columns = {
        row[0]
        for row in query(
            database_uri,
            "SELECT column_name FROM information_schema.columns WHERE table_name='events'",
        )
    }
    assert {"messageJson", "batchId", "sequence"} <= columns


def test_group_commit_links_events_of_a_batch_that_closed_later(
    database: Database, database_uri: str
) -> None:
    batcher = Batcher(batch_size=3)
    batcher.register(registration(), now_ms=1_000)
    batcher.add([b"one", b"two"], received_ms=2_000)
    first = batcher.take_write_group()
    assert [event.batch_id for event in first.events] == [None, None]
    database.write(prepare(first))
    [batch] = batcher.add([b"three", b"four"], received_ms=3_000)
    second = batcher.take_write_group()
    assert second.links and second.links[0][0] == batch.batch_id
    database.write(prepare(second))
    rows = query(
        database_uri,
        'SELECT "sequence", "message", "batchId"::text FROM events ORDER BY "sequence"',
    )
    assert rows == [
        (1, "one", batch.batch_id),
        (2, "two", batch.batch_id),
        (3, "three", batch.batch_id),
        (4, "four", None),
    ]
    [(data, signature)] = query(database_uri, 'SELECT "data", "signature" FROM batches')
    assert (data, signature) == (batch.data, batch.signature)
    assert [entry["row"]["message"] for entry in json.loads(data)] == ["one", "two", "three"]


def test_every_vector_message_is_stored_exactly(database: Database, database_uri: str) -> None:
    messages = [bytes.fromhex(case["frameHex"]) for case in VECTORS["rows"]]
    messages += [b"nul\x00inside", b"tab\tnewline\nreturn\rbackslash\\N"]
    batcher = Batcher(batch_size=100)
    batcher.register(registration(), now_ms=0)
    batcher.add(messages, received_ms=1_499_701_532_000)
    group = batcher.take_write_group()
    database.write(prepare(group))
    rows = query(
        database_uri, 'SELECT "message", "messageJson", "signature" FROM events ORDER BY "sequence"'
    )
    exact = [
        json.loads(message_json) if message_json else message for message, message_json, _ in rows
    ]
    assert exact == [event.message for event in group.events]
    assert rows[-2][0] == "nul\ufffdinside"  # readable copy for tools that read "message"
    assert [signature for *_, signature in rows] == [event.signature for event in group.events]
    [(created,)] = query(database_uri, 'SELECT DISTINCT "created" FROM events')
    assert created == datetime(2017, 7, 10, 15, 45, 32, tzinfo=UTC)  # the rows' timestamp


def test_inquiry_returns_this_services_batches_in_range_oldest_first(database_uri: str) -> None:
    ours = Database(database_uri, "Ledger", "1")
    theirs = Database(database_uri, "Other", "1")
    ours.connect()
    theirs.connect()
    batcher = Batcher(batch_size=1)
    batcher.register(registration("aaaaaaaa-0000-4000-8000-000000000001"), now_ms=0)
    base = 1_700_000_000_000
    batches = [batcher.add([b"m"], received_ms=base + offset)[0] for offset in (0, 1000, 2000)]
    ours.write(prepare(batcher.take_write_group()))
    other = Batcher(batch_size=1)
    other.register(registration("aaaaaaaa-0000-4000-8000-000000000002"), now_ms=0)
    other.add([b"x"], received_ms=base + 500)
    theirs.write(prepare(other.take_write_group()))
    start = datetime.fromtimestamp(base / 1000, UTC)
    found = ours.batches_between(start, start + timedelta(seconds=1))
    assert [b.batch_id for b in found] == [batches[0].batch_id, batches[1].batch_id]
    assert found[0].data == batches[0].data
    ours.close()
    theirs.close()
