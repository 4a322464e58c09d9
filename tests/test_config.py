"""Settings: defaults, SIDE_ env overrides, and a clear error for every bad value."""

import subprocess

import pytest

from sidecar import config
from tests.support import sidecar_command


def test_defaults_match_the_spec() -> None:
    settings = config.load()
    assert (settings.service, settings.port, settings.health_port) == ("TestService", 5678, 6789)
    assert (settings.batch_size, settings.batch_time_interval) == (64, 300000)
    assert settings.kms == config.KmsSettings(
        "ws://localhost:8080/sidecar", 30000, 120000, 60000, 5000
    )


def test_env_vars_override_with_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDE_BATCH_SIZE", "10")
    monkeypatch.setenv("SIDE_KMS__URL", "wss://kms.example:443/sidecar")
    monkeypatch.setenv("SIDE_KMS__PING_INTERVAL", "1000")
    monkeypatch.setenv("SIDE_DATABASE_URI", "postgres://u:p@db:5432/sidecar")
    settings = config.load()
    assert settings.batch_size == 10
    assert settings.kms.url == "wss://kms.example:443/sidecar"
    assert settings.kms.ping_interval == 1000
    assert settings.kms.request_timeout == 120000  # untouched siblings keep their defaults
    assert settings.database_uri == "postgres://u:p@db:5432/sidecar"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SIDE_PORT", "abc", "an integer from 1 to 65535"),
        ("SIDE_PORT", "70000", "an integer from 1 to 65535"),
        ("SIDE_BATCH_SIZE", "0", "an integer from 1"),
        ("SIDE_KMS__URL", "http://kms/sidecar", "a ws:// or wss:// URL"),
        ("SIDE_DATABASE_URI", "mysql://x/y", "postgres://user:pass@host:port/db"),
        ("SIDE_LOG_LEVEL", "LOUD", "one of TRACE"),
        ("SIDE_KMS__REQUEST_TIMEOUT", "true", "an integer from 1"),
    ],
)
def test_bad_values_name_the_variable_value_and_expectation(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(config.ConfigError) as raised:
        config.load()
    message = str(raised.value)
    assert variable in message and expected in message


def test_sidecar_run_refuses_to_start_with_a_bad_setting() -> None:
    result = subprocess.run(
        sidecar_command("run"),
        env={"SIDE_PORT": "nope", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SIDE_PORT='nope'" in result.stderr and "expected an integer" in result.stderr
