"""The development KMS's WebSocket side: sidecar connections, and what the admin API asks of them.

Everything here runs on one asyncio loop; the admin API's thread reaches it through
:func:`asyncio.run_coroutine_threadsafe` and the ``async`` methods of :class:`Kms`.
"""

import asyncio
import itertools
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from loguru import logger
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from sidecar import jsonrpc
from sidecar.devkms import misbehave
from sidecar.devkms.inquiries import InquiryBook
from sidecar.devkms.misbehave import Mode, Observations
from sidecar.devkms.protocol import Phase, Session, unparseable_reply
from sidecar.devkms.state import KmsState
from sidecar.jsonrpc import ErrorResponse, JsonRpcError, Request, Response
from sidecar.kms_protocol import HEALTHCHECK, INQUIRY

log = logger.bind(component="devkms")

WEBSOCKET_PATH = "/sidecar"
SERVICE_RESTART = 1012
GARBAGE_SEND_TIMEOUT = 20.0  # seconds per connection; below the admin API's bridge timeout


class NotConnected(LookupError):
    """No suitable sidecar connection for an admin request."""


def check_path(connection: ServerConnection, request: HttpRequest) -> HttpResponse | None:
    """``process_request`` hook: only ``/sidecar`` is a WebSocket endpoint; the rest is 404."""
    if urlsplit(request.path).path != WEBSOCKET_PATH:
        log.warning("refused a WebSocket request for {}", request.path)
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
    return None


