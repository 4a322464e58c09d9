"""The sidecar ↔ KMS conversation of SPEC §5, sans I/O: method names, params and results.

Used by the sidecar's KmsActor and by the development KMS, so both speak one protocol.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sidecar.jsonrpc import INVALID_PARAMS, JsonRpcError
from sidecar.rows import format_timestamp, parse_timestamp
from sidecar.signing import BatchSigner, KeyFormatError, RowSigner

REGISTER = "register"
CHALLENGE = "challenge"
BATCH = "batch"
HEALTHCHECK = "healthcheck"
INQUIRY = "inquiry"
INQUIRY_RESPONSE = "inquiry-response"

ID_EXISTS = 40001
INVALID_BATCH_SIGNATURE = 40004
INVALID_ROW_SIGNATURE = 40005


class ProtocolViolation(ValueError):
    """The peer sent something the protocol does not allow."""


@dataclass(frozen=True, slots=True)
class Registration:
    """What the KMS hands a newly registered sidecar id."""

    sidecar_id: str
    row_signer: RowSigner
    batch_signer: BatchSigner
    challenge: str


@dataclass(frozen=True, slots=True)
class Inquiry:
    """A KMS request for the batches created in ``[start, end]``."""

    inquiry_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch as an inquiry returns it."""

    batch_id: str
    data: str


def register_params(sidecar_id: str, service_name: str) -> dict[str, Any]:
    """Params of the ``register`` request."""
    return {"id": sidecar_id, "serviceName": service_name}


def parse_registration(sidecar_id: str, result: Any) -> Registration:
    """Read the ``register`` result; raises :class:`ProtocolViolation` if it is unusable."""
    if not isinstance(result, dict):
        raise ProtocolViolation("register result is not an object")
    if result.get("id") != sidecar_id:
        raise ProtocolViolation(f"register result is for id {result.get('id')!r}, not {sidecar_id}")
    challenge = result.get("challenge")
    if not isinstance(challenge, str):
        raise ProtocolViolation("register result has no challenge string")
    try:
        row_signer = RowSigner.from_hex(result.get("rowKey"))
        batch_signer = BatchSigner.from_hex(result.get("batchKey"))
    except KeyFormatError as exc:
        raise ProtocolViolation(f"register result has a bad key: {exc}") from None
    return Registration(sidecar_id, row_signer, batch_signer, challenge)


def challenge_params(
    challenge: str, row_signer: RowSigner, batch_signer: BatchSigner
) -> dict[str, str]:
    """Params of the ``challenge`` request: the challenge signed with both keys."""
    data = challenge.encode("utf-8")
    return {"rowSignature": row_signer.sign(data), "batchSignature": batch_signer.sign(data)}


def batch_params(batch_id: str, signature: str) -> dict[str, str]:
    """Params of the ``batch`` request."""
    return {"id": batch_id, "signature": signature}


def healthcheck_result(
    sidecar_id: str, version: str, now_ms: int, uptime_ms: int, event_count_last_hour: int
) -> dict[str, Any]:
    """The answer to a ``healthcheck`` request."""
    return {
        "id": sidecar_id,
        "version": version,
        "current": format_timestamp(now_ms),
        "uptime": uptime_ms,
        "eventCountLastHour": event_count_last_hour,
    }


def parse_inquiry(params: Any) -> Inquiry:
    """Read ``inquiry`` params; raises :class:`JsonRpcError` (-32602) when they are unusable."""
    if not isinstance(params, dict):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: expected an object")
    inquiry_id = params.get("inquiry")
    if not isinstance(inquiry_id, str) or not inquiry_id:
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: 'inquiry' must be a non-empty string")
    times = []
    for key in ("startTime", "endTime"):
        value = params.get(key)
        try:
            if not isinstance(value, str):
                raise TypeError(key)
            times.append(parse_timestamp(value))
        except (TypeError, ValueError):
            raise JsonRpcError(
                INVALID_PARAMS, f"Invalid params: {key!r} is not an ISO time"
            ) from None
    return Inquiry(inquiry_id, times[0], times[1])


def inquiry_response_params(
    inquiry_id: str, batches: Sequence[StoredBatch]
) -> list[dict[str, Any]]:
    """Params of each ``inquiry-response`` request: one per batch, or one saying there are none."""
    if not batches:
        return [{"inquiry": inquiry_id, "total": 0, "item": 0}]
    total = len(batches)
    return [
        {
            "inquiry": inquiry_id,
            "id": batch.batch_id,
            "body": batch.data,
            "total": total,
            "item": item,
        }
        for item, batch in enumerate(batches, start=1)
    ]
