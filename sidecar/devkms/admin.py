"""The development KMS's HTTP admin API (JSON in and out), served from a thread.

Each request is handed to the asyncio loop that owns the KMS with
:func:`asyncio.run_coroutine_threadsafe` and answered when that coroutine is done.
"""

import asyncio
import json
import re
import threading
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from loguru import logger

from sidecar.devkms.misbehave import parse_mode
from sidecar.devkms.server import Kms, NotConnected
from sidecar.rows import parse_timestamp

log = logger.bind(component="devkms")

T = TypeVar("T")

HEALTHCHECK_TIMEOUT = 10.0
BRIDGE_TIMEOUT = 30.0
MAX_BODY = 1 << 20
SHUTDOWN_POLL = 0.1  # seconds; how soon serve_forever notices a shutdown


class HttpError(Exception):
    """An admin request that ends with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminServer(ThreadingHTTPServer):
    """The admin HTTP server; knows the KMS and the loop it runs on."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], kms: Kms, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(address, _Handler)
        self.kms = kms
        self.loop = loop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = BRIDGE_TIMEOUT) -> T:
        """Run ``coroutine`` on the KMS's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> threading.Thread:
        """Serve in a daemon thread."""
        thread = threading.Thread(
            target=self.serve_forever, args=(SHUTDOWN_POLL,), name="devkms-admin", daemon=True
        )
        thread.start()
        return thread


Handler = Callable[["_Handler", re.Match[str], Any], tuple[HTTPStatus, Any]]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def _route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, re.compile(pattern + r"\Z"), handler))
        return handler

    return register


class _Handler(BaseHTTPRequestHandler):
    server_version = "devkms"

    @property
    def admin(self) -> AdminServer:
        return cast(AdminServer, self.server)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("admin: {}", format % args)

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            status, payload = self._run(method, path)
        except HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
        except Exception:
            log.exception("admin request {} {} failed", method, path)
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _run(self, method: str, path: str) -> tuple[HTTPStatus, Any]:
        path_known = False
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            path_known = True
            if route_method == method:
                return handler(self, match, self._body() if method == "POST" else None)
        if path_known:
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such resource: {path}")

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from None


@_route("GET", "/health")
def _health(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    return HTTPStatus.OK, {"status": "OK"}


@_route("GET", "/sidecars")
def _sidecars(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    return HTTPStatus.OK, handler.admin.call(handler.admin.kms.sidecars())


@_route("GET", "/batches")
def _batches(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    return HTTPStatus.OK, handler.admin.call(handler.admin.kms.batches())


@_route("POST", "/sidecars/(?P<id>[^/]+)/healthcheck")
def _healthcheck(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    sidecar_id = unquote(match["id"])
    try:
        answer = handler.admin.call(handler.admin.kms.healthcheck(sidecar_id, HEALTHCHECK_TIMEOUT))
    except NotConnected as exc:
        raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from None
    except TimeoutError:
        raise HttpError(
            HTTPStatus.GATEWAY_TIMEOUT, f"sidecar {sidecar_id} did not answer in time"
        ) from None
    return HTTPStatus.OK, answer


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name!r} must be a non-empty string")
    return value


@_route("POST", "/inquiries")
def _start_inquiry(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    service_name, sidecar_id = _text_field(body, "serviceName"), _text_field(body, "sidecarId")
    if (service_name is None) == (sidecar_id is None):
        raise HttpError(HTTPStatus.BAD_REQUEST, "give exactly one of 'serviceName' or 'sidecarId'")
    times: list[str] = []
    for name in ("startTime", "endTime"):
        value = body.get(name)
        try:
            if not isinstance(value, str):
                raise TypeError(name)
            parse_timestamp(value)
        except (TypeError, ValueError):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"{name!r} must be an ISO time") from None
        times.append(value)
    coroutine = handler.admin.kms.start_inquiry(
        times[0], times[1], service_name=service_name, sidecar_id=sidecar_id
    )
    try:
        inquiry_id = handler.admin.call(coroutine)
    except NotConnected as exc:
        raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from None
    return HTTPStatus.ACCEPTED, {"inquiry": inquiry_id}


@_route("GET", "/inquiries/(?P<id>[^/]+)")
def _inquiry(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    inquiry_id = unquote(match["id"])
    report = handler.admin.call(handler.admin.kms.inquiry_report(inquiry_id))
    if report is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no inquiry {inquiry_id}")
    return HTTPStatus.OK, report


@_route("POST", "/connections/close")
def _close(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    return HTTPStatus.OK, {"closed": handler.admin.call(handler.admin.kms.close_connections())}


@_route("GET", "/misbehave")
def _mode(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    return HTTPStatus.OK, {"mode": handler.admin.call(handler.admin.kms.current_mode()).value}


@_route("POST", "/misbehave")
def _misbehave(handler: _Handler, match: re.Match[str], body: Any) -> tuple[HTTPStatus, Any]:
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    try:
        mode = parse_mode(body.get("mode"))
    except ValueError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
    return HTTPStatus.OK, handler.admin.call(handler.admin.kms.misbehave(mode))
