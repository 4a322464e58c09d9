"""The ``sidecar`` command: ``run`` the sidecar, ``devkms`` for a development KMS, ``shell``.

click gives typed options, ``--help`` text and exit codes for free; the commands stay thin.
"""

import sys
from pathlib import Path

import click

from sidecar import __version__, config, logsetup


def _load_settings() -> config.Settings:
    """Settings, or exit 2 with the reason when a value is invalid."""
    try:
        return config.load()
    except config.ConfigError as exc:
        click.echo(f"sidecar: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="sidecar")
def main() -> None:
    """Forensic logging sidecar."""


@main.command()
@click.option(
    "--dev-kms",
    is_flag=True,
    help="Also start a development KMS on the host and port of SIDE_KMS__URL, for trying it out.",
)
def run(dev_kms: bool) -> None:
    """Run the sidecar with settings from settings.toml and SIDE_* environment variables."""
    settings = _load_settings()
    logsetup.configure(settings.log_level)
    from sidecar.app import run_sidecar

    if not dev_kms:
        sys.exit(run_sidecar(settings))
    from sidecar.devkms.companion import companion_devkms

    state_path = settings.embedded_db_dir.parent / "devkms.sqlite"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with companion_devkms(settings.kms.url, state_path):
        code = run_sidecar(settings)
    sys.exit(code)


@main.command()
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    help="Log level inside the shell (the settings' level is for `run`).",
)
def shell(log_level: str) -> None:
    """Run the sidecar in-process with an interactive shell to inspect its actors."""
    settings = _load_settings()
    logsetup.configure(log_level.upper())
    from sidecar.app import Sidecar
    from sidecar.shell import run_shell

    sys.exit(run_shell(Sidecar(settings)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="WebSocket port (path /sidecar).")
@click.option("--admin-port", default=8081, show_default=True, help="HTTP admin API port.")
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file that keeps registrations and batches across restarts (default: memory).",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["normal", "silent", "close-after-register"]),
    default="normal",
    show_default=True,
    help="Misbehave from the start, for fault-injection tests (POST /misbehave changes it).",
)
def devkms(
    host: str, port: int, admin_port: int, state: Path | None, log_level: str, mode: str
) -> None:
    """Run a development KMS: registers sidecars, records and verifies their batches."""
    logsetup.configure(log_level.upper())
    from sidecar.devkms import Mode, run_devkms

    run_devkms(host=host, port=port, admin_port=admin_port, state_path=state, mode=Mode(mode))


if __name__ == "__main__":
    main()
