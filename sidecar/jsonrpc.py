"""JSON-RPC 2.0 messages, sans I/O: build them as text, parse text into typed messages."""

import json
import uuid
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class JsonRpcError(Exception):
    """A JSON-RPC failure with its error ``code``; ``id`` is the request's, when known."""

    def __init__(self, code: int, message: str, id: str | int | None = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.id = id


@dataclass(frozen=True, slots=True)
class Request:
    """A call from the peer; ``id`` is None for a notification."""

    id: str | int | None
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer to one of our requests."""

    id: str | int | None
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A failed answer to one of our requests (``id`` None when the peer could not tell)."""

    id: str | int | None
    code: int
    message: str
    data: Any = None


Message = Request | Response | ErrorResponse


def new_id() -> str:
    """A fresh request id."""
    return str(uuid.uuid4())


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def request(method: str, params: Any, id: str | None = None) -> tuple[str, str]:
    """Build a request; returns ``(id, text)``, with a fresh UUID id unless one is given."""
    request_id = id or new_id()
    return request_id, _dump(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    )


def response(id: str | int | None, result: Any) -> str:
    """Build a success response."""
    return _dump({"jsonrpc": "2.0", "id": id, "result": result})


def error(id: str | int | None, code: int, message: str) -> str:
    """Build an error response."""
    return _dump({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})


def parse(text: str | bytes) -> Message:
    """Parse one JSON-RPC 2.0 message.

    Raises :class:`JsonRpcError` with ``PARSE_ERROR`` for text that is not JSON and
    ``INVALID_REQUEST`` for JSON that is not a JSON-RPC 2.0 object.
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise JsonRpcError(PARSE_ERROR, "Parse error") from None
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 object")
    id = obj.get("id")
    if id is not None and (isinstance(id, bool) or not isinstance(id, str | int)):
        raise JsonRpcError(INVALID_REQUEST, "Invalid Request: id must be a string or integer")
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str):
            raise JsonRpcError(INVALID_REQUEST, "Invalid Request: method must be a string", id)
        return Request(id, method, obj.get("params"))
    if "result" in obj:
        return Response(id, obj["result"])
    failure = obj.get("error")
    if isinstance(failure, dict) and isinstance(failure.get("code"), int):
        return ErrorResponse(
            id, failure["code"], str(failure.get("message", "")), failure.get("data")
        )
    raise JsonRpcError(INVALID_REQUEST, "Invalid Request: neither request nor response", id)
