"""``sidecar shell``: the sidecar runs in-process and its actors answer at the prompt."""

import os
import subprocess
from pathlib import Path

from tests.support import DevKms, free_port, sidecar_command

SCRIPT = """\
print("SERVING", wait_serving(60))
print("KMS-STATE", ask("KmsActor", m.GetStatus())["kms"])
print("ACTORS", sorted(line.split()[0] for line in actors()))
print("DATABASE", status()["StoreActor"]["database"])
"""


def test_shell_inspects_the_running_actors_and_stops_cleanly(
    tmp_path: Path, database_uri: str
) -> None:
    kms = DevKms(tmp_path)
    try:
        env = {
            "SIDE_DATABASE_URI": database_uri,
            "SIDE_KMS__URL": kms.url,
            "SIDE_HOST": "127.0.0.1",
            "SIDE_PORT": str(free_port()),
            "SIDE_HEALTH_PORT": str(free_port()),
        }
        result = subprocess.run(
            sidecar_command("shell"),
            input=SCRIPT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
    finally:
        assert kms.stop() == 0
    assert result.returncode == 0, result.stderr
    assert "SERVING True" in result.stdout and "KMS-STATE ready" in result.stdout
    assert (
        "ACTORS ['BatchActor', 'KmsActor', 'ListenerActor', 'StoreActor', 'Supervisor']"
        in result.stdout
    )
    assert "DATABASE reachable" in result.stdout
