"""Thresholds: which figures of the last window are out of bounds, and who hears about it.

insightdb sends no alerts of its own (that is the job of whoever scrapes the metrics).
What it does is decide, once per monitoring window, which thresholds of
:class:`~insightdb.settings.MonitoringSettings` are crossed (:func:`evaluate_window`), keep
them as *active* alerts that turn health ``degraded``, and, when one becomes active or
clears, write one log line and call the hooks registered with :meth:`AlertBook.subscribe`.

Log lines carry ``insightdb_alert`` in loguru's ``extra``, so an application can route
them: ``logger.add(sink, filter=lambda r: "insightdb_alert" in r["extra"])``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from loguru import logger

from insightdb.monitoring.metrics import Alert
from insightdb.settings import MonitoringSettings

__all__ = ["AlertBook", "AlertHook", "evaluate_window"]

AlertHook = Callable[[Alert, Literal["raised", "cleared"]], None]
"""Called with an alert and whether it was just raised or just cleared."""


def evaluate_window(
    settings: MonitoringSettings,
    *,
    commands: Mapping[str, tuple[int, float]],
    pools: Mapping[str, tuple[float, int]],
) -> list[Alert]:
    """Return the alerts one monitoring window deserves.

    Args:
        settings: The thresholds.
        commands: Per server, ``(commands, total seconds)`` in the window.
        pools: Per server, ``(longest checkout wait in seconds, failed checkouts)``.
    """
    alerts: list[Alert] = []
    for server, (count, total_s) in sorted(commands.items()):
        if count:
            mean_ms = total_s / count * 1000
            if mean_ms > settings.latency_ms:
                alerts.append(
                    Alert(
                        name="command_latency",
                        server=server,
                        value=round(mean_ms, 3),
                        threshold=settings.latency_ms,
                        message=(
                            f"mean command latency {mean_ms:.1f} ms over {count} command(s) "
                            f"exceeds {settings.latency_ms:g} ms"
                        ),
                    )
                )
    for server, (wait_s, failures) in sorted(pools.items()):
        wait_ms = wait_s * 1000
        if wait_ms > settings.pool_wait_ms:
            alerts.append(
                Alert(
                    name="pool_wait",
                    server=server,
                    value=round(wait_ms, 3),
                    threshold=settings.pool_wait_ms,
                    message=(
                        f"a connection checkout waited {wait_ms:.1f} ms "
                        f"(threshold {settings.pool_wait_ms:g} ms)"
                    ),
                )
            )
        if failures >= settings.checkout_failures:
            alerts.append(
                Alert(
                    name="checkout_failures",
                    server=server,
                    value=failures,
                    threshold=settings.checkout_failures,
                    message=f"{failures} connection checkout(s) failed",
                )
            )
    return alerts


class AlertBook:
    """The active alerts, and the hooks to call when the set changes.

    Alerts are keyed by a *source* (``"window"`` for the monitoring loop, ``"ping"``
    for health pings) so that each source replaces only its own alerts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str, str], Alert] = {}
        self._hooks: list[AlertHook] = []

    def active(self) -> tuple[Alert, ...]:
        """The alerts active now."""
        with self._lock:
            return tuple(self._active.values())

    def subscribe(self, hook: AlertHook) -> Callable[[], None]:
        """Call ``hook`` whenever an alert is raised or cleared.

        Hooks run in the monitoring loop (or the health check), after the log line; an
        exception in a hook is logged and ignored.

        Returns:
            A function that unsubscribes the hook.
        """
        with self._lock:
            self._hooks.append(hook)

        def unsubscribe() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return unsubscribe

    def update(self, source: str, alerts: Iterable[Alert], *, scope: str | None = None) -> None:
        """Replace the alerts of ``source`` (limited to one ``scope`` server if given).

        Args:
            source: Who evaluated them (``"window"``, ``"ping"``).
            alerts: The alerts that hold now; the source's others are cleared.
            scope: Only replace the source's alerts of this server.
        """
        fresh = {(source, a.name, a.server): a for a in alerts}
        with self._lock:
            stale = [
                key
                for key in self._active
                if key[0] == source and (scope is None or key[2] == scope) and key not in fresh
            ]
            cleared = [self._active.pop(key) for key in stale]
            raised = [a for key, a in fresh.items() if key not in self._active]
            self._active.update(fresh)
            hooks = list(self._hooks)
        for alert in raised:
            logger.bind(insightdb_alert=alert.name).warning(
                "insightdb: {} on {}: {}", alert.name, alert.server, alert.message
            )
            self._notify(hooks, alert, "raised")
        for alert in cleared:
            logger.bind(insightdb_alert=alert.name).info(
                "insightdb: {} on {} cleared", alert.name, alert.server
            )
            self._notify(hooks, alert, "cleared")

    @staticmethod
    def _notify(hooks: list[AlertHook], alert: Alert, change: Literal["raised", "cleared"]) -> None:
        for hook in hooks:
            try:
                hook(alert, change)
            except Exception:
                logger.exception("insightdb: alert hook {!r} failed", hook)
