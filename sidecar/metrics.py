"""Prometheus metrics of the sidecar, served on the health port at ``/metrics``."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter("sidecar_events_received", "Messages received from services")
EVENTS_STORED = Counter("sidecar_events_stored", "Events committed to the database")
BATCHES_CLOSED = Counter("sidecar_batches_closed", "Batches closed and signed")
BATCHES_ACKNOWLEDGED = Counter("sidecar_batches_acknowledged", "Batches the KMS acknowledged")
CONNECTIONS_OPEN = Gauge("sidecar_connections_open", "Open service connections")
CONNECTIONS_REJECTED = Counter(
    "sidecar_connections_rejected",
    "Service connections refused or closed for bad input",
    ["reason"],
)
PARTIAL_FRAMES_LOST = Counter("sidecar_partial_frames_lost", "Connections closed mid-frame")
KMS_CONNECTS = Counter("sidecar_kms_connects", "Connections established to the KMS")
KMS_ERRORS = Counter("sidecar_kms_errors", "Problems talking to the KMS", ["kind"])
DATABASE_ERRORS = Counter("sidecar_database_errors", "Failed database operations")
ACTOR_RESTARTS = Counter("sidecar_actor_restarts", "Supervised actor restarts", ["role"])
LATENCY_BUCKETS = tuple(
    ms / 1000
    for ms in (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000,
               1500, 2000, 3000, 5000, 10_000, 30_000, 60_000, 300_000)
)  # fmt: skip
COMMIT_LATENCY = Histogram(
    "sidecar_commit_latency_seconds",
    "Receipt of a socket read's messages to their durable commit",
    buckets=LATENCY_BUCKETS,
)
ACKNOWLEDGE_LATENCY = Histogram(
    "sidecar_acknowledge_latency_seconds",
    "Receipt of a batch's first event to the KMS acknowledging the batch",
    buckets=LATENCY_BUCKETS,
)
