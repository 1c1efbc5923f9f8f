"""Forwarding one request to one upstream: body bound, headers, instance choice, errors.

:func:`forward` reads the request body up to the bound (413 beyond it), then tries the
upstream's instances in round-robin order, skipping those whose breaker is open. A
connection that could not be opened means the request was never sent, so the next
instance is tried, whatever the method; a connection lost mid-request is tried again
elsewhere only for methods that are safe to repeat. A timeout is a 504 and no instance
left a 503 — both in the services' JSON error shape. Answers carry ``X-Gateway-Instance``
(which instance served them) and the request's ``X-Request-ID``.
"""

from __future__ import annotations

import httpx
from loguru import logger
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from examples.gateway.upstreams import Upstream

__all__ = ["BodyTooLarge", "forward", "read_bounded_body"]

# Hop-by-hop headers (RFC 9110 7.6.1) and those httpx recomputes.
_DROPPED_REQUEST = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
# httpx hands the body decoded, so its encoding and length no longer apply; the gateway's
# server sets its own date and server; the request id is the gateway's middleware's.
_DROPPED_RESPONSE = _DROPPED_REQUEST | {"content-encoding", "date", "server", "x-request-id"}
_REPEATABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(Exception):
    """The request body is larger than the gateway forwards."""


def _error(status_code: int, error: str, message: str, **headers: str) -> JSONResponse:
    body = {"detail": {"error": error, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=headers or None)


async def read_bounded_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing one larger than ``limit`` bytes before reading it
    all (a declared ``Content-Length`` is checked first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _request_headers(request: Request) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in request.headers.items() if k not in _DROPPED_REQUEST]
    client = request.client.host if request.client else ""
    prior = request.headers.get("x-forwarded-for")
    headers = [(k, v) for k, v in headers if not k.startswith("x-forwarded-")]
    headers.append(("x-forwarded-for", f"{prior}, {client}" if prior else client))
    headers.append(("x-forwarded-proto", request.url.scheme))
    headers.append(("x-forwarded-host", request.headers.get("host", "")))
    return headers


def _target(request: Request, base: str, prefix: str) -> str:
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    rest = raw[len(prefix) :].decode("latin-1") or "/"
    query = request.url.query
    return f"{base}{rest}" + (f"?{query}" if query else "")


async def forward(
    request: Request,
    upstream: Upstream,
    client: httpx.AsyncClient,
    *,
    max_body_bytes: int,
    connect_timeout_s: float,
) -> Response:
    """Send ``request`` to one instance of ``upstream`` and relay its answer."""
    try:
        body = await read_bounded_body(request, max_body_bytes)
    except BodyTooLarge:
        message = f"request bodies are limited to {max_body_bytes} bytes"
        return _error(413, "body_too_large", message)
    headers = _request_headers(request)
    timeout = httpx.Timeout(upstream.timeout_s, connect=connect_timeout_s)
    prefix = f"/{upstream.name}"
    for instance in upstream.rotation():
        owner = object()  # this attempt, as the breaker's probe owner
        if not instance.breaker.allow(owner):
            continue
        try:
            answer = await client.request(
                request.method,
                _target(request, instance.url, prefix),
                content=body,
                headers=headers,
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            instance.breaker.record_failure(owner)
            instance.failed += 1
            if isinstance(exc, httpx.ConnectTimeout):
                logger.warning("gateway: {} did not accept a connection; next", instance.name)
                continue
            logger.warning("gateway: {} timed out", instance.name)
            return _error(504, "upstream_timeout", f"{upstream.name} did not answer in time")
        except httpx.TransportError as exc:
            instance.breaker.record_failure(owner)
            instance.failed += 1
            logger.warning("gateway: {} failed: {}", instance.name, type(exc).__name__)
            if isinstance(exc, httpx.ConnectError) or request.method in _REPEATABLE:
                continue
            return _error(502, "upstream_failed", f"{upstream.name} failed during the request")
        except BaseException:
            instance.breaker.release(owner)  # cancelled: says nothing about the instance
            raise
        instance.breaker.record_success(owner)
        instance.answered += 1
        return _relay(answer, instance.name)
    return _error(
        503,
        "upstream_unavailable",
        f"no instance of {upstream.name} is available",
        **{"Retry-After": "1"},
    )


def _relay(answer: httpx.Response, instance: str) -> Response:
    response = Response(content=answer.content, status_code=answer.status_code)
    for key, value in answer.headers.multi_items():
        if key.lower() not in _DROPPED_RESPONSE:
            response.headers.append(key, value)
    response.headers["x-gateway-instance"] = instance
    return response
