"""Fixtures: a real PostgreSQL (SIDECAR_TEST_DATABASE_URI when set, else an embedded one)."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from tests.e2e import SidecarLauncher, start_devkms
from tests.support import DevKms

TEST_DATABASE_ENV = "SIDECAR_TEST_DATABASE_URI"


@pytest.fixture(scope="session")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the whole run: the machine's if configured, else embedded."""
    configured = os.environ.get(TEST_DATABASE_ENV)
    if configured:
        yield configured
        return
    from sidecar.embedded_db import start

    uri, server = start(Path(tmp_path_factory.mktemp("pg")) / "data")
    yield uri
    server.cleanup()


def _with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def database_uri(server_uri: str) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    name = f"sidecar_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_uri)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_uri, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def devkms(tmp_path: Path) -> Iterator[DevKms]:
    """A development KMS process for one test; it must stop cleanly."""
    kms = start_devkms(tmp_path)
    yield kms
    assert kms.stop() == 0, kms.process.output


@pytest.fixture
def start_sidecar(database_uri: str, tmp_path: Path) -> Iterator[SidecarLauncher]:
    """Starts ``sidecar run`` processes on a fresh database; stops them after the test."""
    launcher = SidecarLauncher(database_uri, tmp_path)
    yield launcher
    launcher.stop_all()
