"""Ways the development KMS misbehaves on request, for the sidecar's fault-injection tests.

Sans I/O: the modes, what each changes about an answer, and the garbage frames. The server
applies them (see :meth:`sidecar.devkms.server.Kms.misbehave`).

- ``normal``: a well-behaved KMS.
- ``silent``: every frame from a sidecar is dropped unread; nothing is answered or recorded.
- ``garbage``: one-shot; :func:`garbage` frames go to every connected sidecar, then ``normal``.
- ``close-after-register``: a successful ``register`` is answered, then the connection is closed
  with 1011, so the ``challenge`` is never answered.
"""

import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any

from sidecar import jsonrpc
from sidecar.devkms.protocol import Outcome, Phase
from sidecar.kms_protocol import HEALTHCHECK, INQUIRY

INTERNAL_ERROR_CLOSE = 1011
HUGE_FRAME_LENGTH = 64 << 20  # characters; far larger than any valid message
MAX_UNSOLICITED = 1000  # answers kept per connection; the oldest go first


class Mode(Enum):
    """How the KMS treats sidecar connections."""

    NORMAL = "normal"
    SILENT = "silent"
    GARBAGE = "garbage"
    CLOSE_AFTER_REGISTER = "close-after-register"


# ``garbage`` is an act, not a lasting state: there is nobody to send it to at start.
STARTABLE_MODES = (Mode.NORMAL, Mode.SILENT, Mode.CLOSE_AFTER_REGISTER)


def parse_mode(value: object) -> Mode:
    """The mode named ``value``; ValueError naming the known modes otherwise."""
    for mode in Mode:
        if value == mode.value:
            return mode
    known = ", ".join(repr(mode.value) for mode in Mode)
    raise ValueError(f"unknown mode {value!r}; one of {known}")


def drops_frames(mode: Mode) -> bool:
    """Whether frames from sidecars are dropped unread (and so never answered)."""
    return mode is Mode.SILENT


def adjust(mode: Mode, before: Phase, after: Phase, outcome: Outcome) -> Outcome:
    """What the KMS does in ``mode`` instead of ``outcome``, the well-behaved answer to a request.

    ``before`` and ``after`` are the session's phase around that request.
    """
    registered_now = before is Phase.NEW and after is Phase.REGISTERED
    if mode is Mode.CLOSE_AFTER_REGISTER and registered_now:
        reason = f"misbehaving: {mode.value}"
        return Outcome(
            outcome.reply, close=True, close_code=INTERNAL_ERROR_CLOSE, close_reason=reason
        )
    return outcome


@cache
def _huge_frame() -> str:
    return "x" * HUGE_FRAME_LENGTH


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Garbage:
    """The frames of one garbage burst, and the request ids in it that deserve an error answer."""

    frames: tuple[str, ...]
    unknown_method_id: str
    bad_inquiry_id: str

    @property
    def ids(self) -> dict[str, str]:
        """The admin API's ``garbageIds``."""
        return {"unknownMethod": self.unknown_method_id, "badInquiry": self.bad_inquiry_id}


GARBAGE_FRAME_COUNT = 8


def garbage() -> Garbage:
    """Eight frames no sidecar should choke on, with fresh ids (one burst per connection).

    Malformed JSON; an object that is not JSON-RPC; an array; a request for an unknown method;
    a response to an id never used; an inquiry with unparseable times; 64 MiB of ``x``; and a
    healthcheck notification (no id).
    """
    unknown_method_id, unknown_method = jsonrpc.request("teleport", {})
    bad_inquiry_id, bad_inquiry = jsonrpc.request(
        INQUIRY, {"inquiry": jsonrpc.new_id(), "startTime": "yesterday", "endTime": "soon"}
    )
    frames = (
        "{not json",
        _dump({"hello": "world"}),
        _dump([1, 2, 3]),
        unknown_method,
        jsonrpc.response(str(uuid.uuid4()), {"id": "x"}),
        bad_inquiry,
        _huge_frame(),
        _dump({"jsonrpc": "2.0", "method": HEALTHCHECK, "params": {"level": "ping"}}),
    )
    assert len(frames) == GARBAGE_FRAME_COUNT
    return Garbage(frames, unknown_method_id, bad_inquiry_id)


@dataclass(slots=True)
class Observations:
    """What one connection's sidecar sent back unasked: error responses and unmatched responses.

    Kept as the parsed JSON of each frame, oldest first, with the ids of the last garbage burst
    sent on the connection.
    """

    unsolicited: deque[Any] = field(default_factory=lambda: deque(maxlen=MAX_UNSOLICITED))
    garbage_ids: dict[str, str] | None = None

    def record(self, frame: str | bytes) -> None:
        """Keep one frame from the sidecar (it parsed as a JSON-RPC response already)."""
        self.unsolicited.append(json.loads(frame))

    def as_json(self) -> dict[str, Any]:
        """The admin API's per-sidecar fields."""
        return {"unsolicited": list(self.unsolicited), "garbageIds": self.garbage_ids}
