"""Waiting in tests for something another process does (bounded; never a sleep-and-hope)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition",
               every_s: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
