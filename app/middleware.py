"""ASGI middleware: a cap on request bodies, checked before the multipart parser spools anything to disk."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response


class BodyLimit:
    """Refuse bodies over `limit()` bytes with 413: at once from Content-Length, else (chunked uploads) as soon
    as the bytes received pass it. `limit` is read per request (the settings are resolved at start-up)."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int | None]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    status = 413 if declared > limit else 400
                    code = "request_too_large" if status == 413 else "bad_request"
                    message = f"request body over {limit} bytes" if status == 413 else "malformed Content-Length"
                    await error_response(code, message, status=status)(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises an HTTPException met while parsing a body (other errors become a 400).
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, counted, send)
