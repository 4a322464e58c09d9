"""The development KMS: its protocol state machine alone, then the real process on real sockets."""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import pytest
import websocket

from sidecar import cli, jsonrpc
from sidecar.devkms import misbehave
from sidecar.devkms.inquiries import InquiryBook
from sidecar.devkms.misbehave import Mode
from sidecar.devkms.protocol import IssuedKeys, Outcome, Phase, Session
from sidecar.devkms.state import KmsState
from sidecar.jsonrpc import ErrorResponse, Request, Response
from sidecar.kms_protocol import (
    BATCH,
    CHALLENGE,
    HEALTHCHECK,
    ID_EXISTS,
    INQUIRY,
    INQUIRY_RESPONSE,
    INVALID_BATCH_SIGNATURE,
    INVALID_ROW_SIGNATURE,
    REGISTER,
    Registration,
    StoredBatch,
    batch_params,
    challenge_params,
    inquiry_response_params,
    parse_registration,
    register_params,
)
from sidecar.rows import batch_data, batch_entry, signable_row
from tests.shared_files import load_vectors
from tests.support import DevKms, wait_until

VECTORS = load_vectors()
START_DEADLINE = 15.0
POLL_DEADLINE = 5.0


# --- the protocol state machine, without sockets -------------------------------------------


def _vector_keys() -> IssuedKeys:
    return IssuedKeys(
        bytes.fromhex(VECTORS["rowKey"]),
        bytes.fromhex(VECTORS["batchKeySeed"]),
        VECTORS["challenge"]["challenge"],
    )


def _answer(session: Session, method: str, params: Any) -> Response | ErrorResponse:
    outcome = session.handle(Request("r1", method, params))
    assert outcome.reply is not None
    answer = jsonrpc.parse(outcome.reply)
    assert isinstance(answer, Response | ErrorResponse)
    return answer


def test_session_accepts_the_original_challenge_signatures() -> None:
    session = Session(KmsState(), InquiryBook(), keygen=_vector_keys)
    registered = _answer(session, REGISTER, register_params(VECTORS["sidecarId"], "Svc"))
    assert isinstance(registered, Response)
    assert registered.result == {
        "id": VECTORS["sidecarId"],
        "batchKey": VECTORS["batchKey"].upper(),
        "rowKey": VECTORS["rowKey"].upper(),
        "challenge": VECTORS["challenge"]["challenge"],
    }
    params = {k: VECTORS["challenge"][k].upper() for k in ("rowSignature", "batchSignature")}
    assert _answer(session, CHALLENGE, params) == Response("r1", {"status": "OK"})
    assert session.phase is Phase.READY


def test_session_refuses_out_of_order_and_closes_on_a_wrong_row_signature() -> None:
    session = Session(KmsState(), InquiryBook(), keygen=_vector_keys)
    early = _answer(session, BATCH, batch_params(str(uuid.uuid4()), "ab" * 64))
    assert isinstance(early, ErrorResponse) and early.code == jsonrpc.METHOD_NOT_FOUND
    _answer(session, REGISTER, register_params(VECTORS["sidecarId"], "Svc"))
    wrong_row = {**VECTORS["challenge"], "rowSignature": "00" * 16}
    outcome = session.handle(Request("r2", CHALLENGE, wrong_row))
    assert outcome.close
    assert outcome.reply is not None
    failure = jsonrpc.parse(outcome.reply)
    assert isinstance(failure, ErrorResponse) and failure.code == INVALID_ROW_SIGNATURE
    assert session.phase is Phase.CLOSED
    assert session.handle(Request("r3", CHALLENGE, VECTORS["challenge"])).reply is None


def test_session_never_answers_notifications_or_inquiry_responses() -> None:
    session = Session(KmsState(), InquiryBook())
    assert session.handle(Request(None, "no-such-method", {})).reply is None
    assert session.handle(Request("r1", INQUIRY_RESPONSE, {"inquiry": "x"})).reply is None


# --- the real process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevKms]:
    server = DevKms(tmp_path_factory.mktemp("devkms"))
    yield server
    assert server.stop() == 0, server.log_path.read_text()


