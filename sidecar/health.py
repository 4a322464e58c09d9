"""HTTP health and metrics on HEALTH_PORT: ``GET /health`` (SPEC §8) and ``GET /metrics``."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.actors import peers
from sidecar.actors.messages import GetStatus

STATUS_TIMEOUT_S = 1.0


def _ask_status(actor_class_name: str) -> dict[str, Any] | None:
    ref = peers.find(actor_class_name)
    if ref is None:
        return None
    try:
        status: dict[str, Any] = ref.ask(GetStatus(), timeout=STATUS_TIMEOUT_S)  # type: ignore[assignment]
    except Exception:
        return None
    return status


def health_report() -> tuple[int, dict[str, Any]]:
    """HTTP status and body: 200 ``{"status": "OK", ...}`` while the sidecar serves, else 503."""
    listener = _ask_status("ListenerActor") or {}
    kms = _ask_status("KmsActor") or {}
    store = _ask_status("StoreActor")
    batch = _ask_status("BatchActor") or {}
    serving = bool(listener.get("listening"))
    body: dict[str, Any] = {
        "status": "OK" if serving else "UNAVAILABLE",
        "sidecarId": kms.get("sidecarId"),
        "kms": kms.get("kms", "unknown"),
        "database": store["database"] if store else "unreachable",
        "connections": listener.get("connections", 0),
        "unstoredBytes": batch.get("unstoredBytes"),
        "reportingBacklog": batch.get("backlog"),
    }
    return (200 if serving else 503), body


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            status, body = health_report()
            self._send(status, "application/json", json.dumps(body).encode())
        elif self.path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest())
        else:
            self._send(404, "application/json", b'{"error":"not found"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: stay quiet
        pass


class HealthServer:
    """The HTTP server, in a daemon thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
