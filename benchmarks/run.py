"""End-to-end benchmark of the sidecar: real processes, real PostgreSQL, real TCP.

    python benchmarks/run.py                  # full run (several minutes)
    python benchmarks/run.py --quick          # a few seconds; what CI runs
    python benchmarks/run.py --only latency --json /tmp/bench.json

Every scenario gets a fresh database and fresh ``sidecar devkms`` and ``sidecar run`` processes,
started as a user would. The exit code is 0 when every scenario stored and acknowledged each
message exactly once, 1 otherwise (the figures themselves are never judged).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg2  # noqa: E402

from sidecar import __version__, migrations  # noqa: E402
from tests.support import DevKms, Process, free_port, http_json, sidecar_command  # noqa: E402
from tests.support import wait_until as _wait_until  # noqa: E402

DEFAULT_SERVER_URI = "postgres://postgres@127.0.0.1:5432/postgres"
SERVER_URI_ENV = "SIDECAR_BENCH_DATABASE_URI"
SHARED_DIR_ENV = "SIDECAR_SHARED_DIR"
BATCH_SIZE = 64
BATCH_TIME_INTERVAL_MS = 200
SMALL = 200
MEDIUM = 10 * 1024
CHUNK_BYTES = 1 << 20  # bytes per sendall: many frames at once, so the client is not the limit
POLL_S = 0.05
STALL_CHECK_S = 1.0  # full counts while work is pending: only this often (they scan events)
RSS_SAMPLE_S = 0.05
PACE_S = 0.01  # steady load: one small burst every 10 ms
START_TIMEOUT_S = 60
MiB = 1024 * 1024
SCENARIOS = ("throughput-1", "throughput-8", "bytes-10k", "bytes-large", "latency", "flood")


@dataclass(frozen=True)
class Sizes:
    """How much each scenario sends."""

    small: int  # 200 B messages, each throughput run
    medium: int  # 10 KB messages
    large: int  # the 362 KB example message
    flood: int  # 200 B messages over 8 connections, for peak RSS
    latency_s: float  # steady-load phase
    reference_s: float  # the COPY reference
    stall_s: float  # give up when nothing moves in the database for this long


FULL = Sizes(300_000, 20_000, 300, 1_000_000, 10.0, 3.0, 60.0)
QUICK = Sizes(5_000, 500, 20, 20_000, 1.0, 0.3, 20.0)


@dataclass
class Row:
    """One line of the result table."""

    scenario: str
    figure: float
    unit: str
    ratio: float | None = None  # events/s of the scenario ÷ reference rows/s


@dataclass
class Outcome:
    """Everything one run found: table rows, details, and what went wrong."""

    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class BenchmarkFailure(RuntimeError):
    """A scenario could not complete (a process died, nothing moved, a message went missing)."""


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``tests.support.wait_until``, raising :class:`BenchmarkFailure` instead of an assert."""
    try:
        return _wait_until(condition, timeout, what)
    except AssertionError as exc:
        raise BenchmarkFailure(str(exc)) from None


# --- PostgreSQL --------------------------------------------------------------------------------


def with_database(uri: str, name: str) -> str:
    """``uri`` pointing at database ``name`` on the same server."""
    return urlunsplit(urlsplit(uri)._replace(path=f"/{name}"))


