"""StoreActor: owns the PostgreSQL connection; commits write groups and answers look-ups."""

from collections.abc import Callable
from typing import Any, TypeVar

from loguru import logger

from sidecar import metrics
from sidecar.actors.messages import BatchesFound, FindBatches, GetStatus, Status, Write, Written
from sidecar.actors.peers import SupervisedActor, tell_ref
from sidecar.store import UNAVAILABLE, Database

T = TypeVar("T")
log = logger.bind(component="store")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


class StoreActor(SupervisedActor):
    """Serialises all database work; retries with capped backoff while the database is away."""

    role = "store"

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._db = database
        self._available = False

    def on_start(self) -> None:
        applied = self._retrying(self._db.connect)
        if applied:
            log.info("database migrated: {}", ", ".join(applied))
        log.info("database ready")

    def on_stop(self) -> None:
        self._db.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Write(group=group, reply_to=reply_to):
                self._retrying(lambda: self._db.write(group))
                metrics.EVENTS_STORED.inc(len(group.events))
                tell_ref(reply_to, Written(group))
            case FindBatches(inquiry=inquiry, reply_to=reply_to):
                batches = self._retrying(
                    lambda: self._db.batches_between(inquiry.start, inquiry.end)
                )
                tell_ref(reply_to, BatchesFound(inquiry, batches))
            case GetStatus():
                return self._status()
        return None

    def _status(self) -> Status:
        return {"database": "reachable" if self._available else "unreachable"}

    def _retrying(self, operation: Callable[[], T]) -> T:
        delay = RETRY_FIRST_S
        while True:
            try:
                if not self._db.connected:
                    self._db.connect()
                result = operation()
            except UNAVAILABLE as exc:
                metrics.DATABASE_ERRORS.inc()
                if self._available:
                    log.warning("database unreachable, retrying: {}", str(exc).strip())
                self._available = False
                self._db.close()
                self.actor_stopped.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if not self._available:
                self._available = True
            return result
