"""ListenerActor: accepts service connections on PORT and starts a ConnectionActor for each."""

import select
import socket
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from sidecar import metrics
from sidecar.actors import peers
from sidecar.actors.connection import ConnectionActor
from sidecar.actors.messages import GetStatus, Status

log = logger.bind(component="listener")
POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class _AcceptMore:
    pass


_ACCEPT_MORE = _AcceptMore()


class ListenerActor(peers.SupervisedActor):
    """Owns the listening socket; each accepted socket is handed to a new ConnectionActor."""

    role = "listener"

    def __init__(
        self,
        host: str,
        port: int,
        max_connections: int,
        max_message_size: int,
        max_unstored_bytes: int,
    ) -> None:
        super().__init__()
        self._address = (host, port)
        self._max_connections = max_connections
        self._max_message_size = max_message_size
        self._max_unstored = max_unstored_bytes
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
                self._accept()
            case GetStatus():
                return self._status()
        return None

    def _status(self) -> Status:
        self._connections = [ref for ref in self._connections if ref.is_alive()]
        return {"listening": self._server is not None, "connections": len(self._connections)}

    def _accept(self) -> None:
        assert self._server is not None
        readable, _, _ = select.select([self._server], [], [], POLL_S)
        if readable:
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
        self._connections.append(
            ConnectionActor.start(sock, peer, self._max_message_size, self._max_unstored)
        )
