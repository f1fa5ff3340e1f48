"""The answers the proxy writes itself, each error in the one OpenAI envelope.

`{"error": {"message", "type", "param", "code"}}` with a string `code`, the same from the ASGI
application and from the HTTP protocol (which answers some requests before any application runs),
and a `Retry-After` on every 503 (review L5). Messages say what happened and what to do; they
never carry the engine's address or an exception's repr (those go to the log).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

JSON: Final = b"application/json"
CLIENT_LEFT: Final = "llmserve.client_left"
"""Scope key the protocol sets when it cancels a request's task because its client went away."""
TYPES: Final = {400: "invalid_request_error", 401: "invalid_request_error",
                404: "invalid_request_error", 405: "invalid_request_error",
                408: "invalid_request_error", 413: "invalid_request_error",
                431: "invalid_request_error", 429: "rate_limit_error", 502: "server_error",
                503: "server_error", 504: "timeout_error"}  # fmt: skip
"""The envelope's `type` by status, as OpenAI's API names them."""


class Refusal(Exception):  # noqa: N818 - a refusal, not a fault
    """A request answered with an error instead of being served."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


def envelope(status: int, code: str, message: str) -> bytes:
    """The OpenAI error body."""
    error = {"message": message, "type": TYPES[status], "param": None, "code": code}
    return json.dumps({"error": error}).encode()


async def respond(send: Send, status: int, body: bytes, content_type: bytes = JSON,
                  extra: Headers = ()) -> None:  # fmt: skip
    """A whole response."""
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, refusal: Refusal, extra: Headers = ()) -> None:
    """The error answer of a refusal, with its Retry-After."""
    if refusal.retry_after is not None:
        extra = [*extra, (b"retry-after", b"%d" % refusal.retry_after)]
    await respond(send, refusal.status, envelope(refusal.status, refusal.code, refusal.message),
                  extra=extra)  # fmt: skip


def raw(refusal: Refusal) -> bytes:
    """A refusal as the bytes of a whole HTTP/1.1 response that ends the connection."""
    body = envelope(refusal.status, refusal.code, refusal.message)
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        refusal.status, HTTPStatus(refusal.status).phrase.encode(), len(body)
    )  # fmt: skip
    if refusal.retry_after is not None:
        head += b"retry-after: %d\r\n" % refusal.retry_after
    return head + b"connection: close\r\n\r\n" + body
