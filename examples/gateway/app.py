"""The gateway: one entry point in front of the admin server and the customer services.

Run it from the repository root (``make serve`` runs all three services)::

    GATEWAY_ADMIN_URLS=http://127.0.0.1:8001 \\
    GATEWAY_CUSTOMER_URLS=http://127.0.0.1:8002,http://127.0.0.1:8003 \\
        uvicorn examples.gateway.app:app --port 8000

``/admin/...`` goes to the admin server and ``/customer/...`` to the customer services,
with the prefix removed (``GET /customer/clients`` is ``GET /clients`` there), to one
instance in turn, skipping those whose circuit breaker is open
(:mod:`examples.gateway.upstreams`). ``/health/live`` answers while the gateway runs,
``/health/ready`` asks every instance's ``/health/ready`` and is 200 while each upstream
has at least one ready instance, and ``/metrics`` serves the gateway's own counters in the
Prometheus format. Configuration: ``GATEWAY_*`` variables (:mod:`examples.gateway.config`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from loguru import logger
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.common.requestid import RequestIdMiddleware, configure_logging
from examples.gateway.config import GatewayConfig, load_gateway_config
from examples.gateway.metrics import GatewayMetrics
from examples.gateway.proxy import forward
from examples.gateway.upstreams import Instance, Upstream, build_upstreams

__all__ = ["app", "create_app"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_PROBE_TIMEOUT_S = 2.0


async def _instance_ready(client: httpx.AsyncClient, instance: Instance) -> dict[str, Any]:
    state = instance.describe()
    try:
        answer = await client.get(f"{instance.url}/health/ready", timeout=_PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return state | {"ready": False, "status_code": None, "error": type(exc).__name__}
    return state | {"ready": answer.status_code == 200, "status_code": answer.status_code}


def create_app(config: GatewayConfig | None = None) -> Starlette:
    """Build the gateway.

    Args:
        config: The gateway's configuration; by default read from ``GATEWAY_*`` variables.
    """
    settings = config or load_gateway_config()
    upstreams = build_upstreams(settings)
    metrics = GatewayMetrics(upstreams)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logging()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
            app.state.client = client
            for upstream in upstreams.values():
                urls = ", ".join(i.url for i in upstream.instances)
                logger.info("gateway: /{} -> {}", upstream.name, urls)
            yield
        logger.info("gateway: stopped")

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.client
        report: dict[str, Any] = {}
        for upstream in upstreams.values():
            checks = await asyncio.gather(*(_instance_ready(client, i) for i in upstream.instances))
            report[upstream.name] = {"ready": sum(c["ready"] for c in checks), "instances": checks}
        all_ready = all(u["ready"] == len(u["instances"]) for u in report.values())
        is_ready = all(u["ready"] > 0 for u in report.values())
        status = "ok" if all_ready else ("degraded" if is_ready else "down")
        body = {"status": status, "ready": is_ready, "upstreams": report}
        return JSONResponse(
            body, status_code=200 if is_ready else 503, headers={"Cache-Control": "no-store"}
        )

    def proxy_to(upstream: Upstream) -> Any:
        async def endpoint(request: Request) -> Response:
            response = await forward(
                request,
                upstream,
                request.app.state.client,
                max_body_bytes=settings.max_body_bytes,
                connect_timeout_s=settings.connect_timeout_s,
            )
            metrics.observe(upstream.name, response.status_code)
            return response

        return endpoint

    routes = [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
    ]
    for upstream in upstreams.values():
        endpoint = proxy_to(upstream)
        routes.append(Route(f"/{upstream.name}", endpoint, methods=_METHODS))
        routes.append(Route(f"/{upstream.name}/{{path:path}}", endpoint, methods=_METHODS))
    application = Starlette(routes=routes, lifespan=lifespan)
    application.add_middleware(RequestIdMiddleware, service="gateway")
    return application


app = create_app()
