"""The leases a worker holds, in one registry behind one lock.

Four threads share it: the claim loop adds a lease, the recorder forgets it
once its outcome is recorded, the renewer extends the running ones, and the
shutdown hands back whatever is still running. Keeping the lock inside this
class means no caller can read the dictionary without it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.context import TaskContext
from engine.replies import Claimed


@dataclass
class Held:
    """A lease this worker holds."""

    claimed: Claimed
    lane: str
    context: TaskContext
    future: Any = None
    done: bool = False  # the handler finished; its outcome waits to be recorded
    claimed_at: float = field(default_factory=time.monotonic)
    started: float = 0.0


class HeldLeases:
    """Execution id → ``Held``, safe to use from any thread."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def add(self, held: Held) -> None:
        with self._lock:
            self._held[held.claimed.execution_id] = held

    def add_many(self, held: list[Held]) -> None:
        """Add a claimed batch under one lock."""
        with self._lock:
            for h in held:
                self._held[h.claimed.execution_id] = h

    def forget(self, execution_id: str) -> None:
        with self._lock:
            self._held.pop(execution_id, None)

    def forget_many(self, execution_ids: list[str]) -> None:
        """Forget a recorded batch under one lock."""
        with self._lock:
            for execution_id in execution_ids:
                self._held.pop(execution_id, None)

    def running(self) -> list[Held]:
        """The leases whose handler has not finished (a snapshot)."""
        with self._lock:
            return [h for h in self._held.values() if not h.done]
