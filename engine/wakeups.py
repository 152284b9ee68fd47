"""The wake queue: partitions (per lane) the worker should claim from, each queued once.

Hint listeners, the start sweep, a claim that left work behind and the
dispatcher all ask the claim loop to look at a (partition, lane). Asking
twice before the claim loop gets to it must cost one claim, not two, and the
oldest request is served first so no partition waits behind a busy one. A
module of its own so that ordering, de-duplication and stopping can be tested
without a server.
"""

from __future__ import annotations

import threading
from collections import deque

Target = tuple[int, str]  # (partition, lane)


class WakeQueue:
    """A FIFO of distinct (partition, lane) targets; ``next`` blocks until one arrives or ``stop``."""

    def __init__(self, poll_s: float = 1.0) -> None:
        self.poll_s = poll_s
        self._queue: deque[Target] = deque()
        self._queued: set[Target] = set()
        self._cv = threading.Condition()
        self._stopped = False

    def wake(self, partition: int, lane: str) -> None:
        """Queue a target unless it is queued already."""
        target = (partition, lane)
        with self._cv:
            if target not in self._queued:
                self._queued.add(target)
                self._queue.append(target)
                self._cv.notify()

    def next(self, timeout: float | None = None) -> Target | None:
        """The oldest target, waiting for one (at most ``timeout`` seconds when given); None on
        that timeout, and once stopped (queued targets are dropped)."""
        with self._cv:
            if timeout is None:
                while not self._queue and not self._stopped:
                    self._cv.wait(timeout=self.poll_s)
            elif not self._queue and not self._stopped:
                self._cv.wait(timeout=timeout)
            if self._stopped or not self._queue:
                return None
            target = self._queue.popleft()
            self._queued.discard(target)
            return target

    def stop(self) -> None:
        """Release every waiter; from now on ``next`` returns None."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._queue)
