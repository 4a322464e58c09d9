"""KmsActor: owns the WebSocket to the KMS, its registration, requests, pings and reconnects.

The socket is read by a helper thread that connects and then tells this actor every frame; the
actor alone decides and sends, so all connection state lives here.
"""

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pykka
import websocket
from loguru import logger

from sidecar import __version__, jsonrpc, kms_protocol, metrics
from sidecar.actors import peers
from sidecar.actors.messages import (
    BatchAcknowledged,
    BatchesFound,
    CountEventsLastHour,
    FindBatches,
    GetStatus,
    Registered,
    ReportBatch,
    Status,
    Tick,
)
from sidecar.actors.timers import Ticker, monotonic_ms, now_ms
from sidecar.config import KmsSettings
from sidecar.kms_protocol import ProtocolViolation, Registration
from sidecar.rows import format_timestamp
from sidecar.ws_limits import FrameTooLarge, limit_frame_size

log = logger.bind(component="kms")
TICK_S = 0.1
HEALTHCHECK_COUNT_TIMEOUT_S = 1.0
MAX_FRAME_BYTES = 1 << 20  # far above any valid KMS message; larger frames are skipped


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int
    ws: websocket.WebSocket


@dataclass(frozen=True, slots=True)
class _ConnectFailed:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class _FrameReceived:
    generation: int
    text: str


@dataclass(frozen=True, slots=True)
class _FrameSkipped:
    generation: int
    length: int


@dataclass(frozen=True, slots=True)
class _Disconnected:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Pending:
    method: str
    deadline_ms: int
    subject: Any  # the sidecar id being registered, the registration, or the batch id


def _connect_and_read(
    url: str, timeout_s: float, generation: int, actor: pykka.ActorRef[Any]
) -> None:
    """Connect, hand the socket to the actor, then tell it every frame until the socket ends."""
    try:
        ws = websocket.create_connection(
            url, timeout=timeout_s, enable_multithread=True, skip_utf8_validation=True
        )
    except Exception as exc:
        peers.tell_ref(actor, _ConnectFailed(generation, str(exc) or type(exc).__name__))
        return
    ws.settimeout(None)
    limit_frame_size(ws, MAX_FRAME_BYTES)
    if not peers.tell_ref(actor, _Connected(generation, ws)):
        ws.shutdown()  # type: ignore[no-untyped-call]
        return
    reason = "closed by the KMS"
    try:
        while True:
            try:
                opcode, data = ws.recv_data()
            except FrameTooLarge as exc:
                peers.tell_ref(actor, _FrameSkipped(generation, exc.length))
                continue
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            text = data.decode("utf-8", "replace")
            if not peers.tell_ref(actor, _FrameReceived(generation, text)):
                break
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
    peers.tell_ref(actor, _Disconnected(generation, reason))


