"""BatchActor: turns received messages into signed events and batches; drives storage and reporting.

Group commit: at most one write group is with the StoreActor at a time; whatever arrives
meanwhile forms the next group. Batches are reported to the KMS only once stored.
"""

import collections
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
    ReadyToServe,
    Received,
    Registered,
    ReportBatch,
    Status,
    Stored,
    Tick,
    Write,
    Written,
)
from sidecar.actors.timers import Ticker, monotonic_ms, now_ms
from sidecar.batching import Batch, Batcher, WriteGroup
from sidecar.rate_window import RateWindow

log = logger.bind(component="batch")
TICK_S = 0.05


class BatchActor(peers.SupervisedActor):
    """Owns sequencing, the open batch, the write pipeline and the unacknowledged batches."""

    role = "batch"

    def __init__(self, batch_size: int, batch_time_interval_ms: int) -> None:
        super().__init__()
        self._batcher = Batcher(batch_size)
        self._interval_ms = batch_time_interval_ms
        self._last_close_ms = monotonic_ms()
        self._in_flight: WriteGroup | None = None
        self._sources: collections.Counter[pykka.ActorRef[Any]] = collections.Counter()
        self._source_sizes: collections.Counter[pykka.ActorRef[Any]] = collections.Counter()
        self._in_flight_sources: list[tuple[pykka.ActorRef[Any], int, int]] = []
        self._receipts: list[int] = []  # receipt times of the reads in the next write group
        self._in_flight_receipts: list[int] = []
        self._unacknowledged: dict[str, Batch] = {}
        self._reported: set[str] = set()
        self._received_last_hour = RateWindow(window_s=3600, buckets=60)
        self._drains: list[Drain] = []
        self._ticker: Ticker | None = None

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
            case Tick():
                self._tick()
            case Drain():
                self._drains.append(message)
                self._close_open_batch()
                self._flush()
                self._check_drained()
            case CountEventsLastHour():
                return self._received_last_hour.total()
            case GetStatus():
                return self._status()
        return None

    def _receive(self, received: Received) -> None:
        count = len(received.messages)
        closed = self._batcher.add(received.messages, received.received_ms)
        metrics.EVENTS_RECEIVED.inc(count)
        self._received_last_hour.add(count)
        self._sources[received.reply_to] += count
        self._source_sizes[received.reply_to] += received.size
        self._receipts.append(received.received_ms)
        if closed:
            metrics.BATCHES_CLOSED.inc(len(closed))
            self._last_close_ms = monotonic_ms()
        self._flush()

    def _register(self, registration: Any, at_ms: int) -> None:
        first = self._batcher.registration is None
        self._batcher.register(registration, at_ms)
        if self._unacknowledged:
            log.info(
                "re-signing {} unacknowledged batches for sidecar {}",
                len(self._unacknowledged),
                registration.sidecar_id,
            )
            resigned = self._batcher.resign(list(self._unacknowledged.values()))
            self._unacknowledged = {batch.batch_id: batch for batch in resigned}
            self._reported.clear()
        self._flush()
        if first:
            peers.tell("Supervisor", ReadyToServe())

    def _tick(self) -> None:
        if self._batcher.open_count and monotonic_ms() - self._last_close_ms >= self._interval_ms:
            self._close_open_batch()
            self._flush()

    def _close_open_batch(self) -> None:
        if self._batcher.close(now_ms()) is not None:
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
            (ref, count, self._source_sizes[ref]) for ref, count in self._sources.items()
        ]
        self._sources.clear()
        self._source_sizes.clear()
        self._in_flight_receipts, self._receipts = self._receipts, []
        if not peers.tell("StoreActor", Write(group, self.actor_ref)):
            raise RuntimeError("StoreActor is not running")

    def _written(self, group: WriteGroup) -> None:
        self._in_flight = None
        committed_ms = now_ms()
        for received_ms in self._in_flight_receipts:
            metrics.COMMIT_LATENCY.observe((committed_ms - received_ms) / 1000)
        for ref, count, size in self._in_flight_sources:
            peers.tell_ref(ref, Stored(count, size))
        self._in_flight_sources = []
        registration = self._batcher.registration
        current = registration.sidecar_id if registration else None
        stale = []
        for batch in group.resigned + group.batches:
            if batch.sidecar_id == current:
                self._unacknowledged[batch.batch_id] = batch
            else:  # closed under a registration that ended while it was being stored
                stale.append(batch)
        if stale:
            self._batcher.resign(stale)
        self._report_unreported()
        self._flush()
        self._check_drained()

    def _report_unreported(self) -> None:
        for batch_id, batch in self._unacknowledged.items():
            if batch_id not in self._reported and peers.tell("KmsActor", ReportBatch(batch)):
                self._reported.add(batch_id)

    def _acknowledged(self, batch_id: str) -> None:
        batch = self._unacknowledged.pop(batch_id, None)
        if batch is None:
            return
        metrics.ACKNOWLEDGE_LATENCY.observe((now_ms() - batch.first_received_ms) / 1000)
        self._reported.discard(batch_id)
        metrics.BATCHES_ACKNOWLEDGED.inc()
        self._batcher.acknowledge(batch_id)
        self._flush()
        self._check_drained()

    def _check_drained(self) -> None:
        if not self._drains:
            return
        stored = self._in_flight is None and self._batcher.pending_events == 0
        remaining: list[Drain] = []
        for drain in self._drains:
            if stored and (not drain.wait_for_acknowledgements or not self._unacknowledged):
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
            "unacknowledgedBatches": len(self._unacknowledged),
        }
