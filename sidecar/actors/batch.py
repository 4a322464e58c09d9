"""BatchActor: turns received messages into signed events and batches; drives storage and reporting.

Group commit: at most one write group is with the StoreActor at a time; whatever arrives
meanwhile forms the next group. Batches are reported to the KMS only once stored.

Reporting keeps at most ``REPORT_WINDOW`` batches outstanding. Whatever the KMS has not
acknowledged stays marked so in the database (the *backlog*: after a restart, a KMS outage or
a new registration) and is read back oldest first, re-signed by the current registration
where another one signed it, and reported.
"""

from typing import Any

import pykka
from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.messages import (
    BatchAcknowledged,
    CountEventsLastHour,
    Drain,
    GetStatus,
    LoadUnacknowledged,
    LoadUnbatched,
    PauseReading,
    ReadyToServe,
    Received,
    Registered,
    ReportBatch,
    ResumeReading,
    Status,
    Stored,
    Tick,
    UnacknowledgedLoaded,
    UnbatchedLoaded,
    Write,
    Written,
)
from sidecar.actors.timers import Ticker, monotonic_ms, now_ms
from sidecar.batching import Batch, Batcher, StoredEvent, WriteGroup
from sidecar.kms_protocol import Registration
from sidecar.rate_window import RateWindow
from sidecar.store import prepare

log = logger.bind(component="batch")
TICK_S = 0.05
REPORT_WINDOW = 256
RECOVERY_PAGE = 10_000

Ref = pykka.ActorRef[Any]


