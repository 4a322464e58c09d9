"""Keys and signatures: AES-CMAC for rows, Ed25519 for batches (lowercase hex out, any case in)."""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class KeyFormatError(ValueError):
    """A key from the KMS is not of the expected form."""


def _from_hex(name: str, text: object, sizes: tuple[int, ...]) -> bytes:
    if not isinstance(text, str):
        raise KeyFormatError(f"{name} must be a hex string, got {type(text).__name__}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFormatError(f"{name} is not hex") from None
    if len(raw) not in sizes:
        expected = " or ".join(str(size) for size in sizes)
        raise KeyFormatError(f"{name} has {len(raw)} bytes, expected {expected}")
    return raw


class RowSigner:
    """AES-CMAC of signable rows. Keys once, then copies the keyed context per message."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = CMAC(algorithms.AES(key))

    @classmethod
    def from_hex(cls, row_key: object) -> "RowSigner":
        """A signer for the KMS's ``rowKey`` (AES-128/192/256 key, hex in any case)."""
        return cls(_from_hex("rowKey", row_key, (16, 24, 32)))

    def sign(self, data: bytes) -> str:
        """Lowercase hex CMAC of ``data``."""
        context = self._keyed.copy()
        context.update(data)
        return context.finalize().hex()

    def verify(self, data: bytes, signature: str) -> bool:
        """Whether ``signature`` (hex, any case) is the CMAC of ``data``."""
        return self.sign(data) == signature.lower()


class BatchSigner:
    """Ed25519 detached signatures with the KMS's ``batchKey``."""

    __slots__ = ("_private",)

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)

    @classmethod
    def from_hex(cls, batch_key: object) -> "BatchSigner":
        """A signer for a TweetNaCl secret key (32-byte seed + 32-byte public key), or a bare seed.

        The public half, when present, must belong to the seed: a mismatch means a corrupt key.
        """
        raw = _from_hex("batchKey", batch_key, (32, 64))
        signer = cls(raw[:32])
        if len(raw) == 64 and raw[32:] != signer.public_key:
            raise KeyFormatError("batchKey's public half does not match its seed")
        return signer

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def secret_key_hex(self) -> str:
        """The key as the KMS sends it: seed then public key, 64 bytes, hex."""
        seed = self._private.private_bytes_raw()
        return (seed + self.public_key).hex()

    def sign(self, data: bytes) -> str:
        """Lowercase hex Ed25519 signature of ``data``."""
        return self._private.sign(data).hex()


def verify_batch_signature(public_key: bytes, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (hex, any case) is a valid Ed25519 signature of ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
