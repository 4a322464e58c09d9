"""ConnectionActor: one per service socket; reads frames and sends each read's messages on.

The actor reads in a self-addressed message loop (``_ReadMore``), so it stays responsive to
other messages between reads. It stops reading while too much of its data is not yet stored,
which pushes back on the client through TCP instead of buffering without bound.
"""

import select
import socket
from dataclasses import dataclass
from typing import Any

from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.messages import GetStatus, Received, Stored
from sidecar.actors.timers import now_ms
from sidecar.framing import FrameDecoder, FrameTooLarge

log = logger.bind(component="connection")
READ_SIZE = 256 * 1024
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class _ReadMore:
    pass


_READ_MORE = _ReadMore()


class ConnectionActor(peers.SupervisedActor):
    """Owns one client socket and its frame decoder."""

    role = "connection"

    def __init__(
        self, sock: socket.socket, peer: str, max_message_size: int, max_unstored_bytes: int
    ) -> None:
        super().__init__()
        self._sock = sock
        self._peer = peer
        self._decoder = FrameDecoder(max_message_size)
        self._max_unstored = max_unstored_bytes
        self._unstored = 0
        self._received = 0
        self._stored = 0
        self._paused = False
        self._closed = False

    def on_start(self) -> None:
        metrics.CONNECTIONS_OPEN.inc()
        log.info("connection opened from {}", self._peer)
        self.actor_ref.tell(_READ_MORE)

    def on_stop(self) -> None:
        self._close("sidecar stopping")

    def on_receive(self, message: Any) -> Any:
        match message:
            case _ReadMore():
                self._read()
            case Stored(count=count, size=size):
                self._stored += count
                self._unstored -= size
                if self._paused and self._unstored < self._max_unstored:
                    self._paused = False
                    self.actor_ref.tell(_READ_MORE)
            case GetStatus():
                return {"peer": self._peer, "received": self._received, "stored": self._stored}
        return None

    def _read(self) -> None:
        if self._closed:
            return
        if self._unstored >= self._max_unstored:
            self._paused = True
            return
        readable, _, _ = select.select([self._sock], [], [], POLL_S)
        if not readable:
            self.actor_ref.tell(_READ_MORE)
            return
        try:
            data = self._sock.recv(READ_SIZE)
        except OSError as exc:
            self._finish(f"read failed: {exc}")
            return
        if not data:
            self._finish("closed by client")
            return
        try:
            messages = self._decoder.feed(data)
        except FrameTooLarge as exc:
            log.warning("closing connection from {}: {}", self._peer, exc)
            metrics.CONNECTIONS_REJECTED.labels("frame-too-large").inc()
            self._finish("frame too large")
            return
        if messages:
            size = sum(map(len, messages))
            if not peers.tell("BatchActor", Received(messages, size, now_ms(), self.actor_ref)):
                raise RuntimeError("BatchActor is not running")
            self._received += len(messages)
            self._unstored += size
        self.actor_ref.tell(_READ_MORE)

    def _finish(self, reason: str) -> None:
        if self._decoder.buffered:
            log.warning(
                "connection from {} closed mid-frame: {} bytes of a partial frame lost",
                self._peer,
                self._decoder.buffered,
            )
            metrics.PARTIAL_FRAMES_LOST.inc()
        self._close(reason)
        self.stop()

    def _close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.close()
        finally:
            metrics.CONNECTIONS_OPEN.dec()
            log.info(
                "connection from {} closed ({}): {} messages received",
                self._peer,
                reason,
                self._received,
            )
