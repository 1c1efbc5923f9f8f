"""The gateway's configuration, read from environment variables.

``GATEWAY_ADMIN_URLS``, ``GATEWAY_CUSTOMER_URLS``
    Comma-separated base URLs of the instances of each upstream (defaults
    ``http://127.0.0.1:8001`` and ``http://127.0.0.1:8002``).
``GATEWAY_ADMIN_TIMEOUT_S``, ``GATEWAY_CUSTOMER_TIMEOUT_S``
    How long one upstream answer may take, per upstream (default 10 s): then 504.
``GATEWAY_CONNECT_TIMEOUT_S``
    How long opening a connection to an instance may take (default 1 s).
``GATEWAY_MAX_BODY_BYTES``
    The largest request body forwarded (default 1 MiB): larger is 413.
``GATEWAY_BREAKER_FAILURES``, ``GATEWAY_BREAKER_RESET_S``
    Each instance's circuit breaker: consecutive failures that open it (default 3) and
    how long it stays open before one request probes the instance (default 5 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["GatewayConfig", "UpstreamConfig", "load_gateway_config"]


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One upstream service: its name (the path prefix), instances and timeout."""

    name: str
    urls: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The gateway's settings (see the module docstring for each)."""

    upstreams: tuple[UpstreamConfig, ...]
    connect_timeout_s: float = 1.0
    max_body_bytes: int = 1024 * 1024
    breaker_failures: int = 3
    breaker_reset_s: float = 5.0


def _urls(name: str, default: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip() or default
    urls = tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"{name}: {url!r} is not an http(s) base URL")
    if not urls:
        raise ValueError(f"{name} names no URL")
    return urls


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else default
    if not value > 0:
        raise ValueError(f"{name} must be positive")
    return value


def load_gateway_config() -> GatewayConfig:
    """Read the configuration from the environment.

    Raises:
        ValueError: A value is invalid (the message names the variable).
    """
    return GatewayConfig(
        upstreams=(
            UpstreamConfig(
                "admin",
                _urls("GATEWAY_ADMIN_URLS", "http://127.0.0.1:8001"),
                _number("GATEWAY_ADMIN_TIMEOUT_S", 10.0),
            ),
            UpstreamConfig(
                "customer",
                _urls("GATEWAY_CUSTOMER_URLS", "http://127.0.0.1:8002"),
                _number("GATEWAY_CUSTOMER_TIMEOUT_S", 10.0),
            ),
        ),
        connect_timeout_s=_number("GATEWAY_CONNECT_TIMEOUT_S", 1.0),
        max_body_bytes=int(_number("GATEWAY_MAX_BODY_BYTES", 1024 * 1024)),
        breaker_failures=int(_number("GATEWAY_BREAKER_FAILURES", 3)),
        breaker_reset_s=_number("GATEWAY_BREAKER_RESET_S", 5.0),
    )
