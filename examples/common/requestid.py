"""Request ids: taken from ``X-Request-ID`` (or generated), passed on, logged, echoed.

:class:`RequestIdMiddleware` is a plain ASGI middleware used by all three services. It
keeps a well-formed incoming ``X-Request-ID`` (the gateway's, or a client's) and
generates one otherwise, rewrites the request's header to it (so the gateway forwards
the same id upstream), puts it in :data:`request_id` for the handlers and in loguru's
context, adds it to the response, and writes one access line per request::

    12:00:01.234 INFO    gateway 5f0c... GET /customer/clients -> 200 in 4.1 ms
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HEADER", "RequestIdMiddleware", "configure_logging", "request_id"]

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
# Ids are echoed into logs and headers: accept a conservative alphabet and length only.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id: ContextVar[str | None] = ContextVar("example_request_id", default=None)
"""The current request's id (``None`` outside a request)."""


def configure_logging(level: str = "INFO") -> None:
    """Send loguru's output (the services' lines and insightdb's) to stderr, one line each."""
    logger.remove()
    logger.add(sys.stderr, level=level, format="{time:HH:mm:ss.SSS} {level:<7} {message}")
    logger.enable("insightdb")


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_BYTES:
            text = value.decode("latin-1")
            return text if _WELL_FORMED.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Give every HTTP request an id, propagate it and log one line per request.

    Args:
        app: The application to wrap.
        service: The name at the start of each access line (``admin``, ``gateway``...).
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming(scope) or uuid.uuid4().hex
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != _HEADER_BYTES]
        scope = {**scope, "headers": [*headers, (_HEADER_BYTES, rid.encode())]}
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_BYTES]
                message = {**message, "headers": [*kept, (_HEADER_BYTES, rid.encode())]}
            await send(message)

        started = time.perf_counter()
        token = request_id.set(rid)
        try:
            with logger.contextualize(request_id=rid):
                await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.info(
                "{} {} {} {} -> {} in {:.1f} ms",
                self.service,
                rid,
                scope["method"],
                scope["path"],
                status["code"],
                elapsed_ms,
            )