class FakeSidecar:
    """The sidecar side of SPEC §5, driven step by step with websocket-client."""

    def __init__(self, url: str, service: str = "TestService", **options: Any) -> None:
        self.ws = websocket.create_connection(url, timeout=5, **options)
        self.service = service
        self.registration: Registration | None = None

    def send(self, method: str, params: Any) -> str:
        request_id, text = jsonrpc.request(method, params)
        self.ws.send(text)
        return request_id

    def receive(self) -> jsonrpc.Message:
        return jsonrpc.parse(self.ws.recv())

    def call(self, method: str, params: Any) -> Response | ErrorResponse:
        request_id = self.send(method, params)
        answer = self.receive()
        assert isinstance(answer, Response | ErrorResponse)
        assert answer.id == request_id
        return answer

    def register(self, sidecar_id: str | None = None) -> Registration:
        sidecar_id = sidecar_id or str(uuid.uuid4())
        answer = self.call(REGISTER, register_params(sidecar_id, self.service))
        assert isinstance(answer, Response), answer
        self.registration = parse_registration(sidecar_id, answer.result)
        return self.registration

    def ready(self) -> Registration:
        registration = self.register()
        params = challenge_params(
            registration.challenge, registration.row_signer, registration.batch_signer
        )
        answer = self.call(CHALLENGE, params)
        assert isinstance(answer, Response) and answer.result == {"status": "OK"}, answer
        return registration

    def make_batch(self, rows: list[tuple[Registration, int, str]]) -> StoredBatch:
        """A batch of ``(registration, sequence, message)`` rows, signed and reported by us."""
        assert self.registration is not None
        entries = []
        for registration, sequence, message in rows:
            row = signable_row(
                registration.sidecar_id, sequence, message, "2026-12-04T10:00:00.000Z"
            )
            entries.append(batch_entry(row, registration.row_signer.sign(row.encode())))
        batch = StoredBatch(str(uuid.uuid4()), batch_data(entries))
        signature = self.registration.batch_signer.sign(batch.data.encode())
        answer = self.call(BATCH, batch_params(batch.batch_id, signature))
        assert answer == Response(answer.id, {"id": batch.batch_id})
        return batch

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def connect(kms: DevKms) -> Iterator[Callable[..., FakeSidecar]]:
    opened: list[FakeSidecar] = []

    def open_sidecar(service: str = "TestService", **options: Any) -> FakeSidecar:
        sidecar = FakeSidecar(kms.url, service, **options)
        opened.append(sidecar)
        return sidecar

    yield open_sidecar
    for sidecar in opened:
        sidecar.close()


def _error_code(answer: jsonrpc.Message) -> int:
    assert isinstance(answer, ErrorResponse), answer
    return answer.code


def test_admin_health_unknown_paths_and_bad_bodies(kms: DevKms) -> None:
    assert kms.admin("GET", "/health") == (200, {"status": "OK"})
    assert kms.admin("GET", "/nothing-here")[0] == 404
    assert kms.admin("POST", "/inquiries", raw=b"{not json")[0] == 400
    assert kms.admin("POST", "/health")[0] == 405
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://127.0.0.1:{kms.port}/elsewhere", timeout=5)
    assert refused.value.status_code == 404


