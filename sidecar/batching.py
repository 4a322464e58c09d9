"""Events and batches, sans I/O: sequence, sign, group and hand over for storage.

The BatchActor owns one :class:`Batcher`; everything here is deterministic given the
registration, the messages and their receipt times, so the original's vectors can be
reproduced through it exactly.
"""

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sidecar.ids import uuid4_string, uuid4_strings
from sidecar.kms_protocol import Registration
from sidecar.rows import batch_data, batch_entry, decode_message, format_timestamp, signable_row


class Event(NamedTuple):
    """A signed event. ``batch_id`` is None while its batch is open and unstored."""

    event_id: str
    sidecar_id: str
    batch_id: str | None
    sequence: int
    message: str
    signature: str
    created_ms: int  # receipt time
    entry: str  # this event's element of the batch data: {"row": ..., "signature": ...}


class StoredEvent(NamedTuple):
    """An event read back from the database, to be batched after a restart."""

    event_id: str
    sidecar_id: str
    sequence: int
    message: str
    signature: str
    created: str
    order_key: tuple[Any, ...]  # where the next page of stored events starts


class Batch(NamedTuple):
    """A closed, signed batch."""

    batch_id: str
    sidecar_id: str
    data: str
    signature: str
    created_ms: int
    first_received_ms: int  # receipt of its first event, for latency metrics


class SidecarRecord(NamedTuple):
    """A registration, as the ``sidecars`` table records it."""

    sidecar_id: str
    created: str


@dataclass(slots=True)
class WriteGroup:
    """Everything to commit in one transaction, in foreign-key order."""

    sidecars: list[SidecarRecord] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    links: list[tuple[str, list[str]]] = field(default_factory=list)
    """(batch id, ids of events stored earlier without it) for batches closed in this group."""
    resigned: list[Batch] = field(default_factory=list)
    """Stored batches re-signed by a newer registration, to report under its id."""
    acknowledged: list[str] = field(default_factory=list)
    """Ids of batches the KMS acknowledged."""

    def __bool__(self) -> bool:
        return bool(
            self.sidecars
            or self.batches
            or self.events
            or self.links
            or self.resigned
            or self.acknowledged
        )


class NotRegistered(RuntimeError):
    """Events cannot be signed before the first registration with the KMS."""


class Batcher:
    """Turns messages into signed events and closes signed batches of ``batch_size`` events."""

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._registration: Registration | None = None
        self._sequence = 0
        self._open_id = uuid4_string()
        self._open_entries: list[str] = []
        self._open_first_ms = 0
        self._open_unlinked: list[str] = []  # open-batch events already handed out without batch id
        self._group = WriteGroup()

    @property
    def registration(self) -> Registration | None:
        """The registration whose keys sign new events, if any yet."""
        return self._registration

    @property
    def open_count(self) -> int:
        """Events waiting in the open batch."""
        return len(self._open_entries)

    @property
    def pending_events(self) -> int:
        """Events not yet handed out for storage."""
        return len(self._group.events)

    def register(self, registration: Registration, now_ms: int) -> None:
        """Sign new events with a new registration's key, its sequence starting at 1."""
        self._registration = registration
        self._sequence = 0
        self._group.sidecars.append(
            SidecarRecord(registration.sidecar_id, format_timestamp(now_ms))
        )

    def add(self, raw_messages: list[bytes], received_ms: int) -> list[Batch]:
        """Turn one read's messages into events; return the batches that filled up."""
        registration = self._registration
        if registration is None:
            raise NotRegistered("no KMS registration yet")
        sidecar_id = registration.sidecar_id
        sign = registration.row_signer.sign
        timestamp = format_timestamp(received_ms)
        events = self._group.events
        closed: list[Batch] = []
        sequence = self._sequence
        event_ids = uuid4_strings(len(raw_messages))
        for raw, event_id in zip(raw_messages, event_ids, strict=True):
            message = decode_message(raw)
            sequence += 1
            row = signable_row(sidecar_id, sequence, message, timestamp)
            signature = sign(row.encode("utf-8"))
            entry = batch_entry(row, signature)
            events.append(
                Event(
                    event_id,
                    sidecar_id,
                    self._open_id,
                    sequence,
                    message,
                    signature,
                    received_ms,
                    entry,
                )
            )
            batch = self._append(entry, received_ms)
            if batch is not None:
                closed.append(batch)
        self._sequence = sequence
        return closed

    def recover(self, events: list[StoredEvent], now_ms: int) -> list[Batch]:
        """Batch events stored by an earlier run that are in no batch yet, in the given order.

        Their rows keep their original keyId, sequence, timestamp and signature; the group
        that closes their batch links them to it.
        """
        if self._registration is None:
            raise NotRegistered("no KMS registration yet")
        closed: list[Batch] = []
        for event in events:
            row = signable_row(event.sidecar_id, event.sequence, event.message, event.created)
            self._open_unlinked.append(event.event_id)
            batch = self._append(batch_entry(row, event.signature), now_ms)
            if batch is not None:
                closed.append(batch)
        return closed

    def _append(self, entry: str, received_ms: int) -> Batch | None:
        """Add an entry to the open batch; return the batch if that filled it."""
        if not self._open_entries:
            self._open_first_ms = received_ms
        self._open_entries.append(entry)
        if len(self._open_entries) >= self._batch_size:
            return self._close(received_ms)
        return None

    def close(self, now_ms: int) -> Batch | None:
        """Close the open batch early (time interval, shutdown); None when it is empty."""
        if not self._open_entries:
            return None
        return self._close(now_ms)

    def _close(self, now_ms: int) -> Batch:
        registration = self._registration
        assert registration is not None
        data = batch_data(self._open_entries)
        batch = Batch(
            self._open_id,
            registration.sidecar_id,
            data,
            registration.batch_signer.sign(data.encode("utf-8")),
            now_ms,
            self._open_first_ms,
        )
        self._group.batches.append(batch)
        if self._open_unlinked:
            self._group.links.append((batch.batch_id, self._open_unlinked))
        self._open_id = uuid4_string()
        self._open_entries = []
        self._open_unlinked = []
        return batch

    def resign(self, batches: list[Batch]) -> list[Batch]:
        """Sign stored, unacknowledged batches with the current registration's key."""
        registration = self._registration
        if registration is None:
            raise NotRegistered("no KMS registration yet")
        sign = registration.batch_signer.sign
        resigned = [
            batch._replace(
                sidecar_id=registration.sidecar_id, signature=sign(batch.data.encode("utf-8"))
            )
            for batch in batches
        ]
        self._group.resigned.extend(resigned)
        return resigned

    def acknowledge(self, batch_id: str) -> None:
        """Record that the KMS acknowledged a batch."""
        self._group.acknowledged.append(batch_id)

    def take_write_group(self) -> WriteGroup:
        """Hand out everything made since the last call, for one transaction.

        Events of the still-open batch go out without a batch id (its row does not exist
        yet); the group that closes that batch links them.
        """
        group = self._group
        events = group.events
        open_count = min(len(self._open_entries) - len(self._open_unlinked), len(events))
        for index in range(len(events) - open_count, len(events)):
            event = events[index]
            events[index] = event._replace(batch_id=None)
            self._open_unlinked.append(event.event_id)
        self._group = WriteGroup()
        return group
