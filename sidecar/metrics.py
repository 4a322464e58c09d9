"""Prometheus metrics of the sidecar, served on the health port at ``/metrics``."""

from prometheus_client import Counter, Gauge

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
