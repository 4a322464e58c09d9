"""The Batcher on its own: sequences, batch boundaries, registrations, write groups."""

import json

import pytest

from sidecar.batching import Batcher, NotRegistered
from sidecar.kms_protocol import Registration
from sidecar.signing import BatchSigner, RowSigner, verify_batch_signature


def registration(sidecar_id: str, seed: int = 1) -> Registration:
    return Registration(
        sidecar_id, RowSigner(bytes([seed]) * 32), BatchSigner(bytes([seed]) * 32), "c"
    )


def test_events_need_a_registration() -> None:
    with pytest.raises(NotRegistered):
        Batcher(4).add([b"x"], received_ms=0)


def test_batches_close_at_batch_size_and_events_keep_gapless_sequences() -> None:
    batcher = Batcher(batch_size=4)
    batcher.register(registration("s1"), now_ms=0)
    closed = batcher.add([b"m%d" % i for i in range(10)], received_ms=5)
    group = batcher.take_write_group()
    assert [event.sequence for event in group.events] == list(range(1, 11))
    assert len(closed) == 2 and batcher.open_count == 2
    assert [e.batch_id for e in group.events] == [closed[0].batch_id] * 4 + [
        closed[1].batch_id
    ] * 4 + [None] * 2
    rows = [entry["row"] for entry in json.loads(closed[1].data)]
    assert [row["sequence"] for row in rows] == [5, 6, 7, 8]
    key = registration("s1").batch_signer.public_key
    assert verify_batch_signature(key, closed[1].data.encode(), closed[1].signature)


def test_close_returns_none_for_an_empty_batch() -> None:
    batcher = Batcher(batch_size=4)
    batcher.register(registration("s1"), now_ms=0)
    assert batcher.close(now_ms=1) is None
    batcher.add([b"one"], received_ms=1)
    batch = batcher.close(now_ms=2)
    assert batch is not None and batcher.open_count == 0
    assert batcher.close(now_ms=3) is None


def test_a_new_registration_restarts_the_sequence_and_batches_may_mix_keys() -> None:
    batcher = Batcher(batch_size=4)
    batcher.register(registration("s1", seed=1), now_ms=0)
    batcher.add([b"a", b"b"], received_ms=1)
    batcher.register(registration("s2", seed=2), now_ms=2)
    [batch] = batcher.add([b"c", b"d"], received_ms=3)
    rows = [entry["row"] for entry in json.loads(batch.data)]
    assert [(row["keyId"], row["sequence"]) for row in rows] == [
        ("s1", 1),
        ("s1", 2),
        ("s2", 1),
        ("s2", 2),
    ]
    assert batch.sidecar_id == "s2"
    group = batcher.take_write_group()
    assert [s.sidecar_id for s in group.sidecars] == ["s1", "s2"]


def test_resign_uses_the_current_registration() -> None:
    batcher = Batcher(batch_size=1)
    batcher.register(registration("s1", seed=1), now_ms=0)
    [batch] = batcher.add([b"a"], received_ms=1)
    batcher.register(registration("s2", seed=2), now_ms=2)
    [resigned] = batcher.resign([batch])
    assert (resigned.batch_id, resigned.data, resigned.sidecar_id) == (
        batch.batch_id,
        batch.data,
        "s2",
    )
    key = registration("s2", seed=2).batch_signer.public_key
    assert verify_batch_signature(key, batch.data.encode(), resigned.signature)
    assert batcher.take_write_group().resigned == [resigned]
