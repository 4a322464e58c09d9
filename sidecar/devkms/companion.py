"""A development KMS started beside ``sidecar run --dev-kms``, as a child process."""

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from loguru import logger

log = logger.bind(component="devkms")


@contextmanager
def companion_devkms(kms_url: str, state_path: Path) -> Iterator[None]:
    """Run ``sidecar devkms`` on the host and port of ``kms_url`` while the block runs.

    Its admin API listens on the next port up; its state is kept in ``state_path`` so that
    batches stored by earlier runs still verify. It is stopped with SIGTERM afterwards.
    """
    parts = urlsplit(kms_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 8080
    command = [
        sys.executable,
        "-m",
        "sidecar",
        "devkms",
        "--host",
        host,
        "--port",
        str(port),
        "--admin-port",
        str(port + 1),
        "--state",
        str(state_path),
    ]
    log.info("starting a development KMS: admin API on http://{}:{}", host, port + 1)
    child = subprocess.Popen(command, start_new_session=True)  # Ctrl-C stops the sidecar first
    try:
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
