"""StoreActor: owns the PostgreSQL connection; commits write groups and answers look-ups.

Work is done in arrival order. While the database is unreachable the work waits in a queue
and is retried with capped backoff, and the actor keeps answering status questions.
"""

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from sidecar import metrics
from sidecar.actors.messages import (
    BatchesFound,
    FindBatches,
    GetStatus,
    LoadUnacknowledged,
    LoadUnbatched,
    UnacknowledgedLoaded,
    UnbatchedLoaded,
    Write,
    Written,
)
from sidecar.actors.peers import SupervisedActor, tell_ref
from sidecar.actors.timers import Ticker
from sidecar.kms_protocol import Inquiry
from sidecar.store import UNAVAILABLE, Database, PreparedWrite

log = logger.bind(component="store")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
PROBE_S = 1.0  # an idle connection is checked this often, so that /health tells the truth


@dataclass(frozen=True, slots=True)
class _Retry:
    pass


@dataclass(frozen=True, slots=True)
class _Probe:
    pass


Operation = Callable[[int], None]
"""A unit of database work; its argument counts earlier failed attempts."""


class StoreActor(SupervisedActor):
    """Serialises all database work; retries with capped backoff while the database is away."""

    role = "store"

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._db = database
        self._available = False
        self._queue: collections.deque[Operation] = collections.deque()
        self._failures = 0  # failed attempts of the operation at the head of the queue
        self._retry: threading.Timer | None = None
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, _Probe(), PROBE_S)
        self._run()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        if self._retry is not None:
            self._retry.cancel()
        self._db.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Write(prepared=prepared, reply_to=reply_to):
                self._enqueue(lambda attempt: self._write(prepared, reply_to, attempt))
            case FindBatches(inquiry=inquiry, reply_to=reply_to):
                self._enqueue(lambda _: self._find_batches(inquiry, reply_to))
            case LoadUnbatched(after=after, limit=limit, reply_to=reply_to):
                self._enqueue(lambda _: self._load_unbatched(after, limit, reply_to))
            case LoadUnacknowledged(exclude=exclude, limit=limit, reply_to=reply_to):
                self._enqueue(lambda _: self._load_unacknowledged(exclude, limit, reply_to))
            case _Probe() if not self._queue and self._retry is None:
                self._enqueue(lambda _: self._db.ping())
            case _Retry():
                self._retry = None
                self._run()
            case GetStatus():
                return {
                    "database": "reachable" if self._available else "unreachable",
                    "queued": len(self._queue),
                }
        return None

    def _write(self, prepared: PreparedWrite, reply_to: Any, attempt: int) -> None:
        group = prepared.group
        if attempt and self._db.group_committed(group):
            log.info("a write group committed before the connection was lost; not repeating it")
        else:
            self._db.write(prepared)
        metrics.EVENTS_STORED.inc(len(group.events))
        tell_ref(reply_to, Written(group))

    def _find_batches(self, inquiry: Inquiry, reply_to: Any) -> None:
        batches = self._db.batches_between(inquiry.start, inquiry.end)
        tell_ref(reply_to, BatchesFound(inquiry, batches))

    def _load_unbatched(self, after: tuple[Any, ...] | None, limit: int, reply_to: Any) -> None:
        events = self._db.unbatched_events(after, limit)
        tell_ref(reply_to, UnbatchedLoaded(events, complete=len(events) < limit))

    def _load_unacknowledged(self, exclude: list[str], limit: int, reply_to: Any) -> None:
        batches = self._db.unacknowledged_batches(exclude, limit)
        tell_ref(reply_to, UnacknowledgedLoaded(batches, complete=len(batches) < limit))

    def _enqueue(self, operation: Operation) -> None:
        self._queue.append(operation)
        if self._retry is None:
            self._run()

    def _run(self) -> None:
        """Do queued work in order until the queue is empty or the database fails."""
        while True:
            try:
                if not self._db.connected:
                    applied = self._db.connect()
                    if applied:
                        log.info("database migrated: {}", ", ".join(applied))
                if not self._available:
                    log.info("database ready")
                    self._available = True
                if not self._queue:
                    return
                self._queue[0](self._failures)
            except UNAVAILABLE as exc:
                self._unavailable(exc)
                return
            self._queue.popleft()
            self._failures = 0

    def _unavailable(self, exc: Exception) -> None:
        metrics.DATABASE_ERRORS.inc()
        if self._available or self._failures == 0:
            log.warning("database unreachable, retrying with backoff: {}", str(exc).strip())
        self._available = False
        self._db.close()
        if self._queue:
            self._failures += 1
        delay = min(RETRY_FIRST_S * 2 ** min(self._failures, 10), RETRY_MAX_S)
        self._retry = threading.Timer(delay, tell_ref, (self.actor_ref, _Retry()))
        self._retry.daemon = True
        self._retry.start()
