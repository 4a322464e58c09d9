"""JSON-RPC 2.0 messages and the KMS protocol's params, without any socket."""

import json

import pytest

from sidecar import jsonrpc, kms_protocol
from sidecar.kms_protocol import ProtocolViolation, StoredBatch
from sidecar.signing import BatchSigner, RowSigner


def test_request_has_a_fresh_uuid_and_round_trips() -> None:
    first_id, text = jsonrpc.request("batch", {"id": "b", "signature": "s"})
    second_id, _ = jsonrpc.request("batch", {})
    assert first_id != second_id and len(first_id) == 36
    assert jsonrpc.parse(text) == jsonrpc.Request(first_id, "batch", {"id": "b", "signature": "s"})


def test_responses_and_errors_parse_to_their_types() -> None:
    assert jsonrpc.parse(jsonrpc.response("1", {"id": "x"})) == jsonrpc.Response("1", {"id": "x"})
    parsed = jsonrpc.parse(jsonrpc.error("2", 40001, "exists"))
    assert parsed == jsonrpc.ErrorResponse("2", 40001, "exists")
    assert json.loads(jsonrpc.error(None, -32700, "Parse error"))["id"] is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", jsonrpc.PARSE_ERROR),
        ("[]", jsonrpc.INVALID_REQUEST),
        ('{"jsonrpc":"1.0","id":1,"method":"x"}', jsonrpc.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1}', jsonrpc.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":{},"method":"x"}', jsonrpc.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","id":1,"method":7}', jsonrpc.INVALID_REQUEST),
    ],
)
def test_bad_frames_raise_with_the_right_code(text: str, code: int) -> None:
    with pytest.raises(jsonrpc.JsonRpcError) as raised:
        jsonrpc.parse(text)
    assert raised.value.code == code


def test_registration_result_is_checked() -> None:
    signer = BatchSigner(bytes(range(32)))
    good = {
        "id": "s1",
        "rowKey": "AB" * 32,
        "batchKey": signer.secret_key_hex.upper(),
        "challenge": "c",
    }
    registration = kms_protocol.parse_registration("s1", good)
    assert registration.batch_signer.public_key == signer.public_key
    for bad in (
        {**good, "id": "s2"},
        {**good, "rowKey": "zz"},
        {**good, "challenge": None},
        {**good, "batchKey": signer.secret_key_hex[:64] + "00" * 32},
        "nope",
    ):
        with pytest.raises(ProtocolViolation):
            kms_protocol.parse_registration("s1", bad)


def test_inquiry_params_need_an_id_and_iso_times() -> None:
    inquiry = kms_protocol.parse_inquiry(
        {"inquiry": "q", "startTime": "2017-07-10T15:45:32.000Z", "endTime": "2017-07-10T16:00:00Z"}
    )
    assert inquiry.start.tzinfo is not None and inquiry.end > inquiry.start
    for bad in (
        {"inquiry": "q", "startTime": "yesterday", "endTime": "2017-07-10T16:00:00Z"},
        {"startTime": "2017-07-10T15:45:32Z", "endTime": "2017-07-10T16:00:00Z"},
        {"inquiry": "q", "startTime": 5, "endTime": "2017-07-10T16:00:00Z"},
        None,
    ):
        with pytest.raises(jsonrpc.JsonRpcError) as raised:
            kms_protocol.parse_inquiry(bad)
        assert raised.value.code == jsonrpc.INVALID_PARAMS


def test_inquiry_responses_number_their_items_or_say_there_are_none() -> None:
    assert kms_protocol.inquiry_response_params("q", []) == [
        {"inquiry": "q", "total": 0, "item": 0}
    ]
    params = kms_protocol.inquiry_response_params(
        "q", [StoredBatch("a", "[1]"), StoredBatch("b", "[2]")]
    )
    assert [(p["id"], p["body"], p["item"], p["total"]) for p in params] == [
        ("a", "[1]", 1, 2),
        ("b", "[2]", 2, 2),
    ]


def test_row_signer_rejects_bad_keys() -> None:
    with pytest.raises(ValueError):
        RowSigner.from_hex("abc")
    with pytest.raises(ValueError):
        RowSigner.from_hex("00" * 20)
