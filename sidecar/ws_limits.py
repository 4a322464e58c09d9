"""A frame size limit for websocket-client, which has none of its own.

A KMS frame longer than the limit is read off the socket and thrown away as it arrives,
never held in memory, and reported as :class:`FrameTooLarge`; the connection stays usable.
"""

from collections.abc import Callable

import websocket
from websocket._abnf import frame_buffer

READ_CHUNK = 64 * 1024


class FrameTooLarge(Exception):
    """A frame declared more payload than allowed; its bytes were skipped."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes skipped (limit {limit} bytes)")
        self.length = length


class _CappedFrameBuffer(frame_buffer):
    def __init__(self, recv: Callable[[int], bytes], skip_utf8_validation: bool, limit: int):
        super().__init__(recv, skip_utf8_validation)
        self._limit = limit

    def recv_length(self) -> None:
        super().recv_length()
        length = self.length
        if length is not None and length > self._limit:
            mask = 4 if self.has_mask() else 0
            self._skip(length + mask)
            self.clear()
            raise FrameTooLarge(length, self._limit)

    def _skip(self, count: int) -> None:
        buffered = b"".join(self.recv_buffer)
        self.recv_buffer = []
        if len(buffered) >= count:
            self.recv_buffer = [buffered[count:]]
            return
        remaining = count - len(buffered)
        while remaining > 0:
            chunk: bytes = self.recv(min(READ_CHUNK, remaining))
            remaining -= len(chunk)


def limit_frame_size(ws: websocket.WebSocket, limit: int) -> None:
    """Make ``ws`` skip (and report) frames longer than ``limit`` bytes from now on."""
    ws.frame_buffer = _CappedFrameBuffer(ws._recv, True, limit)
