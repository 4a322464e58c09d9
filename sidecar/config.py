"""Settings: ``settings.toml`` defaults overridden by ``SIDE_`` env vars (dynaconf), validated once.

An invalid value raises :class:`ConfigError` naming the variable, its value and what is expected.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dynaconf import Dynaconf

ENV_PREFIX = "SIDE"
SETTINGS_FILE = Path(__file__).resolve().parent.parent / "settings.toml"
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting has a value the sidecar cannot run with."""


@dataclass(frozen=True, slots=True)
class KmsSettings:
    """How to reach and keep talking to the KMS (all durations in milliseconds)."""

    url: str
    ping_interval: int
    request_timeout: int
    connect_timeout: int
    reconnect_interval: int


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings for one sidecar process."""

    database_uri: str
    embedded_db_dir: Path
    service: str
    host: str
    port: int
    health_port: int
    max_message_size: int
    max_connections: int
    max_unstored_bytes: int
    connection_unstored_bytes: int
    idle_timeout: int
    client_acks: bool
    shutdown_timeout: int
    batch_size: int
    batch_time_interval: int
    log_level: str
    kms: KmsSettings


def _env_name(key: str) -> str:
    return f"{ENV_PREFIX}_{key.replace('.', '__')}"


def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"invalid setting {_env_name(key)}={value!r}: expected {expected}")


class _Reader:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def value(self, key: str) -> Any:
        node: Any = self._raw
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(
                    f"missing setting {_env_name(key)}: no default in {SETTINGS_FILE}"
                )
            node = node[part]
        return node

    def integer(self, key: str, minimum: int, maximum: int = 2**31 - 1) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise _fail(key, value, f"an integer from {minimum} to {maximum}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise _fail(key, value, "true or false")
        return value

    def text(
        self, key: str, check: Callable[[str], bool] = bool, expected: str = "a non-empty string"
    ) -> str:
        value = self.value(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # SIDE_SERVICE=123 arrives as a number
        if not isinstance(value, str) or not check(value):
            raise _fail(key, value, expected)
        return value


def _is_database_uri(value: str) -> bool:
    if value == "":
        return True
    parts = urlsplit(value)
    return parts.scheme in ("postgres", "postgresql") and bool(parts.path.strip("/") or parts.query)


def _is_ws_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("ws", "wss") and bool(parts.hostname)


def validate(raw: Mapping[str, Any]) -> Settings:
    """Check every setting in ``raw`` (upper-case keys, as dynaconf gives them)."""
    read = _Reader(raw)
    port = (1, 65535)
    return Settings(
        database_uri=read.text(
            "DATABASE_URI",
            _is_database_uri,
            "postgres://user:pass@host:port/db, or empty for the embedded database",
        ),
        embedded_db_dir=Path(read.text("EMBEDDED_DB_DIR")).expanduser(),
        service=read.text("SERVICE"),
        host=read.text("HOST", expected="a bind address such as 0.0.0.0 or 127.0.0.1"),
        port=read.integer("PORT", *port),
        health_port=read.integer("HEALTH_PORT", *port),
        max_message_size=read.integer("MAX_MESSAGE_SIZE", 0, 2**32 - 1),
        max_connections=read.integer("MAX_CONNECTIONS", 1, 1_000_000),
        max_unstored_bytes=read.integer("MAX_UNSTORED_BYTES", 1),
        connection_unstored_bytes=read.integer("CONNECTION_UNSTORED_BYTES", 1),
        idle_timeout=read.integer("IDLE_TIMEOUT", 0),
        client_acks=read.boolean("CLIENT_ACKS"),
        shutdown_timeout=read.integer("SHUTDOWN_TIMEOUT", 0),
        batch_size=read.integer("BATCH_SIZE", 1, 1_000_000),
        batch_time_interval=read.integer("BATCH_TIME_INTERVAL", 1),
        log_level=read.text(
            "LOG_LEVEL", lambda v: v.upper() in LOG_LEVELS, f"one of {', '.join(LOG_LEVELS)}"
        ).upper(),
        kms=KmsSettings(
            url=read.text("KMS.URL", _is_ws_url, "a ws:// or wss:// URL with a host"),
            ping_interval=read.integer("KMS.PING_INTERVAL", 1),
            request_timeout=read.integer("KMS.REQUEST_TIMEOUT", 1),
            connect_timeout=read.integer("KMS.CONNECT_TIMEOUT", 1),
            reconnect_interval=read.integer("KMS.RECONNECT_INTERVAL", 1),
        ),
    )


def load() -> Settings:
    """Read ``settings.toml`` and the ``SIDE_`` env vars, and validate them."""
    if not SETTINGS_FILE.is_file():
        raise ConfigError(f"default settings file not found: {SETTINGS_FILE}")
    try:
        raw = Dynaconf(
            envvar_prefix=ENV_PREFIX,
            settings_files=[str(SETTINGS_FILE)],
            environments=False,
            merge_enabled=True,
            load_dotenv=False,
        ).as_dict()
    except Exception as exc:  # dynaconf reports unparsable TOML in env values this way
        raise ConfigError(f"cannot read settings: {exc}") from exc
    return validate(raw)
