"""The KMS side of one sidecar connection (SPEC §5), sans I/O.

A :class:`Session` takes each JSON-RPC request the sidecar sends and decides the answer:
new → registered (``register``) → ready (a correct ``challenge``); closed after a wrong row
signature. The server only moves text between the socket and the session.
"""

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from loguru import logger

from sidecar import jsonrpc
from sidecar.devkms.inquiries import InquiryBook, InquiryError
from sidecar.devkms.state import (
    KmsState,
    RecordedBatch,
    SidecarRegistration,
    now_iso,
)
from sidecar.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcError, Request
from sidecar.kms_protocol import (
    BATCH,
    CHALLENGE,
    ID_EXISTS,
    INQUIRY_RESPONSE,
    INVALID_BATCH_SIGNATURE,
    INVALID_ROW_SIGNATURE,
    REGISTER,
)
from sidecar.signing import BatchSigner, RowSigner, verify_batch_signature

log = logger.bind(component="devkms")

BATCH_SIGNATURE_HEX_LENGTH = 128
POLICY_VIOLATION = 1008  # WebSocket close code


class Phase(Enum):
    """Where a connection is in the registration handshake."""

    NEW = "new"
    REGISTERED = "registered"
    READY = "ready"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class IssuedKeys:
    """What ``register`` hands out: a row key, a batch key seed and a challenge."""

    row_key: bytes
    batch_seed: bytes
    challenge: str