class BatchActor(peers.SupervisedActor):
    """Owns sequencing, the open batch, the write pipeline and what is left to report."""

    role = "batch"

    def __init__(
        self, batch_size: int, batch_time_interval_ms: int, max_unstored_bytes: int
    ) -> None:
        super().__init__()
        self._batcher = Batcher(batch_size)
        self._interval_ms = batch_time_interval_ms
        self._last_close_ms = monotonic_ms()
        self._ticker: Ticker | None = None
        self._received_last_hour = RateWindow(window_s=3600, buckets=60)
        # storage
        self._in_flight: WriteGroup | None = None
        # per reader: (messages, bytes) received since the last write group was handed out
        self._sources: dict[Ref, tuple[int, int]] = {}
        self._receipts: list[int] = []  # receipt times of the reads in the next write group
        self._in_flight_sources: list[tuple[Ref, int, int]] = []
        self._in_flight_receipts: list[int] = []
        # backpressure
        self._max_unstored = max_unstored_bytes
        self._unstored = 0
        self._in_flight_size = 0
        self._readers: set[Ref] = set()
        self._paused = False
        # recovery and reporting
        self._recovering = False
        self._recovered = 0
        self._serving = False
        self._outstanding: dict[str, Batch] = {}
        self._resigning: set[str] = set()
        self._acknowledging: set[str] = set()  # acknowledged, not yet recorded as such
        self._backlog = True
        self._loading = False
        self._drains: list[Drain] = []

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Tick(), TICK_S)

    def on_stop(self) -> None:
        if self._ticker:
            self._ticker.stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Received():
                self._receive(message)
            case Written(group=group):
                self._written(group)
            case BatchAcknowledged(batch_id=batch_id):
                self._acknowledged(batch_id)
            case Registered(registration=registration, at_ms=at_ms):
                self._register(registration, at_ms)
            case UnbatchedLoaded(events=events, complete=complete):
                self._recover(events, complete)
            case UnacknowledgedLoaded(batches=batches, complete=complete):
                self._backlog_loaded(batches, complete)
            case Tick():
                self._tick()
            case Drain():
                self._drains.append(message)
                self._close_open_batch()
                self._flush()
            case CountEventsLastHour():
                return self._received_last_hour.total()
            case GetStatus():
                return self._status()
        self._check_drained()
        return None

    # receiving

    def _receive(self, received: Received) -> None:
        count = len(received.messages)
        closed = self._batcher.add(received.messages, received.received_ms)
        metrics.EVENTS_RECEIVED.inc(count)
        self._received_last_hour.add(count)
        source = received.reply_to
        messages, size = self._sources.get(source, (0, 0))
        self._sources[source] = (messages + count, size + received.size)
        self._receipts.append(received.received_ms)
        self._unstored += received.size
        self._readers.add(source)
        if closed:
            metrics.BATCHES_CLOSED.inc(len(closed))
            self._last_close_ms = monotonic_ms()
        if self._unstored > self._max_unstored and not self._paused:
            self._pause_readers()
        self._flush()

    def _pause_readers(self) -> None:
        log.warning(
            "{} bytes received but not yet stored: pausing reads from clients", self._unstored
        )
        self._paused = True
        for reader in list(self._readers):
            if not peers.tell_ref(reader, PauseReading()):
                self._readers.discard(reader)

    def _resume_readers(self) -> None:
        log.info("storage caught up: resuming reads from clients")
        self._paused = False
        for reader in list(self._readers):
            if not peers.tell_ref(reader, ResumeReading()):
                self._readers.discard(reader)

    # registration and recovery

    def _register(self, registration: Registration, at_ms: int) -> None:
        self._batcher.register(registration, at_ms)
        self._outstanding.clear()  # reports to an earlier registration are void
        self._backlog = True
        if not self._serving and not self._recovering:
            self._recovering = True
            peers.tell("StoreActor", LoadUnbatched(None, RECOVERY_PAGE, self.actor_ref))
        self._flush()
        self._maybe_load_backlog()

    def _recover(self, events: list[StoredEvent], complete: bool) -> None:
        closed = self._batcher.recover(events, now_ms())
        metrics.BATCHES_CLOSED.inc(len(closed))
        self._recovered += len(events)
        if not complete:
            after = events[-1].order_key
            peers.tell("StoreActor", LoadUnbatched(after, RECOVERY_PAGE, self.actor_ref))
            return
        if self._recovered:
            log.info("batching {} events an earlier run stored but did not batch", self._recovered)
            self._close_open_batch()
        self._recovering = False
        self._serving = True
        self._flush()
        peers.tell("Supervisor", ReadyToServe())
        self._maybe_load_backlog()

    # storage

    def _tick(self) -> None:
        if self._batcher.open_count and monotonic_ms() - self._last_close_ms >= self._interval_ms:
            self._close_open_batch()
            self._flush()

    def _close_open_batch(self) -> None:
        if self._batcher.registration is not None and self._batcher.close(now_ms()) is not None:
            metrics.BATCHES_CLOSED.inc()
            self._last_close_ms = monotonic_ms()

    def _flush(self) -> None:
        if self._in_flight is not None:
            return
        group = self._batcher.take_write_group()
        if not group:
            return
        self._in_flight = group
        self._in_flight_sources = [
            (ref, count, size) for ref, (count, size) in self._sources.items()
        ]
        self._in_flight_size = sum(size for _, size in self._sources.values())
        self._sources = {}
        self._in_flight_receipts, self._receipts = self._receipts, []
        if not peers.tell("StoreActor", Write(prepare(group), self.actor_ref)):
            raise RuntimeError("StoreActor is not running")

    def _written(self, group: WriteGroup) -> None:
        self._in_flight = None
        committed_ms = now_ms()
        for received_ms in self._in_flight_receipts:
            metrics.COMMIT_LATENCY.observe((committed_ms - received_ms) / 1000)
        for ref, count, size in self._in_flight_sources:
            peers.tell_ref(ref, Stored(count, size))
        self._in_flight_sources = []
        self._unstored -= self._in_flight_size
        self._in_flight_size = 0
        if self._paused and self._unstored <= self._max_unstored // 2:
            self._resume_readers()
        self._acknowledging.difference_update(group.acknowledged)
        for batch in group.resigned:
            self._resigning.discard(batch.batch_id)
            self._report_or_leave(batch, from_backlog=True)
        for batch in group.batches:
            self._report_or_leave(batch, from_backlog=False)
        self._flush()
        self._maybe_load_backlog()

    # reporting

    def _report_or_leave(self, batch: Batch, from_backlog: bool) -> None:
        """Report a stored batch now, or leave it to the backlog scan (it is in the database)."""
        registration = self._batcher.registration
        current = registration is not None and batch.sidecar_id == registration.sidecar_id
        if (
            current
            and (from_backlog or not self._backlog)
            and len(self._outstanding) < REPORT_WINDOW
        ):
            self._outstanding[batch.batch_id] = batch
            peers.tell("KmsActor", ReportBatch(batch))
        else:
            self._backlog = True

    def _maybe_load_backlog(self) -> None:
        in_hand = len(self._outstanding) + len(self._resigning)
        if (
            not self._backlog
            or self._loading
            or not self._serving
            or self._batcher.registration is None
            or in_hand >= REPORT_WINDOW // 2
        ):
            return
        self._loading = True
        exclude = [*self._outstanding, *self._resigning, *self._acknowledging]
        peers.tell(
            "StoreActor", LoadUnacknowledged(exclude, REPORT_WINDOW - in_hand, self.actor_ref)
        )

    def _backlog_loaded(self, batches: list[Batch], complete: bool) -> None:
        self._loading = False
        registration = self._batcher.registration
        assert registration is not None
        stale = []
        for batch in batches:
            if batch.batch_id in self._acknowledging:
                continue
            if batch.sidecar_id == registration.sidecar_id:
                self._outstanding[batch.batch_id] = batch
                peers.tell("KmsActor", ReportBatch(batch))
            else:
                stale.append(batch)
        if stale:
            log.info(
                "re-signing {} unacknowledged batches for sidecar {}",
                len(stale),
                registration.sidecar_id,
            )
            self._resigning.update(batch.batch_id for batch in self._batcher.resign(stale))
        if complete:
            self._backlog = False
        self._flush()
        self._maybe_load_backlog()

    def _acknowledged(self, batch_id: str) -> None:
        batch = self._outstanding.pop(batch_id, None)
        if batch is None:
            return
        metrics.BATCHES_ACKNOWLEDGED.inc()
        metrics.ACKNOWLEDGE_LATENCY.observe((now_ms() - batch.first_received_ms) / 1000)
        self._batcher.acknowledge(batch_id)
        self._acknowledging.add(batch_id)
        self._flush()
        self._maybe_load_backlog()

    # shutdown and status

    def _check_drained(self) -> None:
        if not self._drains:
            return
        stored = self._in_flight is None and self._batcher.pending_events == 0
        never_registered = self._batcher.registration is None  # nothing to report with
        reported = never_registered or not (self._outstanding or self._resigning or self._backlog)
        remaining: list[Drain] = []
        for drain in self._drains:
            if stored and (reported or not drain.wait_for_acknowledgements):
                drain.done.set()
            else:
                remaining.append(drain)
        self._drains = remaining

    def _status(self) -> Status:
        registration = self._batcher.registration
        return {
            "sidecarId": registration.sidecar_id if registration else None,
            "openBatchEvents": self._batcher.open_count,
            "writing": self._in_flight is not None,
            "unstoredBytes": self._unstored,
            "paused": self._paused,
            "outstandingBatches": len(self._outstanding),
            "backlog": self._backlog,
        }
