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
COMMIT_LATENCY = Histogram(
    "sidecar_commit_latency_seconds",
    "Receipt of a socket read's messages to their durable commit",
    buckets=(
        0.001,
        0.002,
        0.003,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1.0,
        2.0,
        5.0,
        10.0,
    ),
)
ACKNOWLEDGE_LATENCY = Histogram(
    "sidecar_acknowledge_latency_seconds",
    "Receipt of a batch's first event to the KMS acknowledging the batch",
    buckets=(
        0.005,
        0.01,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1.0,
        1.5,
        2.0,
        3.0,
        5.0,
        10.0,
        30.0,
        60.0,
        300.0,
    ),
)
