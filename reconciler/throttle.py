"""Rate-limited warnings, so a fault that repeats every pass fills no log.

A broken partition or scanner fails again on every pass; one line per
``every_s`` for each distinct fault says the same thing, and the next line
says how many were left out in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class LogThrottle:
    """Log each distinct key at most once per ``every_s``; count what was left out."""

    max_keys = 10_000  # forget the oldest faults beyond this many, so memory stays bounded

    def __init__(self, logger: logging.Logger, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: Hashable, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``every_s`` ago; True if logged."""
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.every_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            left_out = self._suppressed.pop(key, 0)
            self._last[key] = now
            if len(self._last) > self.max_keys:
                oldest = min(self._last, key=self._last.__getitem__)
                self._last.pop(oldest)
                self._suppressed.pop(oldest, None)
        if left_out:
            msg, args = msg + " (%d more like this since the last such line)", (*args, left_out)
        self.logger.warning(msg, *args, exc_info=exc_info)
        return True
