"""Checking a batch body that a sidecar returned for an inquiry, sans I/O.

A body is verified when its batch id was reported to this KMS, the signature reported then is a
valid Ed25519 signature of the body by the reporting registration's batch key, and every row's
signature is the CMAC, with the row key of the registration named by the row's ``keyId``, of the
row's exact text.

The row text is cut out of the body as it stands rather than re-serialised with
``json.dumps(row, ensure_ascii=False, separators=(",", ":"))``. For rows the sidecar produced both
give the same text (that is how the sidecar builds bodies); cutting it out also verifies bodies
whose rows were written differently (``\\u`` escapes, spacing) but signed as written.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.devkms.state import RecordedBatch, SidecarRegistration
from sidecar.signing import RowSigner, verify_batch_signature

MAX_ROW_ERRORS = 20
ROW_FIELDS = ("keyId", "sequence", "message", "timestamp")
_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


class KeyRing(Protocol):
    """Where the verifier looks up what the KMS knows (a :class:`KmsState` is one)."""

    def batch(self, batch_id: str) -> RecordedBatch | None:
        """The batch as reported, if it was."""

    def registration(self, sidecar_id: str) -> SidecarRegistration | None:
        """The registration of a sidecar id, if any."""


class BodyFormatError(ValueError):
    """A batch body that is not a JSON array of ``{"row": …, "signature": …}`` objects."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One element of a batch body: the row's exact text, the row, and its signature."""

    row_text: str
    row: Any
    signature: Any


@dataclass(slots=True)
class BatchCheck:
    """The verdict on one batch body."""

    batch_id: str
    item: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """Whether nothing was wrong with the batch."""
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        """The admin API's view: id, item, verified, row count, errors."""
        return {
            "id": self.batch_id,
            "item": self.item,
            "verified": self.verified,
            "rows": len(self.rows),
            "errors": list(self.errors),
        }


def _utf8(text: str) -> bytes:
    # A body cannot hold lone surrogates when it came from the sidecar; never crash on one.
    return text.encode("utf-8", "surrogatepass")


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _expect(text: str, index: int, char: str) -> int:
    index = _skip(text, index)
    if index >= len(text) or text[index] != char:
        raise BodyFormatError(f"expected {char!r} at offset {index}")
    return index + 1


def _value(text: str, index: int) -> tuple[Any, int, int]:
    """Decode the JSON value at ``index`` (after whitespace): ``(value, start, end)``."""
    start = _skip(text, index)
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise BodyFormatError(f"invalid JSON at offset {exc.pos}: {exc.msg}") from None
    return value, start, end


def _entry(text: str, index: int) -> tuple[Entry, int]:
    index = _expect(text, index, "{")
    fields: dict[str, tuple[Any, int, int]] = {}
    if text[_skip(text, index) : _skip(text, index) + 1] == "}":
        index = _skip(text, index) + 1
    else:
        while True:
            key, _, index = _value(text, index)
            if not isinstance(key, str):
                raise BodyFormatError(f"object key at offset {index} is not a string")
            if key in fields:
                raise BodyFormatError(f"duplicate key {key!r} before offset {index}")
            index = _expect(text, index, ":")
            value, start, index = _value(text, index)
            fields[key] = (value, start, index)
            index = _skip(text, index)
            if text[index : index + 1] == ",":
                index += 1
                continue
            index = _expect(text, index, "}")
            break
    if set(fields) != {"row", "signature"}:
        raise BodyFormatError(f"entry has keys {sorted(fields)}, expected ['row', 'signature']")
    row, start, end = fields["row"]
    return Entry(text[start:end], row, fields["signature"][0]), index


def split_entries(body: str) -> list[Entry]:
    """The entries of a batch body, each with its row's exact text; raises BodyFormatError."""
    index = _expect(body, 0, "[")
    entries: list[Entry] = []
    if body[_skip(body, index) : _skip(body, index) + 1] == "]":
        index = _skip(body, index) + 1
    else:
        while True:
            entry, index = _entry(body, index)
            entries.append(entry)
            index = _skip(body, index)
            if body[index : index + 1] == ",":
                index += 1
                continue
            index = _expect(body, index, "]")
            break
    if _skip(body, index) != len(body):
        raise BodyFormatError(f"unexpected data after the array at offset {_skip(body, index)}")
    return entries


def _row_view(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in ROW_FIELDS}


def _check_rows(
    entries: list[Entry], signer_for: Callable[[str], RowSigner | None], check: BatchCheck
) -> None:
    row_errors: list[str] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry.row, dict):
            row_errors.append(f"row {number}: not a JSON object")
            continue
        check.rows.append(_row_view(entry.row))
        key_id = entry.row.get("keyId")
        if not isinstance(key_id, str):
            row_errors.append(f"row {number}: keyId is not a string")
            continue
        signer = signer_for(key_id)
        if signer is None:
            row_errors.append(f"row {number}: keyId {key_id} is not a registration of this KMS")
            continue
        if not isinstance(entry.signature, str):
            row_errors.append(f"row {number}: signature is not a string")
        elif not signer.verify(_utf8(entry.row_text), entry.signature):
            row_errors.append(f"row {number}: row signature does not match the row")
    if len(row_errors) > MAX_ROW_ERRORS:
        more = len(row_errors) - MAX_ROW_ERRORS
        row_errors = [*row_errors[:MAX_ROW_ERRORS], f"... and {more} more row errors"]
    check.errors.extend(row_errors)


def verify_batch(
    batch_id: str, item: int, body: str, keys: KeyRing, service_name: str | None = None
) -> BatchCheck:
    """Check one inquiry answer; ``service_name``, when given, must be the reporter's service."""
    check = BatchCheck(batch_id, item)
    recorded = keys.batch(batch_id)
    if recorded is None:
        check.errors.append("batch id was never reported to this KMS")
    else:
        reporter = keys.registration(recorded.sidecar_id)
        if reporter is None:
            check.errors.append(f"reporting sidecar {recorded.sidecar_id} is not registered")
        else:
            if not verify_batch_signature(reporter.public_key, _utf8(body), recorded.signature):
                check.errors.append("batch signature does not match the body")
            if service_name is not None and reporter.service_name != service_name:
                check.errors.append(
                    f"batch was reported by a sidecar of service {reporter.service_name!r}"
                )
    try:
        entries = split_entries(body)
    except BodyFormatError as exc:
        check.errors.append(f"body is not a batch: {exc}")
        return check
    signers: dict[str, RowSigner | None] = {}

    def signer_for(key_id: str) -> RowSigner | None:
        if key_id not in signers:
            registration = keys.registration(key_id)
            signers[key_id] = None if registration is None else RowSigner(registration.row_key)
        return signers[key_id]

    _check_rows(entries, signer_for, check)
    return check
