"""What the sidecar puts on the KMS WebSocket, seen by a bare server built on websockets' sans-I/O
protocol: the frames themselves, pings included (a full server answers those unseen)."""

import contextlib
import json
import socket
import threading
from datetime import UTC, datetime, timedelta

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tests.e2e import SidecarLauncher
from tests.support import wait_until


class FrameRecorder(threading.Thread):
    """Accepts one WebSocket connection and records every frame the client sends."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frames: list[tuple[Opcode, bytes]] = []

    def run(self) -> None:
        connection, _ = self.listener.accept()
        protocol = ServerProtocol()
        with connection, contextlib.suppress(OSError):  # the sidecar may just drop the socket
            while data := connection.recv(65536):
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        protocol.send_response(protocol.accept(event))
                    else:
                        self.frames.append((event.opcode, bytes(event.data)))
                for outgoing in protocol.data_to_send():
                    connection.sendall(outgoing)

    def close(self) -> None:
        self.listener.close()


def test_the_sidecar_registers_and_pings_with_a_json_timestamp(
    start_sidecar: SidecarLauncher,
) -> None:
    recorder = FrameRecorder()
    recorder.start()
    try:
        start_sidecar(
            f"ws://127.0.0.1:{recorder.port}/sidecar",
            wait_ready=False,
            KMS__PING_INTERVAL=200,
            SERVICE="PingedService",
        )

        def pings() -> list[bytes]:
            return [data for opcode, data in recorder.frames if opcode == Opcode.PING]

        wait_until(lambda: len(pings()) >= 3, 30, "three pings")
    finally:
        recorder.close()
    [register] = [json.loads(data) for opcode, data in recorder.frames if opcode == Opcode.TEXT]
    assert register["jsonrpc"] == "2.0" and register["method"] == "register"
    assert register["params"]["serviceName"] == "PingedService"
    assert len(register["id"]) == 36 and register["id"] != register["params"]["id"]
    for payload in pings()[:3]:
        timestamp = datetime.fromisoformat(json.loads(payload)["timestamp"])
        assert abs(timestamp - datetime.now(UTC)) < timedelta(minutes=1)
