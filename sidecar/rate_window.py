"""A sliding-window counter: how many things happened in the last N seconds."""

import time
from collections import deque


class RateWindow:
    """Counts in ``buckets`` slices of ``window_s`` seconds; old slices fall off as time passes."""

    def __init__(self, window_s: float, buckets: int) -> None:
        self._slice_s = window_s / buckets
        self._buckets = buckets
        self._counts: deque[tuple[int, int]] = deque()

    def _slice(self) -> int:
        return int(time.monotonic() / self._slice_s)

    def add(self, count: int = 1) -> None:
        """Record ``count`` happenings now."""
        current = self._slice()
        if self._counts and self._counts[-1][0] == current:
            self._counts[-1] = (current, self._counts[-1][1] + count)
        else:
            self._counts.append((current, count))
        self._expire(current)

    def total(self) -> int:
        """Happenings within the window."""
        self._expire(self._slice())
        return sum(count for _, count in self._counts)

    def _expire(self, current: int) -> None:
        oldest = current - self._buckets + 1
        while self._counts and self._counts[0][0] < oldest:
            self._counts.popleft()
