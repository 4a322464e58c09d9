"""Start the sidecar, run until told to stop, then shut down in order."""

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


class Sidecar:
    """One running sidecar: database, health server and the actor tree."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopped = threading.Event()
        """Set when the sidecar should stop: a signal, :meth:`request_stop` or a fatal failure."""
        self.fatal: str | None = None
        self._embedded: Any = None
        self._health: HealthServer | None = None

    def start(self) -> None:
        """Start everything; returns once the actors are starting."""
        settings = self.settings
        log.info("forensic logging sidecar {} for service {}", __version__, settings.service)
        uri = settings.database_uri
        if not uri:
            uri, self._embedded = start_embedded_db(settings.embedded_db_dir)
        self._health = HealthServer(settings.host, settings.health_port)
        self._health.start()
        database = Database(uri, settings.service, __version__)
        Supervisor.start(settings, database, self._on_fatal)

    def request_stop(self) -> None:
        """Ask the sidecar to shut down gracefully."""
        self.stopped.set()

    def _on_fatal(self, reason: str) -> None:
        log.critical("fatal: {}", reason)
        self.fatal = reason
        self.stopped.set()

    def shutdown(self) -> None:
        """Stop accepting, take in what clients sent, store it, report what can be, stop."""
        _stop_actors(self.settings, graceful=self.fatal is None)
        if self._health is not None:
            self._health.stop()
        if self._embedded is not None:
            self._embedded.cleanup()
        log.info("sidecar stopped")

    @property
    def exit_code(self) -> int:
        """0 after a requested stop, 1 after a fatal failure."""
        return 0 if self.fatal is None else 1


def run_sidecar(settings: Settings) -> int:
    """Run until SIGTERM, SIGINT or a fatal failure; return the process exit code."""
    sidecar = Sidecar(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received {}: shutting down", signal.Signals(signum).name)
        sidecar.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sidecar.start()
        while not sidecar.stopped.wait(1.0):
            pass
    finally:
        sidecar.shutdown()
    return sidecar.exit_code


def _stop_actors(settings: Settings, graceful: bool) -> None:
    for name in ("Supervisor", "ListenerActor"):
        _stop(name)
    for ref in pykka.ActorRegistry.get_by_class_name("ConnectionActor"):
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
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
