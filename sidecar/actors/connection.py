"""ConnectionActor: one per service socket; reads frames and sends each read's messages on.

The actor reads in a self-addressed message loop (``_ReadMore``), so it stays responsive to
other messages between reads. It stops reading while too much of its data is not yet stored,
or while the BatchActor says storage is behind, which pushes back on the client through TCP
instead of buffering without bound. In acknowledgement mode it writes back, after each commit,
a frame holding the count of this connection's messages stored so far.
"""

import select
import socket
from dataclasses import dataclass
from typing import Any

from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.messages import (
    Allowance,
    ConnectionClosed,
    GetStatus,
    PauseReading,
    Received,
    ResumeReading,
    Stored,
)
from sidecar.actors.timers import monotonic_ms, now_ms
from sidecar.framing import FrameDecoder, FrameTooLarge, encode_frame

log = logger.bind(component="connection")
READ_SIZE = 256 * 1024
POLL_S = 0.5
DRAIN_S = 2.0
# What an event costs in memory beyond its message (objects, row, batch data, COPY data;
# measured), counted for backpressure.
MESSAGE_OVERHEAD_BYTES = 2048


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may do."""

    max_message_size: int
    unstored_bytes: int
    idle_timeout_ms: int
    client_acks: bool


@dataclass(frozen=True, slots=True)
class _ReadMore:
    pass


_READ_MORE = _ReadMore()


class ConnectionActor(peers.SupervisedActor):
    """Owns one client socket, its frame decoder and its acknowledgements."""

    role = "connection"

    def __init__(self, sock: socket.socket, peer: str, limits: ConnectionLimits) -> None:
        super().__init__()
        self._sock = sock
        self._peer = peer
        self._limits = limits
        self._decoder = FrameDecoder(limits.max_message_size)
        self._unstored = 0
        self._allowance = limits.unstored_bytes  # until the listener says how many share
        self._received = 0
        self._stored = 0
        self._held_back = False  # the BatchActor asked all connections to pause
        self._reading = False  # a _ReadMore is on its way
        self._closed = False
        self._last_data_ms = monotonic_ms()
        self._ack_pending = b""  # unsent rest of the acknowledgement frame being written
        self._ack_latest: int | None = None  # newest count not yet framed

    def on_start(self) -> None:
        metrics.CONNECTIONS_OPEN.inc()
        log.info("connection opened from {}", self._peer)
        self._resume()

    def on_stop(self) -> None:
        if not self._closed:
            self._drain()
        self._close("sidecar stopping")

    def on_receive(self, message: Any) -> Any:
        match message:
            case _ReadMore():
                self._reading = False
                self._read()
            case Stored(count=count, size=size):
                self._stored += count
                self._unstored -= size
                if self._limits.client_acks:
                    self._ack_latest = self._stored
                    self._send_acks()
                self._resume()
            case Allowance(unstored_bytes=unstored_bytes):
                self._allowance = min(unstored_bytes, self._limits.unstored_bytes)
                self._resume()
            case PauseReading():
                self._held_back = True
            case ResumeReading():
                self._held_back = False
                self._resume()
            case GetStatus():
                return {"peer": self._peer, "received": self._received, "stored": self._stored}
        return None

    def _must_wait(self) -> bool:
        return self._held_back or self._unstored >= self._allowance

    def _resume(self) -> None:
        if not self._reading and not self._closed and not self._must_wait():
            self._reading = True
            self.actor_ref.tell(_READ_MORE)

    def _read(self) -> None:
        if self._closed or self._must_wait():
            return
        writers = [self._sock] if self._ack_pending or self._ack_latest is not None else []
        readable, writable, _ = select.select([self._sock], writers, [], POLL_S)
        if writable:
            self._send_acks()
        if not readable:
            idle_ms = monotonic_ms() - self._last_data_ms
            if self._limits.idle_timeout_ms and idle_ms >= self._limits.idle_timeout_ms:
                metrics.CONNECTIONS_REJECTED.labels("idle").inc()
                self._finish(f"idle for {idle_ms} ms")
                return
            self._resume()
            return
        try:
            data = self._sock.recv(READ_SIZE)
        except OSError as exc:
            self._finish(f"read failed: {exc}")
            return
        if not data:
            self._finish("closed by client")
            return
        self._last_data_ms = monotonic_ms()
        if self._forward(data):
            self._resume()

    def _forward(self, data: bytes) -> bool:
        """Decode ``data`` and send its whole messages on; False if the connection ended."""
        try:
            messages = self._decoder.feed(data)
        except FrameTooLarge as exc:
            log.warning("closing connection from {}: {}", self._peer, exc)
            metrics.CONNECTIONS_REJECTED.labels("frame-too-large").inc()
            self._finish("frame too large")
            return False
        if messages:
            size = sum(map(len, messages)) + MESSAGE_OVERHEAD_BYTES * len(messages)
            if not peers.tell("BatchActor", Received(messages, size, now_ms(), self.actor_ref)):
                raise RuntimeError("BatchActor is not running")
            self._received += len(messages)
            self._unstored += size
        return True

    def _drain(self) -> None:
        """Take in what the client already sent before the sidecar stops."""
        deadline = monotonic_ms() + DRAIN_S * 1000
        self._sock.setblocking(False)
        while monotonic_ms() < deadline:
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not data or not self._forward(data):
                break

    def _send_acks(self) -> None:
        """Write acknowledgement frames without ever blocking; only the newest count matters."""
        while True:
            if not self._ack_pending:
                if self._ack_latest is None:
                    return
                self._ack_pending = encode_frame(str(self._ack_latest).encode("ascii"))
                self._ack_latest = None
            try:
                sent = self._sock.send(self._ack_pending, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # the read side notices a broken connection
            self._ack_pending = self._ack_pending[sent:]

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
        peers.tell("ListenerActor", ConnectionClosed(self.actor_ref))
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