def test_register_challenge_batch_happy_path(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    sidecar = connect()
    sidecar_id = str(uuid.uuid4())
    answer = sidecar.call(REGISTER, register_params(sidecar_id, "HappyService"))
    assert isinstance(answer, Response)
    assert set(answer.result) == {"id", "batchKey", "rowKey", "challenge"}
    assert answer.result["batchKey"] == answer.result["batchKey"].upper()
    assert len(bytes.fromhex(answer.result["batchKey"])) == 64
    assert answer.result["rowKey"] == answer.result["rowKey"].upper()
    assert len(bytes.fromhex(answer.result["rowKey"])) == 32
    registration = sidecar.registration = parse_registration(sidecar_id, answer.result)
    params = challenge_params(
        registration.challenge, registration.row_signer, registration.batch_signer
    )
    challenge = sidecar.call(CHALLENGE, params)
    assert isinstance(challenge, Response) and challenge.result == {"status": "OK"}
    batch = sidecar.make_batch([(registration, 1, "hello")])

    status, sidecars = kms.admin("GET", "/sidecars")
    assert status == 200
    [listed] = [entry for entry in sidecars if entry["id"] == sidecar_id]
    assert listed["serviceName"] == "HappyService"
    assert listed["connected"] and listed["ready"]
    status, batches = kms.admin("GET", "/batches")
    [recorded] = [entry for entry in batches if entry["id"] == batch.batch_id]
    assert recorded["sidecarId"] == sidecar_id
    assert recorded["signature"] == registration.batch_signer.sign(batch.data.encode())


def test_a_reused_sidecar_id_gets_40001(connect: Callable[..., FakeSidecar]) -> None:
    first = connect()
    registration = first.register()
    again = first.call(REGISTER, register_params(str(uuid.uuid4()), "TestService"))
    assert _error_code(again) == jsonrpc.METHOD_NOT_FOUND  # one registration per connection
    second = connect()
    reused = second.call(REGISTER, register_params(registration.sidecar_id, "TestService"))
    assert _error_code(reused) == ID_EXISTS
    assert _error_code(second.call(REGISTER, register_params("not-a-uuid", "X"))) == -32602


def test_a_wrong_row_signature_gets_40005_and_the_socket_closes(
    connect: Callable[..., FakeSidecar],
) -> None:
    sidecar = connect()
    registration = sidecar.register()
    params = challenge_params(
        registration.challenge, registration.row_signer, registration.batch_signer
    )
    params["rowSignature"] = "00" * 16
    assert _error_code(sidecar.call(CHALLENGE, params)) == INVALID_ROW_SIGNATURE
    opcode, frame = sidecar.ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1008


def test_a_wrong_batch_signature_gets_40004_and_may_be_retried(
    connect: Callable[..., FakeSidecar],
) -> None:
    sidecar = connect()
    registration = sidecar.register()
    params = challenge_params(
        registration.challenge, registration.row_signer, registration.batch_signer
    )
    wrong = {**params, "batchSignature": "11" * 64}
    assert _error_code(sidecar.call(CHALLENGE, wrong)) == INVALID_BATCH_SIGNATURE
    retried = sidecar.call(CHALLENGE, {k: v.upper() for k, v in params.items()})
    assert isinstance(retried, Response) and retried.result == {"status": "OK"}


def test_batch_before_the_challenge_and_unknown_methods_get_32601(
    connect: Callable[..., FakeSidecar],
) -> None:
    sidecar = connect()
    early = sidecar.call(BATCH, batch_params(str(uuid.uuid4()), "ab" * 64))
    assert _error_code(early) == jsonrpc.METHOD_NOT_FOUND
    sidecar.register()
    early = sidecar.call(BATCH, batch_params(str(uuid.uuid4()), "ab" * 64))
    assert _error_code(early) == jsonrpc.METHOD_NOT_FOUND
    assert _error_code(sidecar.call("no-such-method", {})) == jsonrpc.METHOD_NOT_FOUND


def test_unparseable_and_non_jsonrpc_frames(connect: Callable[..., FakeSidecar]) -> None:
    sidecar = connect()
    sidecar.ws.send("{this is not json")
    assert json.loads(sidecar.ws.recv()) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }
    sidecar.ws.send('{"hello": "world"}')
    assert _error_code(sidecar.receive()) == jsonrpc.INVALID_REQUEST
    sidecar.ready()  # the connection still works


