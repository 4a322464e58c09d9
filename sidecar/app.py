"""Start the sidecar, wait for SIGTERM/SIGINT or a fatal failure, then shut down in order."""

import contextlib
import signal
import threading
from types import FrameType
from typing import Any

import pykka
from loguru import logger

from sidecar import __version__
from sidecar.actors import peers
from sidecar.actors.messages import Drain
from sidecar.actors.supervisor import Supervisor
from sidecar.config import Settings
from sidecar.embedded_db import start as start_embedded_db
from sidecar.health import HealthServer
from sidecar.store import Database

log = logger.bind(component="sidecar")
STOP_TIMEOUT_S = 5.0


class _Stop:
    """Why the process is stopping: a signal (exit 0) or a fatal failure (exit 1)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.fatal: str | None = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received {}: shutting down", signal.Signals(signum).name)
        self.event.set()

    def on_fatal(self, reason: str) -> None:
        log.critical("fatal: {}", reason)
        self.fatal = reason
        self.event.set()


def run_sidecar(settings: Settings) -> int:
    """Run until stopped; return the process exit code."""
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop.on_signal)
    signal.signal(signal.SIGINT, stop.on_signal)
    log.info("forensic logging sidecar {} for service {}", __version__, settings.service)

    embedded: Any = None
    uri = settings.database_uri
    if not uri:
        uri, embedded = start_embedded_db(settings.embedded_db_dir)
    health = HealthServer(settings.host, settings.health_port)
    health.start()
    Supervisor.start(settings, Database(uri, settings.service, __version__), stop.on_fatal)
    try:
        while not stop.event.wait(1.0):
            pass
    finally:
        _shutdown(settings, graceful=stop.fatal is None)
        health.stop()
        if embedded is not None:
            embedded.cleanup()
    log.info("sidecar stopped")
    return 0 if stop.fatal is None else 1


def _shutdown(settings: Settings, graceful: bool) -> None:
    """Stop accepting, take in what clients sent, store it, report what can be, stop all actors."""
    for name in ("Supervisor", "ListenerActor"):
        _stop(name)
    for ref in pykka.ActorRegistry.get_by_class_name("ConnectionActor"):
        ref.stop(block=True, timeout=STOP_TIMEOUT_S)
    batch = peers.find("BatchActor")
    if graceful and batch is not None:
        done = threading.Event()
        batch.tell(Drain(done))
        if done.wait(settings.shutdown_timeout / 1000):
            log.info("everything stored and acknowledged")
        else:
            log.warning("shutdown timeout: unreported batches stay stored for the next start")
    for name in ("KmsActor", "BatchActor", "StoreActor"):
        _stop(name)
    pykka.ActorRegistry.stop_all(block=True, timeout=STOP_TIMEOUT_S)


def _stop(actor_class_name: str) -> None:
    ref = peers.find(actor_class_name)
    if ref is not None:
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            ref.stop(block=True, timeout=STOP_TIMEOUT_S)