def random_keys() -> IssuedKeys:
    """A random 32-byte AES row key, a random Ed25519 seed and a new UUID challenge."""
    return IssuedKeys(os.urandom(32), os.urandom(32), str(uuid.uuid4()))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do after a request: send ``reply`` (if any), then close the socket if ``close``.

    The socket is closed with ``close_code`` and ``close_reason``.
    """

    reply: str | None = None
    close: bool = False
    close_code: int = POLICY_VIOLATION
    close_reason: str = ""


NO_REPLY = Outcome()


def _object(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: expected an object")
    return params


def _string(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {name!r} must be a non-empty string")
    return value


def _uuid(params: dict[str, Any], name: str) -> str:
    value = _string(params, name)
    try:
        uuid.UUID(value)
    except ValueError:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {name!r} must be a UUID") from None
    return value


def _hex(params: dict[str, Any], name: str, length: int) -> str:
    value = _string(params, name)
    try:
        bytes.fromhex(value)
    except ValueError:
        value = ""
    if len(value) != length:
        raise JsonRpcError(INVALID_PARAMS, f"Invalid params: {name!r} must be {length} hex digits")
    return value


class Session:
    """The protocol state of one sidecar connection."""

    def __init__(
        self,
        state: KmsState,
        inquiries: InquiryBook,
        keygen: Callable[[], IssuedKeys] = random_keys,
    ) -> None:
        self._state = state
        self._inquiries = inquiries
        self._keygen = keygen
        self.phase = Phase.NEW
        self.registration: SidecarRegistration | None = None
        self.registered_at = 0  # monotonic ns of the registration, to find the newest
        self._challenge = ""
        self._handlers: dict[str, Callable[[Request], Outcome]] = {
            REGISTER: self._register,
            CHALLENGE: self._challenge_answer,
            BATCH: self._batch,
            INQUIRY_RESPONSE: self._inquiry_response,
        }

    @property
    def sidecar_id(self) -> str | None:
        """The sidecar id registered on this connection, once there is one."""
        return None if self.registration is None else self.registration.sidecar_id

    def handle(self, request: Request) -> Outcome:
        """Decide the answer to one request from the sidecar."""
        if self.phase is Phase.CLOSED:
            return NO_REPLY
        handler = self._handlers.get(request.method)
        if handler is None:
            log.warning("sidecar {} called unknown method {!r}", self.sidecar_id, request.method)
            return _error(request, METHOD_NOT_FOUND, f"Method not found: {request.method}")
        try:
            return handler(request)
        except JsonRpcError as exc:
            log.warning("{} from sidecar {} refused: {}", request.method, self.sidecar_id, exc)
            return _error(request, exc.code, exc.message)

    def _require(self, request: Request, phase: Phase) -> None:
        if self.phase is not phase:
            raise JsonRpcError(
                METHOD_NOT_FOUND,
                f"Method not allowed: {request.method} in state {self.phase.value}",
            )

    def _register(self, request: Request) -> Outcome:
        self._require(request, Phase.NEW)
        params = _object(request.params)
        sidecar_id, service = _uuid(params, "id"), _string(params, "serviceName")
        if self._state.is_registered(sidecar_id):
            raise JsonRpcError(ID_EXISTS, f"Sidecar id {sidecar_id} already exists")
        keys = self._keygen()
        batch_key = keys.batch_seed + BatchSigner(keys.batch_seed).public_key
        registration = SidecarRegistration(sidecar_id, service, keys.row_key, batch_key, now_iso())
        self._state.add_registration(registration)
        self.registration, self._challenge = registration, keys.challenge
        self.registered_at = time.monotonic_ns()
        self.phase = Phase.REGISTERED
        log.info("registered sidecar {} of service {!r}", sidecar_id, service)
        result = {
            "id": sidecar_id,
            "batchKey": batch_key.hex().upper(),
            "rowKey": keys.row_key.hex().upper(),
            "challenge": keys.challenge,
        }
        return _reply(request, jsonrpc.response(request.id, result))

    def _challenge_answer(self, request: Request) -> Outcome:
        self._require(request, Phase.REGISTERED)
        assert self.registration is not None
        params = _object(request.params)
        row_signature = _string(params, "rowSignature")
        batch_signature = _string(params, "batchSignature")
        data = self._challenge.encode("utf-8")
        if not RowSigner(self.registration.row_key).verify(data, row_signature):
            self.phase = Phase.CLOSED
            log.warning("sidecar {} failed the challenge: wrong row signature", self.sidecar_id)
            failure = _error(request, INVALID_ROW_SIGNATURE, "Invalid row signature")
            return Outcome(failure.reply, close=True, close_reason="challenge failed")
        if not verify_batch_signature(self.registration.public_key, data, batch_signature):
            log.warning("sidecar {} failed the challenge: wrong batch signature", self.sidecar_id)
            return _error(request, INVALID_BATCH_SIGNATURE, "Invalid batch signature")
        self.phase = Phase.READY
        log.info("sidecar {} passed the challenge and is ready", self.sidecar_id)
        return _reply(request, jsonrpc.response(request.id, {"status": "OK"}))

    def _batch(self, request: Request) -> Outcome:
        self._require(request, Phase.READY)
        assert self.registration is not None
        params = _object(request.params)
        batch_id = _uuid(params, "id")
        signature = _hex(params, "signature", BATCH_SIGNATURE_HEX_LENGTH)
        batch = RecordedBatch(batch_id, self.registration.sidecar_id, signature, now_iso())
        if not self._state.record_batch(batch):
            # As the real KMS does: a known batch id is "already exists"; the first record stands.
            raise JsonRpcError(ID_EXISTS, f"Batch id {batch_id} already exists")
        log.debug("batch {} recorded from sidecar {}", batch_id, self.sidecar_id)
        return _reply(request, jsonrpc.response(request.id, {"id": batch_id}))

    def _inquiry_response(self, request: Request) -> Outcome:
        if self.phase is not Phase.READY or self.sidecar_id is None:
            log.warning("ignored an inquiry-response in state {}", self.phase.value)
            return NO_REPLY
        try:
            self._inquiries.record_response(self.sidecar_id, request.params)
        except InquiryError as exc:
            log.warning("ignored an inquiry-response from sidecar {}: {}", self.sidecar_id, exc)
        return NO_REPLY  # the protocol expects no answer to these


def _reply(request: Request, text: str) -> Outcome:
    """Answer ``request``, unless it is a notification (no id), which gets no answer."""
    return NO_REPLY if request.id is None else Outcome(text)


def _error(request: Request, code: int, message: str) -> Outcome:
    return _reply(request, jsonrpc.error(request.id, code, message))


def unparseable_reply(exc: JsonRpcError) -> str:
    """The answer to a frame that is not JSON (-32700, id null) or not JSON-RPC (-32600)."""
    return jsonrpc.error(exc.id, exc.code, exc.message)
