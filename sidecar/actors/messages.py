"""Messages between actors: small frozen dataclasses, named for what happened or is asked."""

import threading
from dataclasses import dataclass, field
from typing import Any

import pykka

from sidecar.batching import Batch, StoredEvent, WriteGroup
from sidecar.kms_protocol import Inquiry, Registration, StoredBatch
from sidecar.store import PreparedWrite


# Connection → BatchActor
@dataclass(frozen=True, slots=True)
class Received:
    """The whole messages of one socket read, received at ``received_ms``."""

    messages: list[bytes]
    size: int
    received_ms: int
    reply_to: pykka.ActorRef[Any]


# BatchActor → Connection
@dataclass(frozen=True, slots=True)
class Stored:
    """``count`` messages (``size`` bytes) from this connection are now durably stored."""

    count: int
    size: int


# KmsActor → BatchActor
@dataclass(frozen=True, slots=True)
class Registered:
    """A new registration with the KMS: sign new events and report batches with its keys."""

    registration: Registration
    at_ms: int


@dataclass(frozen=True, slots=True)
class BatchAcknowledged:
    """The KMS acknowledged this batch."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class CountEventsLastHour:
    """Ask: how many events were received in the last hour."""


# BatchActor → KmsActor
@dataclass(frozen=True, slots=True)
class ReportBatch:
    """Report a stored batch's id and signature to the KMS."""

    batch: Batch


# BatchActor → StoreActor, and back
@dataclass(frozen=True, slots=True)
class Write:
    """Commit this group in one transaction, then tell ``reply_to`` :class:`Written`."""

    prepared: PreparedWrite
    reply_to: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class Written:
    """The group sent in the last :class:`Write` is committed."""

    group: WriteGroup


# BatchActor → StoreActor, and back: what an earlier run left to do
@dataclass(frozen=True, slots=True)
class LoadUnbatched:
    """Read stored events that are in no batch, oldest first, after ``after``."""

    after: tuple[Any, ...] | None
    limit: int
    reply_to: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class UnbatchedLoaded:
    """The answer to :class:`LoadUnbatched`; fewer than ``limit`` events means the last page."""

    events: list[StoredEvent]
    complete: bool


@dataclass(frozen=True, slots=True)
class LoadUnacknowledged:
    """Read batches the KMS has not acknowledged, oldest first, except ``exclude``."""

    exclude: list[str]
    limit: int
    reply_to: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class UnacknowledgedLoaded:
    """The answer to :class:`LoadUnacknowledged`; ``complete`` when no more are stored."""

    batches: list[Batch]
    complete: bool


# KmsActor → StoreActor, and back
@dataclass(frozen=True, slots=True)
class FindBatches:
    """Look up the batches an inquiry asks for; answer ``reply_to`` with :class:`BatchesFound`."""

    inquiry: Inquiry
    reply_to: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class BatchesFound:
    """The answer to :class:`FindBatches`."""

    inquiry: Inquiry
    batches: list[StoredBatch]


# Lifecycle
@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic wake-up for time-driven work (batch interval, pings, timeouts, reconnects)."""


@dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask an actor for a small dict describing its state."""


@dataclass(frozen=True, slots=True)
class Drain:
    """Close the open batch, store everything and set ``done`` when nothing is left to do."""

    done: threading.Event = field(compare=False)
    wait_for_acknowledgements: bool = True


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """A supervised actor crashed."""

    role: str
    reason: str


@dataclass(frozen=True, slots=True)
class PauseReading:
    """Too much received data is not stored yet: stop reading from the socket."""


@dataclass(frozen=True, slots=True)
class ResumeReading:
    """Storage caught up: read from the socket again."""


@dataclass(frozen=True, slots=True)
class Allowance:
    """This connection's share of MAX_UNSTORED_BYTES, now that the number of connections changed."""

    unstored_bytes: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A connection ended (its share goes back to the others)."""

    connection: pykka.ActorRef[Any]


@dataclass(frozen=True, slots=True)
class ReadyToServe:
    """The pipeline can take events: start accepting connections."""


Status = dict[str, Any]
