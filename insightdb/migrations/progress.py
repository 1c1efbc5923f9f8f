"""Progress of batch migrations: a rich bar in a terminal, periodic log lines otherwise.

The runner picks one reporter per step with :func:`make_reporter`: ``"bar"`` draws a rich
progress bar (documents, documents/s, ETA) on stdout, ``"log"`` writes a loguru line every
few seconds (for CI logs and Kubernetes jobs), ``"off"`` reports nothing, and ``"auto"``
means ``"bar"`` when stdout is a terminal and ``"log"`` otherwise.
"""

from __future__ import annotations

import sys
import time
from typing import Literal, Protocol

from loguru import logger

__all__ = ["ProgressMode", "Reporter", "make_reporter"]

ProgressMode = Literal["auto", "bar", "log", "off"]


class Reporter(Protocol):
    """Receives the documents a step has processed."""

    def advance(self, documents: int) -> None:
        """Count ``documents`` more as done."""

    def close(self) -> None:
        """Finish the report (draw the final state, write the last line)."""


class _Silent:
    def advance(self, documents: int) -> None:
        pass

    def close(self) -> None:
        pass


class _LogLines:
    """A loguru line every ``interval_s`` seconds and one at the end."""

    def __init__(self, label: str, total: int | None, interval_s: float) -> None:
        self._label = label
        self._total = total
        self._interval = interval_s
        self._done = 0
        self._began = time.monotonic()
        self._last = self._began

    def advance(self, documents: int) -> None:
        self._done += documents
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            logger.info("insightdb: {}", self._line(now))

    def close(self) -> None:
        logger.info("insightdb: {} (done)", self._line(time.monotonic()))

    def _line(self, now: float) -> str:
        elapsed = max(now - self._began, 1e-9)
        rate = self._done / elapsed
        text = f"{self._label}: {self._done}"
        if self._total:
            text += f"/{self._total} documents ({100 * self._done / self._total:.0f}%)"
            if rate > 0 and self._done < self._total:
                text += f", ETA {(self._total - self._done) / rate:.0f} s"
        else:
            text += " documents"
        return f"{text}, {rate:.0f} docs/s"


class _Bar:
    """A rich progress bar on stdout."""

    def __init__(self, label: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} docs/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, rate="-")
        self._began = time.monotonic()
        self._done = 0
        self._progress.start()

    def advance(self, documents: int) -> None:
        self._done += documents
        rate = self._done / max(time.monotonic() - self._began, 1e-9)
        self._progress.update(self._task, advance=documents, rate=f"{rate:.0f}")

    def close(self) -> None:
        self._progress.stop()


def make_reporter(
    label: str, total: int | None, mode: ProgressMode = "auto", *, interval_s: float = 5.0
) -> Reporter:
    """Return the reporter for one step.

    Args:
        label: What is being migrated, e.g. ``"admin 1a2b3c users"``.
        total: Documents expected, if known.
        mode: ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.
        interval_s: Seconds between log lines in ``"log"`` mode.
    """
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "log"
    if mode == "bar":
        return _Bar(label, total)
    if mode == "log":
        return _LogLines(label, total, interval_s)
    return _Silent()
