"""Property-based tests of the reference application's APIs, from their OpenAPI schemas.

schemathesis generates requests for every operation of the admin server and the customer
services — valid and invalid bodies, parameters and paths — and sends them through the
gateway to the live services (``reference_app``) with a signed-in user's token. The one
property checked: no answer is a server error (5xx). The number of examples per operation
is bounded so that the whole file runs in well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from examples.admin_server.app import create_app as create_admin
from examples.common.config import DEV_KEYS, ExampleConfig
from examples.customer_services.app import create_app as create_customer
from tests.integration.reference_app import ReferenceApp

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The schemas come from the applications themselves, without starting them.
_CONFIG = ExampleConfig("testing", DEV_KEYS, 900, 86400, "insightdb-example")
admin_schema = schemathesis.openapi.from_dict(create_admin(_CONFIG).openapi())
customer_schema = schemathesis.openapi.from_dict(create_customer(_CONFIG).openapi())

_BOUNDED = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same inputs every run: CI failures reproduce
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@customer_schema.parametrize()
@_BOUNDED
def test_customer_services_never_answer_5xx(
    case: schemathesis.Case, reference_app: ReferenceApp
) -> None:
    case.call_and_validate(
        base_url=f"{reference_app.gateway}/customer",
        headers=reference_app.auth("alice@acme.example.com"),
        checks=[not_a_server_error],
        timeout=30,
    )


@admin_schema.parametrize()
@_BOUNDED
def test_admin_server_never_answers_5xx(
    case: schemathesis.Case, reference_app: ReferenceApp
) -> None:
    case.call_and_validate(
        base_url=f"{reference_app.gateway}/admin",
        headers=reference_app.auth("ops@example.com"),
        checks=[not_a_server_error],
        timeout=30,
    )
