"""Schema migrations: numbered SQL files applied in order, each once, all in one transaction.

A 40-line runner instead of a migration framework: the schema is small, the first migration
must adopt tables the original created (knex kept its own bookkeeping), and an advisory lock
makes concurrent starts against one database safe without another connection or dependency.
"""

from importlib.resources import files
from typing import Any

LOCK_KEY = 0x51DECA4  # pg_advisory_xact_lock key: one migrator at a time per database

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS sidecar_migrations (
    "name" text PRIMARY KEY,
    "applied" timestamptz NOT NULL DEFAULT now()
)
"""


def available() -> list[tuple[str, str]]:
    """(name, SQL) of every migration shipped with the package, in order."""
    scripts = [entry for entry in files(__package__).iterdir() if entry.name.endswith(".sql")]
    return [
        (entry.name, entry.read_text("utf-8")) for entry in sorted(scripts, key=lambda e: e.name)
    ]


def migrate(connection: Any) -> list[str]:
    """Apply the migrations this database lacks; return their names."""
    applied_now: list[str] = []
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        cursor.execute(_CREATE_LEDGER)
        cursor.execute('SELECT "name" FROM sidecar_migrations')
        done = {row[0] for row in cursor.fetchall()}
        for name, sql in available():
            if name in done:
                continue
            cursor.execute(sql)
            cursor.execute('INSERT INTO sidecar_migrations ("name") VALUES (%s)', (name,))
            applied_now.append(name)
    return applied_now
