"""The admin server: platform users and sign-in, billing records, system settings, audit.

Run it from the repository root (``make serve`` runs all three services)::

    uvicorn examples.admin_server.app:app --port 8001

Routes (OpenAPI at ``/docs``): ``POST /auth/token`` (OAuth2 password flow: an access and a
refresh token), ``POST /auth/refresh``, ``/users`` (``/users/me`` for everyone, the rest for
platform owners and admins), ``/billing``, ``/settings/{key}``, ``/audit``, and the probes
``/health/live``, ``/health/ready`` and ``/metrics``. Configuration: insightdb's from
``settings.toml`` and ``INSIGHTDB_*``; the application's from ``EXAMPLE_*`` variables
(:mod:`examples.common.config`; README.md in this folder).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

import insightdb.fastapi
from examples.admin_server import audit, auth, billing, system, users
from examples.common.auth import act_as_signed_in_user
from examples.common.config import ExampleConfig, load_config
from examples.common.requestid import RequestIdMiddleware
from examples.common.service import service_lifespan

__all__ = ["app", "create_app"]


def create_app(config: ExampleConfig | None = None) -> FastAPI:
    """Build the admin server.

    Args:
        config: The application configuration; by default read from the environment.
    """
    app = FastAPI(
        title="insightdb reference: admin server",
        version="1.0",
        lifespan=service_lifespan("admin"),
    )
    app.state.example_config = config or load_config()
    insightdb.fastapi.install_error_handlers(app)
    app.include_router(insightdb.fastapi.health_router())
    app.include_router(insightdb.fastapi.metrics_router())
    app.include_router(auth.router)
    for router in (users.router, billing.router, system.router, audit.router):
        app.include_router(router, dependencies=[Depends(act_as_signed_in_user)])
    app.add_middleware(RequestIdMiddleware, service="admin")
    return app


app = create_app()
