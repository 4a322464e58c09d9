"""ListenerActor: accepts service connections on PORT and starts a ConnectionActor for each."""

import select
import socket
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.connection import ConnectionActor, ConnectionLimits
from sidecar.actors.messages import Allowance, ConnectionClosed, GetStatus, Status
from sidecar.config import Settings

log = logger.bind(component="listener")
POLL_S = 0.2
MIN_SHARE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class _AcceptMore:
    """Wait (briefly) for a connection to arrive."""


@dataclass(frozen=True, slots=True)
class _AcceptNow:
    """A connection is waiting. Accepting it in a message of its own lets the connections'
    ConnectionClosed messages that came first be counted before MAX_CONNECTIONS is checked."""


_ACCEPT_MORE = _AcceptMore()
_ACCEPT_NOW = _AcceptNow()


class ListenerActor(peers.SupervisedActor):
    """Owns the listening socket; each accepted socket is handed to a new ConnectionActor."""

    role = "listener"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._address = (settings.host, settings.port)
        self._max_connections = settings.max_connections
        self._max_unstored = settings.max_unstored_bytes
        self._share = 0
        self._limits = ConnectionLimits(
            max_message_size=settings.max_message_size,
            unstored_bytes=settings.connection_unstored_bytes,
            idle_timeout_ms=settings.idle_timeout,
            client_acks=settings.client_acks,
        )
        self._server: socket.socket | None = None
        self._connections: list[pykka.ActorRef[Any]] = []

    def on_start(self) -> None:
        server = socket.create_server(self._address, backlog=128, reuse_port=False)
        self._server = server
        log.info("listening for services on {}:{}", *server.getsockname()[:2])
        self.actor_ref.tell(_ACCEPT_MORE)

    def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()
            log.info("stopped accepting connections")

    def on_receive(self, message: Any) -> Any:
        match message:
            case _AcceptMore():
                self._wait_for_connection()
            case _AcceptNow():
                self._accept()
            case ConnectionClosed(connection=connection):
                self._connections = [ref for ref in self._connections if ref != connection]
                self._rebalance()
            case GetStatus():
                return self._status()
        return None

    def _status(self) -> Status:
        self._connections = [ref for ref in self._connections if ref.is_alive()]
        return {"listening": self._server is not None, "connections": len(self._connections)}

    def _wait_for_connection(self) -> None:
        assert self._server is not None
        readable, _, _ = select.select([self._server], [], [], POLL_S)
        self.actor_ref.tell(_ACCEPT_NOW if readable else _ACCEPT_MORE)

    def _accept(self) -> None:
        assert self._server is not None
        try:
            sock, address = self._server.accept()
        except OSError as exc:
            log.warning("accept failed: {}", exc)
        else:
            self._start_connection(sock, f"{address[0]}:{address[1]}")
        self.actor_ref.tell(_ACCEPT_MORE)

    def _start_connection(self, sock: socket.socket, peer: str) -> None:
        self._connections = [ref for ref in self._connections if ref.is_alive()]
        if len(self._connections) >= self._max_connections:
            log.warning(
                "refusing connection from {}: MAX_CONNECTIONS={} reached",
                peer,
                self._max_connections,
            )
            metrics.CONNECTIONS_REJECTED.labels("too-many-connections").inc()
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.append(ConnectionActor.start(sock, peer, self._limits))
        self._rebalance()

    def _rebalance(self) -> None:
        """Share MAX_UNSTORED_BYTES among the open connections, so that together they stay in it."""
        share = max(MIN_SHARE_BYTES, self._max_unstored // max(1, len(self._connections)))
        if share == self._share:
            return
        self._share = share
        for ref in self._connections:
            peers.tell_ref(ref, Allowance(share))
