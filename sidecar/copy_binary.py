"""Rows encoded in PostgreSQL's binary COPY format, for the two bulk inserts.

Binary COPY needs no escaping at all, which matters for batch data: JSON full of backslashes,
megabytes per batch with large messages. Pure functions, no connection needed.
"""

import json
import struct

from sidecar.batching import Batch, Event

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
NULL = struct.pack("!i", -1)
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z, where PostgreSQL timestamps start
_INT4 = struct.Struct("!ii")
_INT8 = struct.Struct("!iq")
_LENGTH = struct.Struct("!i")
_UUID_LENGTH = _LENGTH.pack(16)
_EVENT_FIELDS = struct.pack("!h", 8)
_BATCH_FIELDS = struct.pack("!h", 5)


def _uuid(text: str) -> bytes:
    return _UUID_LENGTH + bytes.fromhex(text.replace("-", ""))


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _LENGTH.pack(len(data)) + data


def _timestamptz(epoch_ms: int) -> bytes:
    return _INT8.pack(8, (epoch_ms - PG_EPOCH_MS) * 1000)


def events_copy(events: list[Event]) -> bytes:
    """COPY data for ``events (eventId, sidecarId, batchId, sequence, message, messageJson,
    signature, created)``.

    PostgreSQL text cannot hold U+0000: such a message is stored readable in ``message``
    (U+0000 shown as U+FFFD) and exactly, as a JSON string, in ``messageJson``.
    """
    parts = [HEADER]
    append = parts.append
    for event in events:
        message = event.message
        exact = NULL
        if "\x00" in message:
            exact = _text(json.dumps(message, ensure_ascii=False))
            message = message.replace("\x00", "\ufffd")
        append(_EVENT_FIELDS)
        append(_uuid(event.event_id))
        append(_uuid(event.sidecar_id))
        append(_uuid(event.batch_id) if event.batch_id else NULL)
        append(_INT4.pack(4, event.sequence))
        append(_text(message))
        append(exact)
        append(_text(event.signature))
        append(_timestamptz(event.created_ms))
    append(TRAILER)
    return b"".join(parts)


def batches_copy(batches: list[Batch]) -> bytes:
    """COPY data for ``batches (batchId, sidecarId, data, signature, created)``."""
    parts = [HEADER]
    for batch in batches:
        parts += [
            _BATCH_FIELDS,
            _uuid(batch.batch_id),
            _uuid(batch.sidecar_id),
            _text(batch.data),
            _text(batch.signature),
            _timestamptz(batch.created_ms),
        ]
    parts.append(TRAILER)
    return b"".join(parts)