def test_a_batch_reported_again_already_exists_and_the_first_report_stands(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    sidecar = connect()
    registration = sidecar.ready()
    batch = sidecar.make_batch([(registration, 1, "once")])
    signature = registration.batch_signer.sign(batch.data.encode())
    again = sidecar.call(BATCH, batch_params(batch.batch_id, signature.upper()))
    assert isinstance(again, ErrorResponse) and again.code == ID_EXISTS
    other = sidecar.call(BATCH, batch_params(batch.batch_id, "cd" * 64))
    assert isinstance(other, ErrorResponse) and other.code == ID_EXISTS
    assert other.message == f"Batch id {batch.batch_id} already exists"
    recorded = [b for b in kms.admin("GET", "/batches")[1] if b["id"] == batch.batch_id]
    assert [b["signature"] for b in recorded] == [signature]


def test_healthcheck_through_the_admin_api(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    sidecar = connect()
    registration = sidecar.ready()
    path = f"/sidecars/{registration.sidecar_id}/healthcheck"
    health = {"id": registration.sidecar_id, "version": "1.0.0", "uptime": 5}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(kms.admin, "POST", path)
        request = sidecar.receive()
        assert isinstance(request, Request)
        assert request.method == HEALTHCHECK and request.params == {"level": "ping"}
        sidecar.ws.send(jsonrpc.response(request.id, health))
        assert pending.result(timeout=10) == (200, {"result": health})

        pending = pool.submit(kms.admin, "POST", path)
        request = sidecar.receive()
        assert isinstance(request, Request)
        sidecar.ws.send(jsonrpc.error(request.id, -32603, "busy"))
        status, answer = pending.result(timeout=10)
    assert status == 200 and answer["error"]["code"] == -32603
    assert kms.admin("POST", f"/sidecars/{uuid.uuid4()}/healthcheck")[0] == 404


def _inquire(kms: DevKms, sidecar: FakeSidecar, service: str) -> tuple[str, Request]:
    status, started = kms.admin(
        "POST",
        "/inquiries",
        {"serviceName": service, "startTime": "2026-12-04T00:00:00Z", "endTime": "2026-12-05"},
    )
    assert status == 202, started
    request = sidecar.receive()
    assert isinstance(request, Request) and request.method == INQUIRY
    assert request.params == {
        "inquiry": started["inquiry"],
        "startTime": "2026-12-04T00:00:00Z",
        "endTime": "2026-12-05",
    }
    return started["inquiry"], request


def _answer_inquiry(sidecar: FakeSidecar, inquiry_id: str, batches: list[StoredBatch]) -> None:
    for params in inquiry_response_params(inquiry_id, batches):
        sidecar.send(INQUIRY_RESPONSE, params)


def _completed_report(kms: DevKms, inquiry_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_DEADLINE
    while True:
        status, report = kms.admin("GET", f"/inquiries/{inquiry_id}")
        assert status == 200
        if report["complete"] or time.monotonic() > deadline:
            assert report["complete"], report
            return dict(report)
        time.sleep(0.02)


def test_an_inquiry_is_answered_and_verified(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    service = f"Ledger-{uuid.uuid4()}"
    earlier = connect(service)
    old = earlier.ready()
    first = earlier.make_batch([(old, 1, "first"), (old, 2, 'with "quotes" and é ✓')])
    earlier.close()
    sidecar = connect(service)
    new = sidecar.ready()
    # A batch may hold rows of an earlier registration; it is signed by the one reporting it.
    second = sidecar.make_batch([(old, 3, "late row of the old key"), (new, 1, "tab\there\x00")])

    inquiry_id, _ = _inquire(kms, sidecar, service)
    _answer_inquiry(sidecar, inquiry_id, [first, second])
    report = _completed_report(kms, inquiry_id)
    assert report["verified"], report
    assert (report["total"], report["received"]) == (2, 2)
    assert [(b["id"], b["item"], b["rows"], b["verified"]) for b in report["batches"]] == [
        (first.batch_id, 1, 2, True),
        (second.batch_id, 2, 2, True),
    ]
    assert [(r["keyId"], r["sequence"], r["message"]) for r in report["rows"]] == [
        (old.sidecar_id, 1, "first"),
        (old.sidecar_id, 2, 'with "quotes" and é ✓'),
        (old.sidecar_id, 3, "late row of the old key"),
        (new.sidecar_id, 1, "tab\there\x00"),
    ]
    assert report["rows"][0]["timestamp"] == "2026-12-04T10:00:00.000Z"


def test_a_tampered_inquiry_answer_is_reported_unverified(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    service = f"Ledger-{uuid.uuid4()}"
    sidecar = connect(service)
    registration = sidecar.ready()
    batch = sidecar.make_batch([(registration, 1, "pay 10 to alice")])
    tampered = StoredBatch(batch.batch_id, batch.data.replace("pay 10", "pay 99"))
    inquiry_id, _ = _inquire(kms, sidecar, service)
    _answer_inquiry(sidecar, inquiry_id, [tampered])
    report = _completed_report(kms, inquiry_id)
    assert not report["verified"]
    [checked] = report["batches"]
    assert not checked["verified"]
    assert "batch signature does not match the body" in checked["errors"]
    assert "row 1: row signature does not match the row" in checked["errors"]
    assert report["rows"][0]["message"] == "pay 99 to alice"


def test_an_inquiry_with_nothing_to_return(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    service = f"Quiet-{uuid.uuid4()}"
    sidecar = connect(service)
    sidecar.ready()
    inquiry_id, _ = _inquire(kms, sidecar, service)
    _answer_inquiry(sidecar, inquiry_id, [])
    report = _completed_report(kms, inquiry_id)
    assert (report["total"], report["received"], report["verified"]) == (0, 0, True)
    assert report["batches"] == [] and report["rows"] == []


def test_inquiries_need_a_ready_sidecar_and_valid_times(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    times = {"startTime": "2026-12-04T00:00:00Z", "endTime": "2026-12-05T00:00:00Z"}
    service = f"Unready-{uuid.uuid4()}"
    connect(service).register()  # registered, never challenged: not ready
    assert kms.admin("POST", "/inquiries", {"serviceName": service, **times})[0] == 404
    bad_time = {"serviceName": service, "startTime": "yesterday", "endTime": "now"}
    assert kms.admin("POST", "/inquiries", bad_time)[0] == 400
    assert kms.admin("POST", "/inquiries", times)[0] == 400
    assert kms.admin("GET", f"/inquiries/{uuid.uuid4()}")[0] == 404


def test_the_admin_api_can_drop_every_connection(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    sidecar = connect()
    registration = sidecar.ready()
    status, answer = kms.admin("POST", "/connections/close")
    assert status == 200 and answer["closed"] >= 1
    opcode, frame = sidecar.ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1012
    sidecar.ws.shutdown()  # type: ignore[no-untyped-call]  # the close handshake was answered; drop the TCP connection too
    listed = {s["id"]: s for s in kms.admin("GET", "/sidecars")[1]}
    deadline = time.monotonic() + POLL_DEADLINE
    while listed[registration.sidecar_id]["connected"] and time.monotonic() < deadline:
        time.sleep(0.02)
        listed = {s["id"]: s for s in kms.admin("GET", "/sidecars")[1]}
    assert not listed[registration.sidecar_id]["connected"]


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "kms.sqlite"
    first = DevKms(tmp_path, state=state)
    try:
        sidecar = FakeSidecar(first.url)
        registration = sidecar.ready()
        batch = sidecar.make_batch([(registration, 1, "remember me")])
        sidecar.close()
    finally:
        assert first.stop() == 0, first.log_path.read_text()

    second = DevKms(tmp_path, state=state)
    try:
        sidecar = FakeSidecar(second.url)
        reused = sidecar.call(REGISTER, register_params(registration.sidecar_id, "TestService"))
        assert _error_code(reused) == ID_EXISTS
        sidecar.close()
        [kept] = [b for b in second.admin("GET", "/batches")[1] if b["id"] == batch.batch_id]
        assert kept["sidecarId"] == registration.sidecar_id
        listed = {s["id"]: s for s in second.admin("GET", "/sidecars")[1]}
        assert not listed[registration.sidecar_id]["connected"]

        # The old keys still verify: the new sidecar returns the old batch for an inquiry.
        sidecar = FakeSidecar(second.url)
        sidecar.ready()
        signature = registration.batch_signer.sign(batch.data.encode())
        again = sidecar.call(BATCH, batch_params(batch.batch_id, signature))
        assert _error_code(again) == ID_EXISTS  # known across the restart
        inquiry_id, _ = _inquire(second, sidecar, "TestService")
        _answer_inquiry(sidecar, inquiry_id, [batch])
        assert _completed_report(second, inquiry_id)["verified"]
        sidecar.close()
    finally:
        assert second.stop() == 0, second.log_path.read_text()


# --- misbehaving on purpose (fault injection for the sidecar) --------------------------------


def test_close_after_register_closes_only_after_a_successful_registration() -> None:
    answer = Outcome('{"jsonrpc":"2.0","id":"r1","result":{}}')
    mode = Mode.CLOSE_AFTER_REGISTER
    closing = misbehave.adjust(mode, Phase.NEW, Phase.REGISTERED, answer)
    assert (closing.reply, closing.close, closing.close_code) == (answer.reply, True, 1011)
    assert misbehave.adjust(mode, Phase.NEW, Phase.NEW, answer) is answer  # a refused register
    assert misbehave.adjust(mode, Phase.REGISTERED, Phase.READY, answer) is answer
    assert misbehave.adjust(Mode.NORMAL, Phase.NEW, Phase.REGISTERED, answer) is answer
    assert misbehave.drops_frames(Mode.SILENT) and not misbehave.drops_frames(mode)


def test_each_garbage_burst_has_fresh_ids() -> None:
    first, second = misbehave.garbage(), misbehave.garbage()
    assert len(first.frames) == misbehave.GARBAGE_FRAME_COUNT == 8
    assert first.unknown_method_id in first.frames[3]
    assert first.bad_inquiry_id in first.frames[5]
    assert set(first.ids.values()).isdisjoint(second.ids.values())
    assert first.frames[4] != second.frames[4]  # a response to a new id every time


def test_the_cli_offers_every_startable_mode() -> None:
    [option] = [p for p in cli.devkms.params if p.name == "mode"]
    assert isinstance(option.type, click.Choice)
    assert list(option.type.choices) == [m.value for m in misbehave.STARTABLE_MODES]
    assert option.default == "normal"


@pytest.fixture
def set_mode(kms: DevKms) -> Iterator[Callable[[str], Any]]:
    """Switch the shared KMS's mode; back to normal after the test."""

    def switch(mode: str) -> Any:
        status, answer = kms.admin("POST", "/misbehave", {"mode": mode})
        assert status == 200, answer
        return answer

    yield switch
    switch("normal")


def _assert_no_answer(sidecar: FakeSidecar, within: float = 0.5) -> None:
    sidecar.ws.settimeout(within)
    with pytest.raises(websocket.WebSocketTimeoutException):
        sidecar.ws.recv()
    sidecar.ws.settimeout(5)


def test_misbehave_mode_is_reported_and_validated(kms: DevKms) -> None:
    assert kms.admin("GET", "/misbehave") == (200, {"mode": "normal"})
    status, answer = kms.admin("POST", "/misbehave", {"mode": "teleport"})
    assert status == 400 and "unknown mode 'teleport'" in answer["error"]
    assert kms.admin("POST", "/misbehave", {})[0] == 400
    assert kms.admin("POST", "/misbehave", ["silent"])[0] == 400
    assert kms.admin("POST", "/misbehave", raw=b"{not json")[0] == 400
    assert kms.admin("GET", "/misbehave") == (200, {"mode": "normal"})


def test_silent_mode_drops_requests_until_switched_back(
    kms: DevKms, connect: Callable[..., FakeSidecar], set_mode: Callable[[str], Any]
) -> None:
    sidecar = connect("Silent")
    assert set_mode("silent") == {"mode": "silent"}
    assert kms.get("/misbehave") == {"mode": "silent"}
    dropped = str(uuid.uuid4())
    sidecar.send(REGISTER, register_params(dropped, "Silent"))
    sidecar.ws.send("{not json")
    _assert_no_answer(sidecar)
    sidecar.ws.ping(b"still there?")
    opcode, frame = sidecar.ws.recv_data_frame(control_frame=True)
    assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"still there?")
    assert dropped not in {s["id"] for s in kms.get("/sidecars")}  # nothing recorded

    assert set_mode("normal") == {"mode": "normal"}
    _assert_no_answer(sidecar, 0.1)  # what came in while silent stays unanswered
    registration = sidecar.ready()
    [listed] = kms.sidecars("Silent")
    assert listed["id"] == registration.sidecar_id and listed["ready"]


def test_garbage_goes_to_every_connection_and_the_answers_are_kept(
    kms: DevKms, connect: Callable[..., FakeSidecar]
) -> None:
    sidecar = connect("Garbage", skip_utf8_validation=True)  # 64 MiB in pure Python is slow
    registration = sidecar.ready()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(kms.admin, "POST", "/misbehave", {"mode": "garbage"})
        frames = [sidecar.ws.recv() for _ in range(8)]
        status, answer = pending.result(timeout=30)
    assert status == 200 and answer["sent"] >= 1, answer
    assert answer == {"mode": "garbage", "sent": answer["sent"], "frames": 8}
    assert kms.get("/misbehave") == {"mode": "normal"}  # garbage is one-shot

    assert frames[:3] == ["{not json", '{"hello":"world"}', "[1,2,3]"]
    unknown, stray, inquiry = (json.loads(frame) for frame in frames[3:6])
    assert unknown == {"jsonrpc": "2.0", "id": unknown["id"], "method": "teleport", "params": {}}
    assert stray == {"jsonrpc": "2.0", "id": stray["id"], "result": {"id": "x"}}
    assert inquiry == {
        "jsonrpc": "2.0",
        "id": inquiry["id"],
        "method": "inquiry",
        "params": {
            "inquiry": inquiry["params"]["inquiry"],
            "startTime": "yesterday",
            "endTime": "soon",
        },
    }
    for request_id in (unknown["id"], stray["id"], inquiry["id"], inquiry["params"]["inquiry"]):
        uuid.UUID(request_id)
    assert len(frames[6]) == 64 << 20
    assert json.loads(frames[7]) == {
        "jsonrpc": "2.0",
        "method": "healthcheck",
        "params": {"level": "ping"},
    }

    answers = [
        jsonrpc.error(unknown["id"], jsonrpc.METHOD_NOT_FOUND, "Method not found: teleport"),
        jsonrpc.error(inquiry["id"], jsonrpc.INVALID_PARAMS, "Invalid params: startTime"),
        jsonrpc.response(stray["id"], {"huh": True}),  # answers to nothing are kept too
    ]
    for text in answers:
        sidecar.ws.send(text)
    sidecar.make_batch([(registration, 1, "still working")])  # and the connection is normal

    def listed() -> dict[str, Any]:
        [entry] = kms.sidecars("Garbage")
        return dict(entry)

    entry = wait_until(
        lambda: len((e := listed())["unsolicited"]) == 3 and e, POLL_DEADLINE, "the answers"
    )
    assert entry["unsolicited"] == [json.loads(text) for text in answers]
    assert entry["garbageIds"] == {"unknownMethod": unknown["id"], "badInquiry": inquiry["id"]}


def test_close_after_register_answers_register_then_closes_with_1011(
    kms: DevKms, connect: Callable[..., FakeSidecar], set_mode: Callable[[str], Any]
) -> None:
    assert set_mode("close-after-register") == {"mode": "close-after-register"}
    for _ in range(2):  # it stays in this mode
        sidecar = connect("Closed")
        refused = sidecar.call(REGISTER, register_params("not-a-uuid", "Closed"))
        assert _error_code(refused) == jsonrpc.INVALID_PARAMS  # no registration, no close
        registration = sidecar.register()
        opcode, frame = sidecar.ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1011
        assert registration.sidecar_id in {s["id"] for s in kms.sidecars("Closed")}
    assert kms.get("/misbehave") == {"mode": "close-after-register"}


def test_the_mode_can_be_set_at_start(tmp_path: Path) -> None:
    kms = DevKms(tmp_path, mode="silent")
    try:
        assert kms.get("/misbehave") == {"mode": "silent"}
        sidecar = FakeSidecar(kms.url)
        sidecar.send(REGISTER, register_params(str(uuid.uuid4()), "TestService"))
        _assert_no_answer(sidecar)
        assert kms.admin("POST", "/misbehave", {"mode": "normal"}) == (200, {"mode": "normal"})
        sidecar.ready()
        sidecar.close()
    finally:
        assert kms.stop() == 0, kms.log_path.read_text()
    assert "misbehaviour mode: silent from the start" in kms.log_path.read_text()
