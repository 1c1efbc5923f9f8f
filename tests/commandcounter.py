"""A command counter shared by tests that prove "no command reached the server".

Registered once, globally, on import: every client created afterwards reports to it.
"""

from __future__ import annotations

import threading

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts commands sent to databases whose name ends with ``_customer``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name.endswith("_customer"):
            with self._lock:
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


COUNTER = CommandCounter()
monitoring.register(COUNTER)
