"""Refuse request bodies over `API_MAX_BODY_BYTES` before anything reads them whole.

Without a limit the API buffered any body it was sent, then parsed it: one 20 MB dispatch
was accepted, and five at once took the process to 729 MB. This pure ASGI middleware
answers 413 without reading a byte when `Content-Length` is over the limit, and counts a
body sent without one (chunked) as it arrives, stopping at the first chunk past the limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketqueue.api.problems import http_problem


class BodyTooLarge(HTTPException):
    """A streamed body passed the limit; raised from `receive()`, so nothing reads further."""

    # An HTTPException because FastAPI lets those out of its body parsing (any other
    # error there becomes a 400), so the app's problem handler answers it like any other.

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_detail(max_bytes))


def too_large_detail(max_bytes: int) -> str:
    return f"The request body is larger than {max_bytes} bytes, the limit API_MAX_BODY_BYTES sets."


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (or one the server will refuse)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """Answer 413 `application/problem+json` to any HTTP request whose body passes `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            # Only reached when the body was read outside a route (the problem handler
            # answers it inside one); after a response has started, there is no answering.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = http_problem(Request(scope), 413, too_large_detail(self.max_bytes))
        await response(scope, receive, send)
