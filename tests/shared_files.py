"""Where the project's shared reference files live (../shared beside the checkout)."""

import json
import os
from pathlib import Path
from typing import Any

SHARED_DIR = Path(
    os.environ.get("SIDECAR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")
)


def load_vectors() -> dict[str, Any]:
    """The original implementation's crypto outputs for fixed inputs."""
    return json.loads((SHARED_DIR / "vectors" / "original-crypto.json").read_text("utf-8"))


def large_message() -> bytes:
    """The original's 366 KB example message."""
    return (SHARED_DIR / "data" / "large-data.json").read_bytes()
