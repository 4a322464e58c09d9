"""Clock and periodic ticks for actors: one thread per ticking actor, telling it a message."""

import threading
import time
from typing import Any

import pykka


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (receipt and creation times)."""
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    """Monotonic milliseconds, for intervals and deadlines."""
    return time.monotonic_ns() // 1_000_000


class Ticker:
    """Tells ``actor_ref`` ``message`` every ``interval`` seconds until stopped or it dies."""

    def __init__(self, actor_ref: pykka.ActorRef[Any], message: object, interval: float) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(actor_ref, message, interval),
            daemon=True,
            name=f"ticker-{actor_ref.actor_class.__name__}",
        )
        self._thread.start()

    def _run(self, actor_ref: pykka.ActorRef[Any], message: object, interval: float) -> None:
        while not self._stopped.wait(interval):
            try:
                actor_ref.tell(message)
            except pykka.ActorDeadError:
                return

    def stop(self) -> None:
        """Stop ticking."""
        self._stopped.set()
