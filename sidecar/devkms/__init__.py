"""A development KMS: the KMS side of SPEC §5 over a real WebSocket, plus an HTTP admin API.

Used by the end-to-end tests, the README and docker-compose in place of the central KMS.
"""

from sidecar.devkms.misbehave import Mode
from sidecar.devkms.runner import run_devkms

__all__ = ["Mode", "run_devkms"]
