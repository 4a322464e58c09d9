"""``run_devkms``: the development KMS process, from start to a clean stop on SIGTERM/SIGINT."""

import asyncio
import signal
import sqlite3
from pathlib import Path

from loguru import logger
from websockets.asyncio.server import serve

from sidecar.devkms.admin import AdminServer
from sidecar.devkms.misbehave import Mode
from sidecar.devkms.server import WEBSOCKET_PATH, Kms, check_path
from sidecar.devkms.state import KmsState

log = logger.bind(component="devkms")

CLOSE_TIMEOUT = 2.0


def run_devkms(
    host: str,
    port: int,
    admin_port: int,
    state_path: Path | None = None,
    mode: Mode = Mode.NORMAL,
) -> None:
    """Serve the KMS WebSocket on ``host:port`` and the admin API on ``host:admin_port``.

    ``mode`` is how sidecar connections are treated at first (see :mod:`.misbehave`).

    Blocks until SIGTERM or SIGINT, then closes everything and returns. A port that cannot be
    bound or a state file that cannot be opened is logged and ends the process with status 1.
    """
    try:
        asyncio.run(_serve(host, port, admin_port, state_path, mode))
    except (OSError, sqlite3.Error) as exc:
        log.error("devkms could not start: {}", exc)
        raise SystemExit(1) from None


async def _serve(
    host: str, port: int, admin_port: int, state_path: Path | None, mode: Mode
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    state = KmsState(state_path)
    known = sum(1 for _ in state.registrations()), sum(1 for _ in state.batches())
    if state_path is not None:
        log.info("state in {}: {} registration(s), {} batch(es)", state_path, *known)
    kms = Kms(state, mode=mode)
    if mode is not Mode.NORMAL:
        log.warning("misbehaviour mode: {} from the start", mode.value)
    try:
        async with serve(
            kms.handle,
            host,
            port,
            process_request=check_path,
            max_size=None,  # inquiry answers carry whole batches, which can be large
            close_timeout=CLOSE_TIMEOUT,
        ):
            admin = AdminServer((host, admin_port), kms, loop)
            admin.start()
            log.info(
                "devkms listening on ws://{}:{}{}, admin API on http://{}:{}",
                host,
                port,
                WEBSOCKET_PATH,
                host,
                admin_port,
            )
            try:
                await stop.wait()
                log.info("devkms stopping")
            finally:
                await asyncio.to_thread(admin.shutdown)
                admin.server_close()
        log.info("devkms stopped")
    finally:
        state.close()
