"""Supervisor: starts the pipeline's actors and restarts the ones whose crash is survivable.

The KmsActor and the ListenerActor hold only connection state and are restarted with a
growing backoff. The BatchActor and StoreActor hold sequence and write state that a restart
would lose, so their crash stops the sidecar (exit 1) for its orchestrator to restart it.
A crashed ConnectionActor affects only its own client.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.batch import BatchActor
from sidecar.actors.kms import KmsActor
from sidecar.actors.listener import ListenerActor
from sidecar.actors.messages import ChildFailed, ReadyToServe
from sidecar.actors.store import StoreActor
from sidecar.config import Settings
from sidecar.store import Database

log = logger.bind(component="supervisor")
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class _Restart:
    role: str


class Supervisor(pykka.ThreadingActor):
    """Owns the actor tree's shape: who starts, who is restarted, what is fatal."""

    def __init__(
        self, settings: Settings, database: Database, on_fatal: Callable[[str], None]
    ) -> None:
        super().__init__()
        self._settings = settings
        self._database = database
        self._on_fatal = on_fatal
        self._serving = False
        self._failures: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        self._factories: dict[str, Callable[[], pykka.ActorRef[Any]]] = {
            "store": lambda: StoreActor.start(self._database),
            "batch": lambda: BatchActor.start(
                settings.batch_size, settings.batch_time_interval, settings.max_unstored_bytes
            ),
            "kms": lambda: KmsActor.start(settings.kms, settings.service),
            "listener": lambda: ListenerActor.start(settings),
        }

    def on_start(self) -> None:
        for role in ("store", "batch", "kms"):
            self._start(role)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ReadyToServe() if not self._serving:
                self._serving = True
                self._start("listener")
            case ChildFailed(role=role, reason=reason):
                self._child_failed(role, reason)
            case _Restart(role=role):
                log.info("restarting {}", role)
                metrics.ACTOR_RESTARTS.labels(role).inc()
                self._start(role)
        return None

    def _start(self, role: str) -> None:
        self._started_at[role] = time.monotonic()
        try:
            self._factories[role]()
        except Exception as exc:
            self._child_failed(role, repr(exc))

    def _child_failed(self, role: str, reason: str) -> None:
        if role == "connection":
            return
        if role in ("batch", "store"):
            self._on_fatal(f"{role} actor failed: {reason}")
            return
        if time.monotonic() - self._started_at.get(role, 0.0) > STABLE_AFTER_S:
            self._failures[role] = 0
        failures = self._failures.get(role, 0)
        self._failures[role] = failures + 1
        delay = min(BACKOFF_FIRST_S * 2**failures, BACKOFF_MAX_S)
        log.warning("{} failed ({}); restarting in {:.1f} s", role, reason, delay)
        timer = threading.Timer(delay, peers.tell_ref, (self.actor_ref, _Restart(role)))
        timer.daemon = True
        timer.start()