class KmsActor(peers.SupervisedActor):
    """Registers with the KMS, reports batches, answers health checks and inquiries."""

    role = "kms"

    def __init__(self, settings: KmsSettings, service: str) -> None:
        super().__init__()
        self._settings = settings
        self._service = service
        self._generation = 0
        self._ws: websocket.WebSocket | None = None
        self._state = "disconnected"
        self._registration: Registration | None = None
        self._registered_ms = 0
        self._pending: dict[str | int, _Pending] = {}
        self._next_connect_ms = 0
        self._failed_attempts = 0
        self._next_ping_ms = 0
        self._ticker: Ticker | None = None

    # lifecycle

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Tick(), TICK_S)
        self._connect()

    def on_stop(self) -> None:
        if self._ticker:
            self._ticker.stop()
        self._drop("sidecar shutting down", reconnect=False)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ReportBatch(batch=batch):
                self._report(batch.batch_id, batch.sidecar_id, batch.signature)
            case _FrameReceived(generation=generation, text=text) if generation == self._generation:
                self._frame(text)
            case _FrameSkipped(length=length):
                log.warning("skipped a {} byte frame from KMS (limit {})", length, MAX_FRAME_BYTES)
                metrics.KMS_ERRORS.labels("frame-too-large").inc()
            case BatchesFound(inquiry=inquiry, batches=batches):
                self._answer_inquiry(inquiry.inquiry_id, batches)
            case Tick():
                self._tick()
            case _Connected(generation=generation, ws=ws):
                self._connected(generation, ws)
            case _ConnectFailed(generation=generation, reason=reason) if (
                generation == self._generation
            ):
                self._connect_failed(reason)
            case _Disconnected(generation=generation, reason=reason) if (
                generation == self._generation
            ):
                log.warning("KMS connection lost: {}", reason)
                self._drop(reason, reconnect=True)
            case GetStatus():
                return self._status()
        return None

    # connection

    def _connect(self) -> None:
        self._generation += 1
        self._state = "connecting"
        threading.Thread(
            target=_connect_and_read,
            args=(
                self._settings.url,
                self._settings.connect_timeout / 1000,
                self._generation,
                self.actor_ref,
            ),
            name=f"kms-reader-{self._generation}",
            daemon=True,
        ).start()

    def _connect_failed(self, reason: str) -> None:
        metrics.KMS_ERRORS.labels("connect").inc()
        self._failed_attempts += 1
        attempts = self._failed_attempts
        if attempts & (attempts - 1) == 0:  # 1st, 2nd, 4th, 8th ... failure: keep the log readable
            log.warning(
                "cannot connect to KMS at {} ({} attempts so far, retrying every {} ms): {}",
                self._settings.url,
                attempts,
                self._settings.reconnect_interval,
                reason,
            )
        self._schedule_reconnect()

    def _connected(self, generation: int, ws: websocket.WebSocket) -> None:
        if generation != self._generation:
            ws.shutdown()  # type: ignore[no-untyped-call]
            return
        metrics.KMS_CONNECTS.inc()
        self._failed_attempts = 0
        log.info("connected to KMS at {}", self._settings.url)
        self._ws = ws
        self._next_ping_ms = monotonic_ms() + self._settings.ping_interval
        self._register(str(uuid.uuid4()))

    def _drop(self, reason: str, reconnect: bool) -> None:
        """Abandon the current connection (its reader's later messages are ignored)."""
        self._generation += 1
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                if not reconnect:
                    ws.send_close(websocket.STATUS_NORMAL, b"sidecar shutting down")
                ws.shutdown()  # type: ignore[no-untyped-call]
            except Exception as exc:
                log.debug("closing KMS socket: {}", exc)
        self._pending.clear()
        self._state = "disconnected"
        if reconnect:
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._state = "waiting"
        self._next_connect_ms = monotonic_ms() + self._settings.reconnect_interval

    def _tick(self) -> None:
        now = monotonic_ms()
        if self._state == "waiting" and now >= self._next_connect_ms:
            log.debug("connecting to KMS")
            self._connect()
            return
        if self._ws is None:
            return
        expired = [(rid, p) for rid, p in self._pending.items() if now >= p.deadline_ms]
        if expired:
            rid, pending = expired[0]
            log.warning(
                "KMS did not answer {} request {} within {} ms",
                pending.method,
                rid,
                self._settings.request_timeout,
            )
            metrics.KMS_ERRORS.labels("timeout").inc()
            self._drop("request timeout", reconnect=True)
            return
        if now >= self._next_ping_ms:
            self._next_ping_ms = now + self._settings.ping_interval
            self._send_ping()

    def _send_ping(self) -> None:
        assert self._ws is not None
        try:
            self._ws.ping(json.dumps({"timestamp": format_timestamp(now_ms())}))
        except Exception as exc:
            self._drop(f"ping failed: {exc}", reconnect=True)

    def _send(self, text: str) -> bool:
        if self._ws is None:
            return False
        try:
            self._ws.send(text)
        except Exception as exc:
            log.warning("KMS send failed: {}", exc)
            self._drop(f"send failed: {exc}", reconnect=True)
            return False
        return True

    def _request(self, method: str, params: Any, subject: Any) -> None:
        request_id, text = jsonrpc.request(method, params)
        deadline = monotonic_ms() + self._settings.request_timeout
        self._pending[request_id] = _Pending(method, deadline, subject)
        self._send(text)

    # registration

    def _register(self, sidecar_id: str) -> None:
        self._state = "registering"
        self._request(
            kms_protocol.REGISTER,
            kms_protocol.register_params(sidecar_id, self._service),
            sidecar_id,
        )

    def _registered(self, sidecar_id: str, result: Any) -> None:
        try:
            registration = kms_protocol.parse_registration(sidecar_id, result)
        except ProtocolViolation as exc:
            log.error("unusable registration from KMS: {}", exc)
            metrics.KMS_ERRORS.labels("protocol").inc()
            self._drop(str(exc), reconnect=True)
            return
        self._state = "challenging"
        params = kms_protocol.challenge_params(
            registration.challenge, registration.row_signer, registration.batch_signer
        )
        self._request(kms_protocol.CHALLENGE, params, registration)

    def _challenge_passed(self, registration: Registration) -> None:
        self._registration = registration
        self._registered_ms = monotonic_ms()
        self._state = "ready"
        log.info(
            "registered with KMS as sidecar {} for service {}",
            registration.sidecar_id,
            self._service,
        )
        peers.tell("BatchActor", Registered(registration, now_ms()))

    # batches

    def _report(self, batch_id: str, sidecar_id: str, signature: str) -> None:
        registration = self._registration
        if self._state != "ready" or registration is None or registration.sidecar_id != sidecar_id:
            return  # the BatchActor re-signs and reports again after the next registration
        self._request(kms_protocol.BATCH, kms_protocol.batch_params(batch_id, signature), batch_id)

    # incoming frames

    def _frame(self, text: str) -> None:
        try:
            message = jsonrpc.parse(text)
        except jsonrpc.JsonRpcError as exc:
            log.warning("skipping malformed frame from KMS: {} ({} bytes)", exc.message, len(text))
            metrics.KMS_ERRORS.labels("malformed").inc()
            return
        match message:
            case jsonrpc.Request():
                self._kms_request(message)
            case jsonrpc.Response() | jsonrpc.ErrorResponse():
                self._response(message)

    def _response(self, message: jsonrpc.Response | jsonrpc.ErrorResponse) -> None:
        pending = self._pending.pop(message.id, None) if message.id is not None else None
        if pending is None:
            log.warning("KMS answered an unknown request id {!r}", message.id)
            metrics.KMS_ERRORS.labels("unknown-id").inc()
            return
        if isinstance(message, jsonrpc.Response):
            match pending.method:
                case kms_protocol.REGISTER:
                    self._registered(pending.subject, message.result)
                case kms_protocol.CHALLENGE:
                    self._challenge_passed(pending.subject)
                case kms_protocol.BATCH:
                    peers.tell("BatchActor", BatchAcknowledged(pending.subject))
            return
        self._error_response(pending, message)

    def _error_response(self, pending: _Pending, error: jsonrpc.ErrorResponse) -> None:
        metrics.KMS_ERRORS.labels("error-response").inc()
        if pending.method == kms_protocol.BATCH and error.code == kms_protocol.ID_EXISTS:
            log.info("KMS already has batch {}: counted as acknowledged", pending.subject)
            peers.tell("BatchActor", BatchAcknowledged(pending.subject))
            return
        log.error("KMS refused {} ({}): {}", pending.method, error.code, error.message)
        if pending.method == kms_protocol.REGISTER and error.code == kms_protocol.ID_EXISTS:
            self._register(str(uuid.uuid4()))
        elif pending.method in (kms_protocol.REGISTER, kms_protocol.CHALLENGE):
            self._drop(f"{pending.method} refused", reconnect=True)

    def _kms_request(self, request: jsonrpc.Request) -> None:
        if request.method == kms_protocol.HEALTHCHECK:
            self._answer_healthcheck(request)
        elif request.method == kms_protocol.INQUIRY:
            try:
                inquiry = kms_protocol.parse_inquiry(request.params)
            except jsonrpc.JsonRpcError as exc:
                log.warning("bad inquiry from KMS: {}", exc.message)
                if request.id is not None:
                    self._send(jsonrpc.error(request.id, exc.code, exc.message))
                return
            log.info("inquiry {} for {} .. {}", inquiry.inquiry_id, inquiry.start, inquiry.end)
            peers.tell("StoreActor", FindBatches(inquiry, self.actor_ref))
        else:
            log.warning("KMS called unknown method {!r}", request.method)
            if request.id is not None:
                self._send(
                    jsonrpc.error(
                        request.id, jsonrpc.METHOD_NOT_FOUND, f"Method not found: {request.method}"
                    )
                )

    def _answer_healthcheck(self, request: jsonrpc.Request) -> None:
        registration = self._registration
        if request.id is None or registration is None:
            return
        batch = peers.find("BatchActor")
        count = -1
        if batch is not None:
            try:
                count = batch.ask(CountEventsLastHour(), timeout=HEALTHCHECK_COUNT_TIMEOUT_S)  # type: ignore[assignment]
            except Exception as exc:
                log.warning("event count unavailable for health check: {}", exc)
        result = kms_protocol.healthcheck_result(
            registration.sidecar_id,
            __version__,
            now_ms(),
            monotonic_ms() - self._registered_ms,
            count,
        )
        self._send(jsonrpc.response(request.id, result))

    def _answer_inquiry(self, inquiry_id: str, batches: list[kms_protocol.StoredBatch]) -> None:
        for params in kms_protocol.inquiry_response_params(inquiry_id, batches):
            _, text = jsonrpc.request(kms_protocol.INQUIRY_RESPONSE, params)
            if not self._send(text):
                log.warning("inquiry {} interrupted by a lost connection", inquiry_id)
                return
        log.info("inquiry {} served: {} batches", inquiry_id, len(batches))

    def _status(self) -> Status:
        registration = self._registration
        return {
            "kms": self._state,
            "sidecarId": registration.sidecar_id if registration else None,
            "pendingRequests": len(self._pending),
        }
