"""Fixtures shared by the integration tests: the live reference application."""

from tests.integration.reference_app import reference_app

__all__ = ["reference_app"]