def reachable(uri: str) -> bool:
    """Whether a PostgreSQL server answers at ``uri``."""
    try:
        psycopg2.connect(uri, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


@contextlib.contextmanager
def postgres_server(uri: str, work_dir: Path) -> Iterator[str]:
    """The server at ``uri``, or an embedded one when that is not reachable."""
    if reachable(uri):
        yield uri
        return
    print(f"{uri} is not reachable: starting an embedded PostgreSQL", file=sys.stderr)
    from sidecar.embedded_db import start

    embedded_uri, server = start(work_dir / "pgdata")
    try:
        yield embedded_uri
    finally:
        server.cleanup()


def admin_query(uri: str, sql: str) -> Any:
    """The first column of the first row of ``sql`` (autocommit)."""
    connection = psycopg2.connect(uri)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else row[0]
    finally:
        connection.close()


@contextlib.contextmanager
def fresh_database(server_uri: str) -> Iterator[str]:
    """A new empty database ``bench_<random>``, dropped (WITH FORCE) afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin_query(server_uri, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_uri, name)
    finally:
        admin_query(server_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Counts:
    """The sidecar's database as the acknowledgement check sees it."""

    events: int
    unbatched: int
    unacknowledged: int

    def settled(self, expected: int) -> bool:
        """Every expected event stored, in a batch, and every batch acknowledged."""
        return self.events >= expected and self.unbatched == 0 and self.unacknowledged == 0


_PENDING_SQL = (
    'SELECT EXISTS (SELECT 1 FROM events WHERE "batchId" IS NULL) '
    'OR EXISTS (SELECT 1 FROM batches WHERE "acknowledged" IS NULL)'
)
_COUNTS_SQL = (
    'SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM events WHERE "batchId" IS NULL), '
    '(SELECT count(*) FROM batches WHERE "acknowledged" IS NULL)'
)


class Watcher:
    """Polls the sidecar's database until every event sent is stored and acknowledged."""

    def __init__(self, database_uri: str) -> None:
        self._connection = psycopg2.connect(database_uri)
        self._connection.autocommit = True
        self.queries = 0  # each one a committed transaction in pg_stat_database

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def _one(self, sql: str) -> tuple[Any, ...]:
        self.queries += 1
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            row: tuple[Any, ...] = cursor.fetchone()
            return row

    def counts(self) -> Counts:
        """Events, events without a batch, batches not acknowledged (one snapshot)."""
        return Counts(*self._one(_COUNTS_SQL))

    def _pending(self) -> bool:
        """A cheap pre-check (index look-ups): is anything still unbatched or unacknowledged?"""
        return bool(self._one(_PENDING_SQL)[0])

    def wait_settled(self, expected: int, sidecar: Process, stall_s: float) -> tuple[float, Counts]:
        """Poll until ``Counts.settled``; return the monotonic time it first held and the counts.

        Fails when the sidecar exits or nothing changes in the database for ``stall_s``.
        """
        last = counts = Counts(-1, -1, -1)
        last_change = last_count = time.monotonic()
        while True:
            now = time.monotonic()
            pending = self._pending()
            if not pending or now - last_count >= STALL_CHECK_S:
                counts, last_count = self.counts(), now
                if not pending and counts.settled(expected):
                    return now, counts
                if counts != last:
                    last, last_change = counts, now
            if now - last_change > stall_s:
                raise BenchmarkFailure(
                    f"nothing moved for {stall_s:.0f} s: {counts} of {expected} sent"
                )
            if not sidecar.alive():
                raise BenchmarkFailure(f"the sidecar exited ({sidecar.popen.returncode})")
            time.sleep(POLL_S)

    def wal_lsn(self) -> int:
        """The server's current WAL position, in bytes."""
        return int(self._one("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0])

    def other_backends(self) -> list[int]:
        """PostgreSQL backend pids of this database other than the watcher's own (the sidecar's)."""
        self.queries += 1
        with self._connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [row[0] for row in cursor.fetchall()]

    def server_pids(self) -> list[int]:
        """The PostgreSQL server's processes: the postmaster and all its children (if local)."""
        with contextlib.suppress(psutil.Error):
            postmaster = psutil.Process(self._one("SELECT pg_backend_pid()")[0]).parent()
            if postmaster is not None:
                return [postmaster.pid, *(child.pid for child in postmaster.children())]
        return []

    def duplicates_and_missing(self, expected: int, distinct_payloads: bool) -> tuple[int, int]:
        """(duplicated, missing) events: by distinct message when each payload is unique."""
        if distinct_payloads:
            total, distinct = self._one("SELECT count(*), count(DISTINCT md5(message)) FROM events")
            return total - distinct, max(0, expected - distinct)
        (total,) = self._one("SELECT count(*) FROM events")
        return max(0, total - expected), max(0, expected - total)


# --- processes ---------------------------------------------------------------------------------


class _DevKms(DevKms):
    """``tests.support.DevKms`` that stops its process when it fails to come up."""

    def __init__(self, log_dir: Path) -> None:
        try:
            super().__init__(log_dir, start_timeout=START_TIMEOUT_S)
        except BaseException:
            if hasattr(self, "process"):
                self.process.stop()
            raise


@dataclass
class Rig:
    """One scenario's processes and database."""

    kms: DevKms
    sidecar: Process
    port: int
    health_port: int
    database_uri: str

    @property
    def pid(self) -> int:
        """Process id of ``sidecar run`` itself."""
        return self.sidecar.popen.pid

    def metrics_text(self) -> str:
        """The sidecar's Prometheus exposition at ``/metrics``."""
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text: str = response.read().decode("utf-8")
            return text


def sidecar_env(database_uri: str, kms_url: str, port: int, health_port: int) -> dict[str, str]:
    """The environment a user would set for ``sidecar run``."""
    return {
        "SIDE_DATABASE_URI": database_uri,
        "SIDE_SERVICE": "Benchmark",
        "SIDE_HOST": "127.0.0.1",
        "SIDE_PORT": str(port),
        "SIDE_HEALTH_PORT": str(health_port),
        "SIDE_KMS__URL": kms_url,
        "SIDE_BATCH_SIZE": str(BATCH_SIZE),
        "SIDE_BATCH_TIME_INTERVAL": str(BATCH_TIME_INTERVAL_MS),
        "SIDE_LOG_LEVEL": "WARNING",
    }


def wait_serving(sidecar: Process, health_url: str) -> None:
    """Wait for ``/health`` to answer 200; fail at once if the sidecar exits meanwhile."""

    def done() -> bool:
        return not sidecar.alive() or http_json("GET", health_url, timeout=2)[0] == 200

    wait_until(done, START_TIMEOUT_S, "the sidecar to report healthy")
    if not sidecar.alive():
        raise BenchmarkFailure(f"the sidecar exited:\n{sidecar.output[-3000:]}")


def database_stats(server_uri: str, database_uri: str) -> dict[str, int]:
    """The database's lifetime counters from ``pg_stat_database`` (complete once clients left)."""
    name = urlsplit(database_uri).path.lstrip("/")
    columns = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
    connection = psycopg2.connect(server_uri)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = %s", (name,)
            )
            row = cursor.fetchone()
    finally:
        connection.close()
    return dict(zip(columns, row, strict=True)) if row else {}


@contextlib.contextmanager
def running_sidecar(server_uri: str, log_dir: Path, outcome: Outcome, name: str) -> Iterator[Rig]:
    """A fresh database, a development KMS and ``sidecar run``; all stopped and dropped after.

    Records the database's ``pg_stat_database`` counters in ``outcome.details[name]``.
    """
    with fresh_database(server_uri) as database_uri:
        stopped = False
        kms = _DevKms(log_dir)
        try:
            port, health_port = free_port(), free_port()
            env = sidecar_env(database_uri, kms.url, port, health_port)
            sidecar = Process(sidecar_command("run"), env, log_dir / f"sidecar-{port}.log")
            try:
                health = f"http://127.0.0.1:{health_port}/health"
                wait_serving(sidecar, health)
                yield Rig(kms, sidecar, port, health_port, database_uri)
            finally:
                code = sidecar.stop(timeout=60)
                if code != 0:
                    outcome.failures.append(f"sidecar exited {code}; log: {sidecar.log_path}")
        finally:
            kms.stop()
            stopped = True
        if stopped:
            stats = database_stats(server_uri, database_uri)
            outcome.details.setdefault(name, {})["database_stats"] = stats


# --- load client -------------------------------------------------------------------------------


def frame_header(length: int) -> bytes:
    """The 4-byte big-endian length prefix."""
    return length.to_bytes(4, "big")


def distinct_frames(count: int, size: int, connection: int, start: int = 0) -> list[bytes]:
    """``count`` framed messages of exactly ``size`` bytes, each distinct (a counter in it)."""
    if size < 30:
        raise ValueError("messages must have at least 30 bytes")
    prefix = b'{"c":%03d,"n":%09d,"p":"'
    padding = b"x" * (size - 30) + b'"}'
    head = frame_header(size)
    return [head + prefix % (connection, n) + padding for n in range(start, start + count)]


def chunked(frames: list[bytes], chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """Join frames into buffers of about ``chunk_bytes`` each, for few large ``sendall`` calls."""
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        pending.append(frame)
        size += len(frame)
        if size >= chunk_bytes:
            chunks.append(b"".join(pending))
            pending, size = [], 0
    if pending:
        chunks.append(b"".join(pending))
    return chunks


def distinct_load(total: int, size: int, connections: int) -> list[list[bytes]]:
    """Pre-built send buffers: ``total`` distinct messages spread over ``connections``."""
    share, extra = divmod(total, connections)
    load = []
    start = 0
    for connection in range(connections):
        count = share + (1 if connection < extra else 0)
        load.append(chunked(distinct_frames(count, size, connection, start)))
        start += count
    return load


@dataclass(frozen=True)
class Sent:
    """When the first byte went out and when the last ``sendall`` returned (monotonic)."""

    started: float
    finished: float


def send_concurrently(port: int, load: list[list[bytes]]) -> Sent:
    """One thread and one TCP connection per element of ``load``, released together."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=300) for _ in load]
    barrier = threading.Barrier(len(load) + 1)
    errors: list[BaseException] = []

    def send(sock: socket.socket, chunks: list[bytes]) -> None:
        try:
            barrier.wait()
            for chunk in chunks:
                sock.sendall(chunk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            sock.close()

    threads = [
        threading.Thread(target=send, args=(sock, chunks), daemon=True)
        for sock, chunks in zip(socks, load, strict=True)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchmarkFailure(f"sending failed: {errors[0]!r}")
    return Sent(started, time.monotonic())


def send_paced(port: int, frames: list[bytes], rate: float) -> Sent:
    """Send ``frames`` on one connection at ``rate`` frames/s, a small burst every ``PACE_S``."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        started = time.monotonic()
        sent = 0
        while sent < len(frames):
            due = min(len(frames), int(rate * (time.monotonic() - started)) + 1)
            if due > sent:
                sock.sendall(b"".join(frames[sent:due]))
                sent = due
            time.sleep(PACE_S)
        return Sent(started, time.monotonic())


# --- sampling: RSS, Prometheus histograms, py-spy ---------------------------------------------


class ProcessSampler:
    """Samples a process's RSS and per-thread CPU time every ``RSS_SAMPLE_S`` in a thread.

    Only that process (no children). Thread CPU is kept per thread id, from each thread's
    first to its last sample, so threads that end during the block still count.
    """

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak_rss = self._process.memory_info().rss
        self.samples = 0
        self._baseline = self._thread_times()
        self.thread_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _thread_times(self) -> dict[int, float]:
        return {t.id: t.user_time + t.system_time for t in self._process.threads()}

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            for tid, seconds in self._thread_times().items():
                self.thread_cpu[tid] = seconds - self._baseline.get(tid, 0.0)
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self._sample()

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def cpu_times(pids: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """User + system CPU seconds so far of each process, by group name and pid."""
    times: dict[str, dict[int, float]] = {}
    for name, group in pids.items():
        times[name] = {}
        for pid in group:
            with contextlib.suppress(psutil.Error):
                cpu = psutil.Process(pid).cpu_times()
                times[name][pid] = cpu.user + cpu.system
    return times


def cpu_delta(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds used between two :func:`cpu_times`, over processes alive at both."""
    return {
        name: sum(
            seconds - before[name][pid] for pid, seconds in group.items() if pid in before[name]
        )
        for name, group in after.items()
    }


def high_water_rss(pid: int) -> int | None:
    """The kernel's peak RSS of ``pid`` (VmHWM), in bytes, if readable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


Histogram = dict[float, float]  # upper bound ("le") → cumulative count


def parse_histogram(text: str, name: str) -> Histogram:
    """Cumulative bucket counts of histogram ``name`` from Prometheus text (summed over labels)."""
    buckets: Histogram = {}
    marker = f"{name}_bucket{{"
    for line in text.splitlines():
        if not line.startswith(marker):
            continue
        labels, _, value = line[len(marker) :].rpartition("} ")
        for label in labels.split(","):
            key, _, quoted = label.partition("=")
            if key.strip() == "le":
                bound = float(quoted.strip().strip('"'))
                buckets[bound] = buckets.get(bound, 0.0) + float(value.split()[0])
    return buckets


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of metric ``name`` (any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            total += float(line.rpartition(" ")[2])
    return total


SIDECAR_COUNTERS = {
    "socket_reads": "sidecar_commit_latency_seconds_count",
    "events_received": "sidecar_events_received_total",
    "batches_closed": "sidecar_batches_closed_total",
}


def histogram_delta(after: Histogram, before: Histogram) -> Histogram:
    """Observations made between two snapshots."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile(histogram: Histogram, q: float) -> float | None:
    """The ``q`` quantile by linear interpolation within buckets (as PromQL's histogram_quantile).

    None when there are no observations; the highest finite bound when it falls in +Inf.
    """
    bounds = sorted(histogram)
    if not bounds or histogram[bounds[-1]] <= 0:
        return None
    rank = q * histogram[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = histogram[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def py_spy_path() -> str | None:
    """The py-spy executable: beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


PROFILE_RATE = 200  # py-spy samples per second


@contextlib.contextmanager
def profiled(
    pid: int, output: Path | None, gil_only: bool, native: bool
) -> Iterator[dict[str, Any]]:
    """Record ``pid`` with ``py-spy record --format raw --threads`` while the block runs.

    ``gil_only`` adds ``--gil``: only the thread holding the GIL is sampled, so samples measure
    Python CPU time. Without it, py-spy samples every thread it finds running *or runnable*,
    which on a saturated machine includes threads merely waiting for a CPU or the GIL.
    ``native`` adds ``--native``: C frames too (garbage collection, extension modules).
    Yields a dict that gets the recorded ``seconds``, ``rate`` and ``mode`` on exit.
    """
    meta: dict[str, Any] = {}
    executable = py_spy_path() if output else None
    if output is None or executable is None:
        if output is not None:
            print("py-spy not found: not profiling", file=sys.stderr)
        yield meta
        return
    args = [executable, "record", "--pid", str(pid), "--format", "raw", "--threads"]
    args += ["--rate", str(PROFILE_RATE), "--output", str(output)]
    args += ["--gil"] if gil_only else []
    args += ["--native"] if native else []
    log = output.with_suffix(".log").open("wb")
    spy = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(0.5)  # let it attach
    started = time.monotonic()
    try:
        yield meta
    finally:
        meta.update(seconds=time.monotonic() - started, rate=PROFILE_RATE)
        meta["mode"] = "gil" if gil_only else "active"
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        log.close()


# --- scenarios ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What every scenario needs."""

    server_uri: str
    log_dir: Path
    sizes: Sizes
    large_message: bytes
    outcome: Outcome
    profile_dir: Path | None
    profile_gil: bool
    profile_native: bool
    reference_rows_s: float = 0.0
    max_rate_1: float | None = None  # events/s of throughput-1, for the latency phase

    def ratio(self, events_s: float) -> float | None:
        """``events_s`` as a multiple of the reference rows/s."""
        return events_s / self.reference_rows_s if self.reference_rows_s else None


@dataclass(frozen=True)
class Delivery:
    """A load sent and waited for until every event was acknowledged."""

    messages: int
    payload_bytes: int
    seconds: float  # first send → the acknowledgement check first held
    send_seconds: float  # first send → the client's last sendall returned
    counts: Counts
    duplicated: int
    missing: int
    peak_rss: int  # of the sidecar process, sampled
    cpu: dict[str, float]  # CPU seconds during the delivery, per process group
    thread_cpu: dict[int, float]  # the sidecar's CPU seconds per thread id

    @property
    def events_s(self) -> float:
        """Events acknowledged per second, end to end."""
        return self.messages / self.seconds

    @property
    def mb_s(self) -> float:
        """Message payload megabytes (10^6 B) acknowledged per second, end to end."""
        return self.payload_bytes / self.seconds / 1e6

    @property
    def cpu_us_per_event(self) -> float:
        """CPU microseconds of the sidecar process per event."""
        return self.cpu["sidecar"] / self.messages * 1e6


def deliver(
    ctx: Context, rig: Rig, load: list[list[bytes]], messages: int, distinct: bool, name: str
) -> Delivery:
    """Send ``load`` concurrently, wait until all is acknowledged, then check for loss."""
    payload = sum(len(chunk) for chunks in load for chunk in chunks) - 4 * messages
    watcher = Watcher(rig.database_uri)
    try:
        groups = {
            "sidecar": [rig.pid],
            "sidecar's PostgreSQL backend": watcher.other_backends(),
            "PostgreSQL, all processes": watcher.server_pids(),
            "devkms": [rig.kms.process.popen.pid],
            "benchmark client": [os.getpid()],
        }
        before = cpu_times(groups)
        wal_before = watcher.wal_lsn()
        profile = ctx.profile_dir / f"{name}.txt" if ctx.profile_dir else None
        profiling = profiled(rig.pid, profile, ctx.profile_gil, ctx.profile_native)
        with profiling as profile_meta, ProcessSampler(rig.pid) as sampler:
            sent = send_concurrently(rig.port, load)
            done, counts = watcher.wait_settled(messages, rig.sidecar, ctx.sizes.stall_s)
        cpu = cpu_delta(before, cpu_times(groups))
        wal_after = watcher.wal_lsn()
        duplicated, missing = watcher.duplicates_and_missing(messages, distinct)
    finally:
        watcher.close()
    delivery = Delivery(
        messages,
        payload,
        done - sent.started,
        sent.finished - sent.started,
        counts,
        duplicated,
        missing,
        sampler.peak_rss,
        cpu,
        sampler.thread_cpu,
    )
    details = ctx.outcome.details.setdefault(name, {})
    details.update(asdict(delivery), events_s=delivery.events_s, watcher_queries=watcher.queries)
    details["wal_bytes"] = wal_after - wal_before
    with contextlib.suppress(OSError):
        text = rig.metrics_text()
        details["sidecar_metrics"] = {k: metric_total(text, v) for k, v in SIDECAR_COUNTERS.items()}
    if profile is not None:
        document = {**details, "profile": profile_meta}
        profile.with_suffix(".cpu.json").write_text(json.dumps(document, default=str))
    if duplicated or missing:
        ctx.outcome.failures.append(f"{name}: {missing} missing, {duplicated} duplicated")
    return delivery


def throughput_rows(ctx: Context, label: str, delivery: Delivery) -> None:
    """events/s with its ratio, and the sidecar's CPU per event."""
    ratio = ctx.ratio(delivery.events_s)
    ctx.outcome.rows.append(Row(label, delivery.events_s, "events/s", ratio))
    ctx.outcome.rows.append(Row(f"{label}: sidecar CPU", delivery.cpu_us_per_event, "µs/event"))


def scenario_throughput(ctx: Context, connections: int) -> None:
    """End-to-end events/s for 200 B messages over ``connections`` connections."""
    name = f"throughput-{connections}"
    count = ctx.sizes.small
    load = distinct_load(count, SMALL, connections)
    with running_sidecar(ctx.server_uri, ctx.log_dir, ctx.outcome, name) as rig:
        delivery = deliver(ctx, rig, load, count, True, name)
    throughput_rows(ctx, f"{count:,} x 200 B, {connections} conn", delivery)
    if connections == 1:
        ctx.max_rate_1 = delivery.events_s


def scenario_bytes(ctx: Context, size_name: str) -> None:
    """End-to-end MB/s for 10 KB messages, or for the 362 KB example message, on 1 connection."""
    if size_name == "10k":
        count, label = ctx.sizes.medium, "10 KB"
        load = distinct_load(count, MEDIUM, 1)
        distinct = True
    else:
        count, label = ctx.sizes.large, f"large-data.json ({len(ctx.large_message):,} B)"
        frame = frame_header(len(ctx.large_message)) + ctx.large_message
        load = [[frame] * count]  # the same example message each time: one buffer, no copies
        distinct = False
    name = f"bytes-{size_name}"
    with running_sidecar(ctx.server_uri, ctx.log_dir, ctx.outcome, name) as rig:
        delivery = deliver(ctx, rig, load, count, distinct, name)
    scenario = f"{count:,} x {label}, 1 conn"
    ctx.outcome.rows.append(Row(scenario, delivery.mb_s, "MB/s", ctx.ratio(delivery.events_s)))
    throughput_rows(ctx, scenario, delivery)


def scenario_latency(ctx: Context) -> None:
    """p50/p99 receipt→commit and receipt→acknowledgement at half the 1-connection maximum."""
    if ctx.max_rate_1 is None:
        scenario_throughput(ctx, 1)
    assert ctx.max_rate_1 is not None
    name = "latency"
    rate = ctx.max_rate_1 / 2
    count = max(1, int(rate * ctx.sizes.latency_s))
    frames = distinct_frames(count, SMALL, 0)
    with running_sidecar(ctx.server_uri, ctx.log_dir, ctx.outcome, name) as rig:
        before = rig.metrics_text()
        watcher = Watcher(rig.database_uri)
        try:
            sent = send_paced(rig.port, frames, rate)
            watcher.wait_settled(count, rig.sidecar, ctx.sizes.stall_s)
            duplicated, missing = watcher.duplicates_and_missing(count, True)
        finally:
            watcher.close()
        after = rig.metrics_text()
    if duplicated or missing:
        ctx.outcome.failures.append(f"latency: {missing} missing, {duplicated} duplicated")
    offered = count / (sent.finished - sent.started)
    details = ctx.outcome.details.setdefault(name, {})
    details.update(target_rate=rate, offered_rate=offered, sent=count)
    label = f"{offered:,.0f} events/s offered, 1 conn"
    for metric, what in (
        ("sidecar_commit_latency_seconds", "receipt → commit"),
        ("sidecar_acknowledge_latency_seconds", "receipt → KMS ack"),
    ):
        delta = histogram_delta(parse_histogram(after, metric), parse_histogram(before, metric))
        details[metric] = {str(k): v for k, v in sorted(delta.items())}
        if not delta:
            ctx.outcome.failures.append(f"latency: {metric} missing from /metrics")
        for q in (0.5, 0.99):
            value = quantile(delta, q)
            figure = float("nan") if value is None else value * 1000
            ctx.outcome.rows.append(Row(f"{what} p{q * 100:.0f}, {label}", figure, "ms"))


def scenario_flood(ctx: Context) -> None:
    """Peak RSS of ``sidecar run`` (that process only) during a flood over 8 connections."""
    name, count = "flood", ctx.sizes.flood
    load = distinct_load(count, SMALL, 8)
    with running_sidecar(ctx.server_uri, ctx.log_dir, ctx.outcome, name) as rig:
        idle_rss = psutil.Process(rig.pid).memory_info().rss
        delivery = deliver(ctx, rig, load, count, True, name)
        high_water = high_water_rss(rig.pid)
    ctx.outcome.details["flood"].update(idle_rss=idle_rss, vm_hwm=high_water)
    label = f"{count:,} x 200 B flood, 8 conn"
    ctx.outcome.rows.append(Row(f"{label}: peak RSS", delivery.peak_rss / MiB, "MiB"))
    ctx.outcome.rows.append(Row(f"{label}: RSS before", idle_rss / MiB, "MiB"))
    throughput_rows(ctx, label, delivery)
    lost = delivery.missing + delivery.duplicated
    ctx.outcome.rows.append(Row(f"{label}: missing + duplicated", lost, "events"))


_REFERENCE_COPY = (
    'COPY events ("eventId", "sidecarId", "batchId", "sequence", "message", "messageJson", '
    '"signature", "created") FROM STDIN'
)


def reference_rows_s(server_uri: str, seconds: float) -> float:
    """Rows/s one Python process COPYs into a fresh ``events`` table, 1,000 rows a transaction."""
    with fresh_database(server_uri) as uri:
        connection = psycopg2.connect(uri)
        try:
            migrations.migrate(connection)
            sidecar_id = str(uuid.uuid4())
            with connection, connection.cursor() as cursor:
                cursor.execute(
                    'INSERT INTO sidecars ("sidecarId", "serviceName", "version", "created") '
                    "VALUES (%s, 'Benchmark', %s, now())",
                    (sidecar_id, __version__),
                )
            return _copy_for(connection, sidecar_id, seconds)
        finally:
            connection.close()


def _copy_for(connection: Any, sidecar_id: str, seconds: float) -> float:
    """COPY 1,000-row transactions of 200 B messages for ``seconds``; return rows/s."""
    padding = "x" * (SMALL - 30) + '"}'
    signature = "0" * 32
    created = "2024-01-01T00:00:00.000Z"
    rows = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        lines = [
            f"{uuid.uuid4()}\t{sidecar_id}\t\\N\t{n}\t"
            f'{{"c":000,"n":{n:09d},"p":"{padding}\t\\N\t{signature}\t{created}\n'
            for n in range(rows + 1, rows + 1001)
        ]
        with connection, connection.cursor() as cursor:
            cursor.copy_expert(_REFERENCE_COPY, io.StringIO("".join(lines)))
        rows += 1000
    return rows / (time.monotonic() - started)


def run_scenario(ctx: Context, name: str) -> None:
    """Run one scenario by name, recording a failure instead of stopping the whole run."""
    actions: dict[str, Callable[[], None]] = {
        "throughput-1": lambda: scenario_throughput(ctx, 1),
        "throughput-8": lambda: scenario_throughput(ctx, 8),
        "bytes-10k": lambda: scenario_bytes(ctx, "10k"),
        "bytes-large": lambda: scenario_bytes(ctx, "large"),
        "latency": lambda: scenario_latency(ctx),
        "flood": lambda: scenario_flood(ctx),
    }
    began = time.monotonic()
    print(f"… {name}", file=sys.stderr, flush=True)
    try:
        actions[name]()
    except BenchmarkFailure as exc:
        ctx.outcome.failures.append(f"{name}: {exc}")
    except Exception as exc:
        traceback.print_exc()
        ctx.outcome.failures.append(f"{name}: {exc!r}")
    ctx.outcome.details.setdefault("seconds", {})[name] = time.monotonic() - began


# --- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model and RAM of this machine."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
    }


def source_version() -> str:
    """The checkout's commit, ``+changes`` when ``sidecar/`` differs from it (never locks git)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, env=env, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "sidecar")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+changes" if changed else commit


def header(server_uri: str, mode: str) -> dict[str, Any]:
    """Date, machine, PostgreSQL version and durability, and the exact command line."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "sidecar": __version__,
        "source": source_version(),
        "postgresql": admin_query(server_uri, "SHOW server_version"),
        "synchronous_commit": admin_query(server_uri, "SHOW synchronous_commit"),
        "fsync": admin_query(server_uri, "SHOW fsync"),
        "mode": mode,
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
    }


def format_figure(value: float) -> str:
    """Thousands separators for large figures, three significant digits for small ones."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render(head: dict[str, Any], rows: list[Row], failures: list[str]) -> str:
    """The plain-text table."""
    m = head["machine"]
    lines = [
        f"# {head['date']}  sidecar {head['sidecar']} ({head['source']})  "
        f"Python {head['python']}  mode {head['mode']}",
        f"# machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_gib']} GiB RAM",
        f"# PostgreSQL {head['postgresql']}, synchronous_commit={head['synchronous_commit']}, "
        f"fsync={head['fsync']}",
        f"# command: {head['command']}",
    ]
    table = [("scenario", "figure", "unit", "ratio to reference")]
    table += [
        (
            row.scenario,
            format_figure(row.figure),
            row.unit,
            "" if row.ratio is None else f"{row.ratio:#.3g}",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in table) for i in range(4)]
    for index, cells in enumerate(table):
        lines.append(
            f"{cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]:<{widths[2]}}  "
            f"{cells[3]:>{widths[3]}}".rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines += [
        "ratio: the scenario's events/s ÷ the reference rows/s (one Python process COPYing 200 B",
        "  rows into the same events table, 1,000 rows per transaction); MB/s rows: the same.",
        "events/s, MB/s: first send → every event stored in a batch the KMS acknowledged.",
        "RSS: the `sidecar run` process only (no children); sidecar CPU: its user + system time.",
    ]
    lines += [f"FAILED: {failure}" for failure in failures]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def shared_dir() -> Path:
    """``$SIDECAR_SHARED_DIR``, else ``<repo>/../shared``."""
    return Path(os.environ.get(SHARED_DIR_ENV) or ROOT.parent / "shared")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in total (CI)")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run this scenario only (repeatable)"
    )
    parser.add_argument(
        "--database-uri",
        default=os.environ.get(SERVER_URI_ENV, DEFAULT_SERVER_URI),
        help=f"PostgreSQL server to use (env {SERVER_URI_ENV}); an embedded one when unreachable",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument(
        "--profile", type=Path, help="record the sidecar with py-spy into this directory"
    )
    parser.add_argument(
        "--profile-all",
        action="store_true",
        help="profile every running or runnable thread instead of the GIL holder only",
    )
    parser.add_argument(
        "--profile-native", action="store_true", help="profile C frames too (py-spy --native)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep process logs on success")
    return parser.parse_args(argv)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def benchmark(args: argparse.Namespace, work_dir: Path) -> tuple[dict[str, Any], Outcome]:
    """Run the reference and the chosen scenarios; return the header and the outcome."""
    sizes = QUICK if args.quick else FULL
    large = (shared_dir() / "data" / "large-data.json").read_bytes()
    outcome = Outcome()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with postgres_server(args.database_uri, work_dir) as server_uri:
        head = header(server_uri, "quick" if args.quick else "full")
        ctx = Context(
            server_uri,
            work_dir,
            sizes,
            large,
            outcome,
            args.profile,
            not args.profile_all,
            args.profile_native,
        )
        print("… reference", file=sys.stderr, flush=True)
        ctx.reference_rows_s = reference_rows_s(server_uri, sizes.reference_s)
        label = "reference: 1 Python process, COPY 200 B rows, 1,000/txn"
        outcome.rows.append(Row(label, ctx.reference_rows_s, "rows/s", 1.0))
        for name in args.only or SCENARIOS:
            run_scenario(ctx, name)
    return head, outcome


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write JSON if asked; 0 when no scenario failed or lost a message."""
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # even where SIGINT came in ignored
        signal.signal(signum, _interrupt)
    work_dir = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    began = time.monotonic()
    try:
        head, outcome = benchmark(args, work_dir)
    except KeyboardInterrupt:
        print(f"interrupted; logs in {work_dir}", file=sys.stderr)
        return 130
    head["seconds"] = round(time.monotonic() - began, 1)
    print(render(head, outcome.rows, outcome.failures))
    if args.json:
        document = {"header": head, "rows": [asdict(row) for row in outcome.rows]}
        document.update(details=outcome.details, failures=outcome.failures)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if outcome.failures or args.keep_logs:
        print(f"logs in {work_dir}", file=sys.stderr)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"total {head['seconds']} s", file=sys.stderr)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
