"""The actor tree in this process, against a real database and development KMS: crashes."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from sidecar import config, metrics
from sidecar.actors import peers
from sidecar.actors.kms import KmsActor
from sidecar.actors.messages import GetStatus
from sidecar.app import Sidecar
from tests.support import DevKms, free_port, send_messages, wait_until

TIMEOUT = 30


@pytest.fixture
def devkms(tmp_path: Path) -> Iterator[DevKms]:
    kms = DevKms(tmp_path)
    yield kms
    assert kms.stop() == 0


@pytest.fixture
def sidecar(
    devkms: DevKms, database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sidecar]:
    for name, value in {
        "SIDE_DATABASE_URI": database_uri,
        "SIDE_KMS__URL": devkms.url,
        "SIDE_KMS__RECONNECT_INTERVAL": "100",
        "SIDE_HOST": "127.0.0.1",
        "SIDE_PORT": str(free_port()),
        "SIDE_HEALTH_PORT": str(free_port()),
        "SIDE_SERVICE": "Supervised",
        "SIDE_BATCH_SIZE": "5",
    }.items():
        monkeypatch.setenv(name, value)
    running = Sidecar(config.load())
    running.start()
    yield running
    running.request_stop()
    running.shutdown()


def kms_status() -> dict[str, Any]:
    ref = peers.find("KmsActor")
    if ref is None:
        return {}
    status: dict[str, Any] = ref.ask(GetStatus(), timeout=2)  # type: ignore[assignment]
    return status


def test_a_crashed_kms_actor_is_restarted_and_registers_a_new_sidecar(
    sidecar: Sidecar, devkms: DevKms, mocker: MockerFixture
) -> None:
    wait_until(lambda: kms_status().get("kms") == "ready", TIMEOUT, "a first registration")
    first = peers.find("KmsActor")
    assert first is not None
    restarts_before = metrics.ACTOR_RESTARTS.labels("kms")._value.get()

    original_tick = KmsActor._tick
    faults = iter([RuntimeError("injected fault")])

    def tick_with_one_fault(self: KmsActor) -> None:
        fault = next(faults, None)
        if fault is not None:
            raise fault
        original_tick(self)

    mocker.patch.object(KmsActor, "_tick", tick_with_one_fault)

    def replaced() -> bool:
        current = peers.find("KmsActor")
        return current is not None and current.actor_urn != first.actor_urn

    wait_until(replaced, TIMEOUT, "a new KmsActor")
    wait_until(lambda: kms_status().get("kms") == "ready", TIMEOUT, "a new registration")
    registrations = devkms.sidecars("Supervised")
    assert len(registrations) == 2
    assert [s["connected"] for s in registrations].count(
        True
    ) == 1  # the crashed one's socket closed
    assert metrics.ACTOR_RESTARTS.labels("kms")._value.get() == restarts_before + 1
    assert not sidecar.stopped.is_set()

    send_messages(sidecar.settings.port, [b"after the crash %d" % i for i in range(10)])
    new_id = kms_status()["sidecarId"]
    wait_until(
        lambda: len([b for b in devkms.get("/batches") if b["sidecarId"] == new_id]) == 2,
        TIMEOUT,
        "both batches reported by the new registration",
    )
