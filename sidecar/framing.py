"""The service → sidecar frame protocol: a 4-byte big-endian length, then the message.

Pure and I/O-free: feed it bytes as they arrive, get back whole messages.
"""

import struct

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_FRAME_LENGTH = 2**32 - 1


class FrameTooLarge(ValueError):
    """A frame declared a length above the configured maximum message size."""

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(f"frame declares {declared} bytes, above the limit of {limit} bytes")
        self.declared = declared
        self.limit = limit


class FrameDecoder:
    """Splits a byte stream into messages; keeps any partial frame until the rest arrives.

    A declared length above ``max_message_size`` raises :class:`FrameTooLarge` before any
    of that frame's body is buffered.
    """

    __slots__ = ("_buffer", "_max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self._buffer = bytearray()
        self._max_message_size = max_message_size

    @property
    def buffered(self) -> int:
        """Bytes held of a frame that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` from the stream and return every message it completes, in order."""
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        position = 0
        available = len(buffer)
        limit = self._max_message_size
        while available - position >= HEADER_SIZE:
            (length,) = HEADER.unpack_from(buffer, position)
            if length > limit:
                buffer.clear()
                raise FrameTooLarge(length, limit)
            end = position + HEADER_SIZE + length
            if end > available:
                break
            messages.append(bytes(buffer[position + HEADER_SIZE : end]))
            position = end
        if position:
            del buffer[:position]
        return messages


def encode_frame(message: bytes) -> bytes:
    """Frame one message for the wire."""
    if len(message) > MAX_FRAME_LENGTH:
        raise ValueError(
            f"message of {len(message)} bytes cannot be framed (max {MAX_FRAME_LENGTH})"
        )
    return HEADER.pack(len(message)) + message
