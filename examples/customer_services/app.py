"""The customer services: each tenant's clients, projects and white-label settings.

Run it from the repository root (``make serve`` runs all three services)::

    uvicorn examples.customer_services.app:app --port 8002

Every route runs inside its tenant's context through
:func:`insightdb.fastapi.tenant_dependency`, with the tenant taken from the verified
``tenant`` claim of the bearer token (:mod:`examples.customer_services.tenancy`): a
tenant's queries can only see its own documents, and another tenant's id is a 404.
Routes (OpenAPI at ``/docs``): ``/clients``, ``/projects``, ``/branding``, and the probes
``/health/live``, ``/health/ready`` and ``/metrics``, which need no token. Configuration:
insightdb's from ``settings.toml`` and ``INSIGHTDB_*``; the application's from
``EXAMPLE_*`` variables (:mod:`examples.common.config`; README.md in this folder).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

import insightdb.fastapi
from examples.common.auth import act_as_signed_in_user, bearer_scheme
from examples.common.config import ExampleConfig, load_config
from examples.common.requestid import RequestIdMiddleware
from examples.common.service import service_lifespan
from examples.customer_services import branding, clients, projects
from examples.customer_services.tenancy import tenant_of

__all__ = ["app", "create_app"]


def create_app(config: ExampleConfig | None = None) -> FastAPI:
    """Build the customer services.

    Args:
        config: The application configuration; by default read from the environment.
    """
    app = FastAPI(
        title="insightdb reference: customer services",
        version="1.0",
        lifespan=service_lifespan("customer"),
        dependencies=[
            Depends(bearer_scheme),  # declares the bearer scheme in OpenAPI (/docs)
            Depends(insightdb.fastapi.tenant_dependency(resolver=tenant_of)),
            Depends(act_as_signed_in_user),
        ],
    )
    app.state.example_config = config or load_config()
    insightdb.fastapi.install_error_handlers(app)
    app.include_router(insightdb.fastapi.health_router())
    app.include_router(insightdb.fastapi.metrics_router())
    for router in (clients.router, projects.router, branding.router):
        app.include_router(router)
    app.add_middleware(RequestIdMiddleware, service="customer")
    return app


app = create_app()
