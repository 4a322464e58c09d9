"""Inquiries the development KMS sent, the answers that came back, their verdict (in memory)."""

from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from sidecar.devkms.state import now_iso
from sidecar.devkms.verify import BatchCheck, KeyRing, verify_batch

log = logger.bind(component="devkms")


@dataclass(frozen=True, slots=True)
class InquiryItem:
    """One batch a sidecar returned for an inquiry."""

    batch_id: str
    body: str


@dataclass(slots=True)
class InquiryRecord:
    """An inquiry sent to one sidecar, and what it has answered so far."""

    inquiry_id: str
    sidecar_id: str
    service_name: str
    start_time: str
    end_time: str
    sent: str
    total: int | None = None
    items: dict[int, InquiryItem] = field(default_factory=dict)
    item_of_batch: dict[str, int] = field(default_factory=dict)
    verified_checks: dict[int, BatchCheck] = field(default_factory=dict)
    """Checks that passed; a passed check cannot fail later (the first report stands)."""
    problems: list[str] = field(default_factory=list)

    @property
    def received(self) -> int:
        """How many distinct items have arrived."""
        return len(self.items)

    @property
    def complete(self) -> bool:
        """Whether every announced item has arrived (``total`` 0: nothing to wait for)."""
        return self.total is not None and self.received == self.total


class InquiryError(ValueError):
    """An ``inquiry-response`` that cannot be recorded."""


def _int(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InquiryError(f"{name!r} must be a non-negative integer")
    return value


class InquiryBook:
    """Every inquiry of this devkms run, by id."""

    def __init__(self) -> None:
        self._inquiries: dict[str, InquiryRecord] = {}

    def open(
        self, inquiry_id: str, sidecar_id: str, service_name: str, start_time: str, end_time: str
    ) -> InquiryRecord:
        """Start waiting for the answers to an inquiry sent to ``sidecar_id``."""
        record = InquiryRecord(
            inquiry_id, sidecar_id, service_name, start_time, end_time, now_iso()
        )
        self._inquiries[inquiry_id] = record
        return record

    def get(self, inquiry_id: str) -> InquiryRecord | None:
        """The inquiry ``inquiry_id``, if it was sent."""
        return self._inquiries.get(inquiry_id)

    def record_response(self, sender: str, params: Any) -> None:
        """Record an ``inquiry-response`` from sidecar ``sender``; InquiryError if unusable."""
        if not isinstance(params, dict):
            raise InquiryError("params must be an object")
        inquiry_id = params.get("inquiry")
        record = self._inquiries.get(inquiry_id) if isinstance(inquiry_id, str) else None
        if record is None:
            raise InquiryError(f"unknown inquiry {inquiry_id!r}")
        if sender != record.sidecar_id:
            raise InquiryError(f"inquiry {inquiry_id} was sent to sidecar {record.sidecar_id}")
        total, item = _int(params, "total"), _int(params, "item")
        if record.total is not None and total != record.total:
            record.problems.append(f"item {item} announces total {total}, earlier {record.total}")
            raise InquiryError(f"total {total} contradicts the earlier total {record.total}")
        if total == 0:
            if item != 0:
                raise InquiryError("an empty answer must have item 0")
        else:
            self._record_item(record, total, item, params)
        was_complete = record.complete
        record.total = total
        if record.complete and not was_complete:
            log.info("inquiry {} complete: {} batch(es) from sidecar {}", inquiry_id, total, sender)

    @staticmethod
    def _record_item(record: InquiryRecord, total: int, item: int, params: dict[str, Any]) -> None:
        batch_id, body = params.get("id"), params.get("body")
        if not 1 <= item <= total:
            raise InquiryError(f"item {item} is outside 1..{total}")
        if not isinstance(batch_id, str) or not isinstance(body, str):
            raise InquiryError("'id' and 'body' must be strings")
        new = InquiryItem(batch_id, body)
        known = record.items.get(item)
        if known is not None:
            if known != new:
                record.problems.append(f"item {item} was sent twice with different content")
            raise InquiryError(f"item {item} was received already")
        earlier = record.item_of_batch.get(batch_id)
        if earlier is not None:
            record.problems.append(f"batch {batch_id} is both item {earlier} and item {item}")
        record.items[item] = new
        record.item_of_batch[batch_id] = item

    def report(self, inquiry_id: str, keys: KeyRing) -> dict[str, Any] | None:
        """The admin API's view of an inquiry, every received batch verified now."""
        record = self._inquiries.get(inquiry_id)
        if record is None:
            return None
        if not record.complete:  # answers still arriving: counts only, nothing verified yet
            return {
                "inquiry": record.inquiry_id,
                "total": record.total,
                "received": record.received,
                "complete": False,
                "verified": False,
                "errors": list(record.problems),
                "batches": [],
                "rows": [],
            }
        checks = []
        for number, item in sorted(record.items.items()):
            check = record.verified_checks.get(number)
            if check is None:
                check = verify_batch(item.batch_id, number, item.body, keys, record.service_name)
                if check.verified:
                    record.verified_checks[number] = check
            checks.append(check)
        verified = record.complete and not record.problems and all(c.verified for c in checks)
        return {
            "inquiry": record.inquiry_id,
            "sidecarId": record.sidecar_id,
            "serviceName": record.service_name,
            "startTime": record.start_time,
            "endTime": record.end_time,
            "sent": record.sent,
            "total": record.total,
            "received": record.received,
            "complete": record.complete,
            "verified": verified,
            "errors": list(record.problems),
            "batches": [check.as_json() for check in checks],
            "rows": [row for check in checks for row in check.rows],
        }
