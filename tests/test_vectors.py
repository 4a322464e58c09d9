"""Every case of the original's vectors, reproduced through the project's own code paths."""

from typing import Any

import pytest

from sidecar.batching import Batcher
from sidecar.framing import FrameDecoder, encode_frame
from sidecar.kms_protocol import Registration, challenge_params
from sidecar.rows import decode_message, epoch_ms, parse_timestamp, signable_row
from sidecar.signing import BatchSigner, RowSigner, verify_batch_signature
from tests.shared_files import load_vectors

VECTORS = load_vectors()
ROWS: list[dict[str, Any]] = VECTORS["rows"]


def registration() -> Registration:
    return Registration(
        VECTORS["sidecarId"],
        RowSigner.from_hex(VECTORS["rowKey"]),
        BatchSigner.from_hex(VECTORS["batchKey"]),
        VECTORS["challenge"]["challenge"],
    )


def row_time_ms(case: dict[str, Any]) -> int:
    timestamp = case["signable"].rsplit('"timestamp":"', 1)[1][:-2]
    return epoch_ms(parse_timestamp(timestamp))


@pytest.mark.parametrize("case", ROWS, ids=[case["name"] for case in ROWS])
def test_frame_to_message_to_row_to_cmac(case: dict[str, Any]) -> None:
    [raw] = FrameDecoder(max_message_size=1 << 20).feed(
        encode_frame(bytes.fromhex(case["frameHex"]))
    )
    message = decode_message(raw)
    assert message == case["message"]
    sequence = ROWS.index(case) + 1
    row = signable_row(VECTORS["sidecarId"], sequence, message, case["signable"][-26:-2])
    assert row == case["signable"]
    assert RowSigner.from_hex(VECTORS["rowKey"]).sign(row.encode()) == case["signature"]


def test_batcher_reproduces_every_row_and_the_batch() -> None:
    batcher = Batcher(batch_size=len(ROWS))
    batcher.register(registration(), now_ms=0)
    closed = []
    for case in ROWS:
        closed += batcher.add([bytes.fromhex(case["frameHex"])], received_ms=row_time_ms(case))
    events = batcher.take_write_group().events
    assert [event.signature for event in events] == [case["signature"] for case in ROWS]
    assert [event.message for event in events] == [case["message"] for case in ROWS]
    [batch] = closed
    assert batch.data == VECTORS["batch"]["data"]
    assert batch.signature == VECTORS["batch"]["signature"]
    assert all(event.batch_id == batch.batch_id for event in events)


def test_batch_signature_verifies_with_the_public_key() -> None:
    public_key = bytes.fromhex(VECTORS["publicKey"])
    data = VECTORS["batch"]["data"].encode()
    assert verify_batch_signature(public_key, data, VECTORS["batch"]["signature"])
    assert verify_batch_signature(public_key, data, VECTORS["batch"]["signature"].upper())
    assert not verify_batch_signature(public_key, data + b" ", VECTORS["batch"]["signature"])


def test_batch_key_seed_and_upper_case_keys() -> None:
    from_seed = BatchSigner.from_hex(VECTORS["batchKeySeed"])
    from_upper = BatchSigner.from_hex(VECTORS["batchKey"].upper())
    assert from_seed.public_key.hex() == VECTORS["publicKey"]
    assert from_upper.secret_key_hex == VECTORS["batchKey"]
    row_upper = RowSigner.from_hex(VECTORS["rowKey"].upper())
    assert row_upper.sign(ROWS[0]["signable"].encode()) == ROWS[0]["signature"]


def test_challenge_answers() -> None:
    reg = registration()
    answer = challenge_params(reg.challenge, reg.row_signer, reg.batch_signer)
    assert answer == {
        "rowSignature": VECTORS["challenge"]["rowSignature"],
        "batchSignature": VECTORS["challenge"]["batchSignature"],
    }


@pytest.mark.parametrize(
    "case", VECTORS["cmacKnownAnswers"], ids=lambda c: f"{c['keyHex'][:6]}-{len(c['messageHex'])}"
)
def test_cmac_known_answers(case: dict[str, str]) -> None:
    signer = RowSigner.from_hex(case["keyHex"])
    assert signer.sign(bytes.fromhex(case["messageHex"])) == case["cmac"]
