"""Resilience: the circuit breaker, the client guard and driver-error translation.

:mod:`.breaker` is the pure Closed/Open/HalfOpen state machine with an injected clock;
:mod:`.guard` wraps one client's operations in it and in the operation deadline;
:mod:`._driver_errors` tells connectivity failures apart and wraps them in
:class:`~insightdb.exceptions.DatabaseUnavailable`. This module only re-exports.
"""

from __future__ import annotations

from insightdb.resilience.breaker import BreakerState, BreakerStats, CircuitBreaker, Transition
from insightdb.resilience.guard import ClientGuard

__all__ = ["BreakerState", "BreakerStats", "CircuitBreaker", "ClientGuard", "Transition"]
