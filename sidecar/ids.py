"""Random (version 4) UUIDs as strings, made in bulk: the per-event hot path needs one each.

Formatting random bytes directly is several times faster than ``str(uuid.uuid4())`` and
creates no UUID objects.
"""

import os

_VARIANT = "89ab"  # RFC 4122 variant: the top two bits of the 17th hex digit are 10


def uuid4_strings(count: int) -> list[str]:
    """``count`` new random UUIDs, lower-case, in canonical 8-4-4-4-12 form."""
    digits = os.urandom(16 * count).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        for h in (digits[i : i + 32] for i in range(0, 32 * count, 32))
    ]


def uuid4_string() -> str:
    """One new random UUID."""
    return uuid4_strings(1)[0]
