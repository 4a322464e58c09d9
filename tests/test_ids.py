"""Bulk UUID strings: valid version 4, RFC 4122 variant, canonical form, unique."""

import uuid

from sidecar.ids import uuid4_string, uuid4_strings


def test_bulk_uuids_are_canonical_random_version_4() -> None:
    made = uuid4_strings(10_000)
    assert len(set(made)) == 10_000
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    variants = {text[19] for text in made}
    assert variants == set("89ab")  # every variant digit occurs: the bits are random
    assert uuid.UUID(uuid4_string()).version == 4