class SidecarLink:
    """One sidecar's WebSocket, its protocol session, and our requests awaiting its answers."""

    def __init__(self, ws: ServerConnection, session: Session, number: int) -> None:
        self.ws = ws
        self.session = session
        self.number = number
        self.pending: dict[str | int, asyncio.Future[Response | ErrorResponse]] = {}
        self.observations = Observations()

    @property
    def name(self) -> str:
        """How log lines name this connection."""
        return f"#{self.number} ({self.session.sidecar_id or 'unregistered'})"

    async def call(self, method: str, params: Any, timeout: float) -> Response | ErrorResponse:
        """Send a request to the sidecar and wait for its answer; TimeoutError if none comes."""
        request_id, text = jsonrpc.request(method, params)
        future: asyncio.Future[Response | ErrorResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending[request_id] = future
        try:
            await self.ws.send(text)
            return await asyncio.wait_for(future, timeout)
        except ConnectionClosed:
            raise NotConnected(f"connection {self.name} closed") from None
        finally:
            self.pending.pop(request_id, None)

    def settle(self, answer: Response | ErrorResponse, frame: str | bytes) -> None:
        """Hand an answer from the sidecar to the request waiting for it.

        Error answers and answers nobody waits for are also kept in :attr:`observations`.
        """
        future = self.pending.pop(answer.id, None) if answer.id is not None else None
        if future is None:
            log.warning("connection {}: answer to unknown request id {!r}", self.name, answer.id)
        elif not future.done():
            future.set_result(answer)
        if future is None or isinstance(answer, ErrorResponse):
            self.observations.record(frame)

    async def send_all(self, frames: tuple[str, ...], timeout: float) -> bool:
        """Send ``frames`` in order; False if the connection closes or is too slow to take them."""
        try:
            async with asyncio.timeout(timeout):
                for frame in frames:
                    await self.ws.send(frame)
        except ConnectionClosed:
            log.warning("connection {} closed while garbage was sent to it", self.name)
            return False
        except TimeoutError:
            log.warning("connection {} took no garbage for {} s", self.name, timeout)
            return False
        return True

    def abandon(self) -> None:
        """Fail every request still waiting: the connection is gone."""
        for future in self.pending.values():
            if not future.done():
                future.set_exception(NotConnected(f"connection {self.name} closed"))
        self.pending.clear()


class Kms:
    """The KMS: state, inquiries and the live sidecar connections."""

    def __init__(
        self, state: KmsState, inquiries: InquiryBook | None = None, mode: Mode = Mode.NORMAL
    ) -> None:
        self.state = state
        self.inquiries = inquiries if inquiries is not None else InquiryBook()
        self.mode = mode
        self._links: dict[int, SidecarLink] = {}
        self._observations: dict[str, Observations] = {}  # by sidecar id, kept after closing
        self._numbers = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one sidecar connection until it closes."""
        link = SidecarLink(ws, Session(self.state, self.inquiries), next(self._numbers))
        self._links[link.number] = link
        log.info("connection #{} opened from {}", link.number, _peer(ws))
        try:
            async for frame in ws:
                await self._on_frame(link, frame)
        except ConnectionClosed:
            pass
        finally:
            del self._links[link.number]
            link.abandon()
            log.info(
                "connection {} closed (code {}, reason {!r})",
                link.name,
                ws.close_code,
                ws.close_reason,
            )

    async def _on_frame(self, link: SidecarLink, frame: str | bytes) -> None:
        if misbehave.drops_frames(self.mode):
            log.debug("connection {}: {} mode, frame dropped", link.name, self.mode.value)
            return
        try:
            message = jsonrpc.parse(frame)
        except JsonRpcError as exc:
            log.warning("connection {}: unusable frame: {}", link.name, exc)
            await link.ws.send(unparseable_reply(exc))
            return
        if not isinstance(message, Request):
            link.settle(message, frame)
            return
        before = link.session.phase
        outcome = link.session.handle(message)
        outcome = misbehave.adjust(self.mode, before, link.session.phase, outcome)
        if link.session.sidecar_id is not None:
            self._observations.setdefault(link.session.sidecar_id, link.observations)
        if outcome.reply is not None:
            await link.ws.send(outcome.reply)
        if outcome.close:
            log.info(
                "closing connection {} with {} ({})",
                link.name,
                outcome.close_code,
                outcome.close_reason,
            )
            await link.ws.close(outcome.close_code, outcome.close_reason)

    def _linked(self, sidecar_id: str) -> SidecarLink | None:
        for link in self._links.values():
            if link.session.sidecar_id == sidecar_id:
                return link
        return None

    # What the admin API asks; run on the loop through run_coroutine_threadsafe.

    async def sidecars(self) -> list[dict[str, Any]]:
        """Every registration, with whether it is connected and ready now."""
        listing = []
        for registration in self.state.registrations():
            link = self._linked(registration.sidecar_id)
            observed = self._observations.get(registration.sidecar_id, Observations())
            listing.append(
                {
                    "id": registration.sidecar_id,
                    "serviceName": registration.service_name,
                    "registered": registration.registered,
                    "connected": link is not None,
                    "ready": link is not None and link.session.phase is Phase.READY,
                    **observed.as_json(),
                }
            )
        return listing

    async def current_mode(self) -> Mode:
        """How sidecar connections are treated now."""
        return self.mode

    async def misbehave(self, mode: Mode) -> dict[str, Any]:
        """Switch to ``mode``; for ``garbage``, send it to every connection, then back to normal."""
        self._switch(mode)
        if mode is not Mode.GARBAGE:
            return {"mode": mode.value}
        links = list(self._links.values())
        sends: list[Awaitable[bool]] = []
        for link in links:
            burst = misbehave.garbage()
            link.observations.garbage_ids = burst.ids
            sends.append(link.send_all(burst.frames, GARBAGE_SEND_TIMEOUT))
        sent = sum(await asyncio.gather(*sends))
        done = f"garbage sent to {sent} of {len(links)} connection(s)"
        if self.mode is Mode.GARBAGE:  # unless switched meanwhile
            self._switch(Mode.NORMAL, done)
        else:
            log.info(done)
        return {"mode": mode.value, "sent": sent, "frames": misbehave.GARBAGE_FRAME_COUNT}

    def _switch(self, mode: Mode, why: str = "on request") -> None:
        log.warning("misbehaviour mode: {} -> {} ({})", self.mode.value, mode.value, why)
        self.mode = mode

    async def batches(self) -> list[dict[str, Any]]:
        """Every recorded batch, in the order recorded."""
        return [
            {
                "id": b.batch_id,
                "sidecarId": b.sidecar_id,
                "signature": b.signature,
                "received": b.received,
            }
            for b in self.state.batches()
        ]

    async def healthcheck(self, sidecar_id: str, timeout: float) -> dict[str, Any]:
        """Ask a connected sidecar for its health: ``{"result": …}`` or ``{"error": …}``."""
        link = self._linked(sidecar_id)
        if link is None:
            raise NotConnected(f"sidecar {sidecar_id} is not connected")
        log.info("healthcheck sent to sidecar {}", sidecar_id)
        try:
            answer = await link.call(HEALTHCHECK, {"level": "ping"}, timeout)
        except TimeoutError:
            log.warning("healthcheck of sidecar {}: no answer in {} s", sidecar_id, timeout)
            raise
        if isinstance(answer, ErrorResponse):
            log.warning("healthcheck of sidecar {} failed: {}", sidecar_id, answer.message)
            failure = {"code": answer.code, "message": answer.message, "data": answer.data}
            return {"error": failure}
        log.info("healthcheck answered by sidecar {}", sidecar_id)
        return {"result": answer.result}

    async def start_inquiry(
        self, start_time: str, end_time: str, *, service_name: str | None, sidecar_id: str | None
    ) -> str:
        """Send an inquiry to one ready sidecar (the given id, or the service's newest); its id."""
        ready = [link for link in self._links.values() if link.session.phase is Phase.READY]
        if sidecar_id is not None:
            chosen = [link for link in ready if link.session.sidecar_id == sidecar_id]
        else:
            chosen = [
                link
                for link in ready
                if link.session.registration is not None
                and link.session.registration.service_name == service_name
            ]
        if not chosen:
            wanted = (
                f"sidecar {sidecar_id}" if sidecar_id else f"sidecar of service {service_name!r}"
            )
            raise NotConnected(f"no ready {wanted}")
        link = max(chosen, key=lambda candidate: candidate.session.registered_at)
        registration = link.session.registration
        assert registration is not None
        inquiry_id = jsonrpc.new_id()
        params = {"inquiry": inquiry_id, "startTime": start_time, "endTime": end_time}
        self.inquiries.open(
            inquiry_id, registration.sidecar_id, registration.service_name, start_time, end_time
        )
        try:
            await link.ws.send(jsonrpc.request(INQUIRY, params)[1])
        except ConnectionClosed:
            raise NotConnected(f"connection {link.name} closed") from None
        log.info(
            "inquiry {} sent to sidecar {} for {} .. {}",
            inquiry_id,
            registration.sidecar_id,
            start_time,
            end_time,
        )
        return inquiry_id

    async def inquiry_report(self, inquiry_id: str) -> dict[str, Any] | None:
        """An inquiry's answers so far, verified; None if there is no such inquiry."""
        return self.inquiries.report(inquiry_id, self.state)

    async def close_connections(self) -> int:
        """Close every sidecar connection with 1012 (service restart); how many there were.

        Returns once the close frames are on their way; the closing handshakes finish in the
        background (bounded by the server's close timeout).
        """
        links = list(self._links.values())
        for link in links:
            task = asyncio.create_task(link.ws.close(SERVICE_RESTART, "service restart"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await asyncio.sleep(0)  # let every close task send its close frame
        log.info("closing {} sidecar connection(s) on request", len(links))
        return len(links)


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
