"""The development KMS's verification of inquiry answers, fed with the original's vectors."""

import json
import uuid

import pytest

from sidecar.devkms.inquiries import InquiryBook, InquiryError
from sidecar.devkms.state import KmsState, RecordedBatch, SidecarRegistration
from sidecar.devkms.verify import BodyFormatError, split_entries, verify_batch
from sidecar.signing import BatchSigner, RowSigner
from tests.shared_files import load_vectors

VECTORS = load_vectors()
SIDECAR_ID = VECTORS["sidecarId"]
BODY: str = VECTORS["batch"]["data"]
SIGNATURE: str = VECTORS["batch"]["signature"]
BATCH_ID = "0b9f3a52-1c1e-4d83-9a55-0d5f1f7e2c11"
BATCH_SIGNER = BatchSigner.from_hex(VECTORS["batchKey"])
ROW_SIGNER = RowSigner.from_hex(VECTORS["rowKey"])


def keys(service: str = "Ledger") -> KmsState:
    state = KmsState()
    registration = SidecarRegistration(
        SIDECAR_ID,
        service,
        bytes.fromhex(VECTORS["rowKey"]),
        bytes.fromhex(VECTORS["batchKey"]),
        "2017-07-10T15:45:30.000Z",
    )
    state.add_registration(registration)
    return state


def reported(state: KmsState, body: str, batch_id: str = BATCH_ID) -> None:
    signature = BATCH_SIGNER.sign(body.encode("utf-8"))
    state.record_batch(RecordedBatch(batch_id, SIDECAR_ID, signature, "2017-07-10T15:46:00.000Z"))


def test_the_original_batch_verifies() -> None:
    state = keys()
    state.record_batch(RecordedBatch(BATCH_ID, SIDECAR_ID, SIGNATURE.upper(), "now"))
    check = verify_batch(BATCH_ID, 1, BODY, state, "Ledger")
    assert check.errors == []
    assert check.verified
    expected = [case["message"] for case in VECTORS["rows"]]
    assert [row["message"] for row in check.rows] == expected
    assert [row["sequence"] for row in check.rows] == list(range(1, 9))
    assert {row["keyId"] for row in check.rows} == {SIDECAR_ID}
    assert check.as_json() == {"id": BATCH_ID, "item": 1, "verified": True, "rows": 8, "errors": []}


def test_a_changed_body_fails_the_batch_and_the_row_signature() -> None:
    state = keys()
    state.record_batch(RecordedBatch(BATCH_ID, SIDECAR_ID, SIGNATURE, "now"))
    tampered = BODY.replace("transfer 42 prepared", "transfer 43 prepared")
    check = verify_batch(BATCH_ID, 1, tampered, state)
    assert check.errors == [
        "batch signature does not match the body",
        "row 2: row signature does not match the row",
    ]


def test_a_resigned_batch_with_a_forged_row_still_fails_on_the_row() -> None:
    state = keys()
    forged = BODY.replace("transfer 42 prepared", "transfer 43 prepared")
    reported(state, forged)  # whoever holds the batch key cannot forge rows without the row key
    check = verify_batch(BATCH_ID, 1, forged, state)
    assert check.errors == ["row 2: row signature does not match the row"]


def test_unknown_batches_services_and_key_ids_are_errors() -> None:
    state = keys(service="Ledger")
    assert verify_batch(BATCH_ID, 1, BODY, state).errors == [
        "batch id was never reported to this KMS"
    ]
    reported(state, BODY)
    wrong_service = verify_batch(BATCH_ID, 1, BODY, state, "Payments")
    assert wrong_service.errors == ["batch was reported by a sidecar of service 'Ledger'"]
    stranger = str(uuid.uuid4())
    old_row_start = f'"keyId":"{SIDECAR_ID}","sequence":3'
    body = BODY.replace(old_row_start, old_row_start.replace(SIDECAR_ID, stranger))
    reported(state, body, batch_id="b2")
    assert verify_batch("b2", 1, body, state).errors == [
        f"row 3: keyId {stranger} is not a registration of this KMS"
    ]


def test_rows_are_checked_as_written_in_the_body() -> None:
    """A row written with escapes and spaces verifies when it was signed exactly as written."""
    row = f'{{ "keyId": "{SIDECAR_ID}", "sequence": 1, "message": "caf\\u00e9", "timestamp": "x" }}'
    assert json.dumps(json.loads(row), ensure_ascii=False, separators=(",", ":")) != row
    body = f'[ {{"row" : {row} ,\n "signature": "{ROW_SIGNER.sign(row.encode())}"}} ]'
    state = keys()
    reported(state, body)
    check = verify_batch(BATCH_ID, 1, body, state)
    assert check.errors == []
    assert check.rows == [{"keyId": SIDECAR_ID, "sequence": 1, "message": "café", "timestamp": "x"}]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"row": {}, "signature": "00"}',
        '[{"row": {}}]',
        '[{"row": {}, "signature": "00", "extra": 1}]',
        '[{"row": {}, "row": {}, "signature": "00"}]',
        '[{"row": {}, "signature": "00"}] trailing',
        '[{"row": {}, "signature": "00"},]',
    ],
)
def test_a_body_that_is_not_a_batch(body: str) -> None:
    with pytest.raises(BodyFormatError):
        split_entries(body)
    state = keys()
    reported(state, body)
    [error] = verify_batch(BATCH_ID, 1, body, state).errors
    assert error.startswith("body is not a batch: ")


def test_split_entries_keeps_exact_row_text() -> None:
    assert split_entries(" [ ] ") == []
    [entry] = split_entries('[ {"signature" : "ab", "row" : {"a": [1, 2]} } ]')
    assert (entry.row_text, entry.row, entry.signature) == ('{"a": [1, 2]}', {"a": [1, 2]}, "ab")
    assert len(split_entries(BODY)) == 8


def test_rows_that_are_not_objects_are_errors() -> None:
    body = '[{"row": 5, "signature": "00"}, {"row": {"keyId": 1}, "signature": "00"}]'
    state = keys()
    reported(state, body)
    check = verify_batch(BATCH_ID, 1, body, state)
    assert check.errors == ["row 1: not a JSON object", "row 2: keyId is not a string"]
    assert len(check.rows) == 1


def test_an_inquiry_report_puts_every_answer_together() -> None:
    state = keys()
    state.record_batch(RecordedBatch(BATCH_ID, SIDECAR_ID, SIGNATURE, "now"))
    book = InquiryBook()
    book.open("q1", SIDECAR_ID, "Ledger", "2017-07-10T00:00:00Z", "2017-07-11T00:00:00Z")
    answer = {"inquiry": "q1", "id": BATCH_ID, "body": BODY, "total": 1, "item": 1}
    with pytest.raises(InquiryError):
        book.record_response(str(uuid.uuid4()), answer)  # only the asked sidecar may answer
    book.record_response(SIDECAR_ID, answer)
    with pytest.raises(InquiryError):
        book.record_response(SIDECAR_ID, answer)  # a repeat is ignored
    report = book.report("q1", state)
    assert report is not None
    assert (report["total"], report["received"], report["complete"]) == (1, 1, True)
    assert report["verified"] and report["errors"] == []
    assert len(report["rows"]) == 8
    with pytest.raises(InquiryError):
        book.record_response(SIDECAR_ID, {**answer, "total": 2, "item": 2})
    report = book.report("q1", state)
    assert report is not None and not report["verified"]
    assert report["errors"] == ["item 2 announces total 2, earlier 1"]
    assert book.report("nope", state) is None
