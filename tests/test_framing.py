"""The frame decoder on its own: split reads, many frames per read, limits."""

import pytest

from sidecar.framing import FrameDecoder, FrameTooLarge, encode_frame
from tests.shared_files import large_message


def test_frames_split_at_every_byte_boundary_come_out_whole_and_in_order() -> None:
    messages = [b"first", b"", "zweite \u00fc".encode(), b"x" * 300]
    stream = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder(max_message_size=1024)
    out: list[bytes] = []
    for byte in stream:
        out += decoder.feed(bytes([byte]))
    assert out == messages
    assert decoder.buffered == 0


def test_many_frames_in_one_read_and_a_partial_tail() -> None:
    decoder = FrameDecoder(max_message_size=1024)
    stream = encode_frame(b"a") + encode_frame(b"bb") + encode_frame(b"ccc")
    assert decoder.feed(stream[:-1]) == [b"a", b"bb"]
    assert decoder.buffered == 6
    assert decoder.feed(stream[-1:]) == [b"ccc"]


def test_zero_length_frames_are_empty_messages() -> None:
    assert FrameDecoder(16).feed(encode_frame(b"") * 3) == [b"", b"", b""]


def test_declared_length_above_limit_fails_before_buffering_the_body() -> None:
    decoder = FrameDecoder(max_message_size=10)
    assert decoder.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    with pytest.raises(FrameTooLarge) as raised:
        decoder.feed((11).to_bytes(4, "big") + b"partial")
    assert (raised.value.declared, raised.value.limit) == (11, 10)
    assert decoder.buffered == 0


def test_length_is_unsigned_big_endian() -> None:
    with pytest.raises(FrameTooLarge) as raised:
        FrameDecoder(max_message_size=2**31).feed(b"\xff\xff\xff\xff")
    assert raised.value.declared == 2**32 - 1


def test_the_large_example_message_round_trips() -> None:
    message = large_message()
    stream = encode_frame(message) * 2
    decoder = FrameDecoder(max_message_size=len(message))
    out = decoder.feed(stream[:100_000]) + decoder.feed(stream[100_000:])
    assert out == [message, message]
