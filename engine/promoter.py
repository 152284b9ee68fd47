"""The worker's promoter: delayed work becomes ready with no daemon running.

Two triggers, one call (``exec_promote``): a timer heap fires a partition when
one of this worker's own retries is due (so a back-off of 200 ms waits about
200 ms, not for a pass), and a periodic pass promotes every partition about
once per ``interval_s`` (jittered, so workers do not pass in step), which
runs ``delay_s`` submissions and the retries other processes scheduled. The
timer heap is its own class so its ordering can be tested with a fake clock.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable

from engine import executions
from engine.client import Client
from engine.hints import hint_commands
from engine.replies import PromoteReply

log = logging.getLogger("flowslot.worker")

PROMOTE_BATCH = 200  # due delayed executions promoted per partition per call


class DueTimers:
    """A heap of (due time, partition); ``wait_for_due`` pops the partitions whose time came."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int]] = []
        self._cv = threading.Condition()
        self._stopped = False

    def schedule(self, partition: int, delay_ms: int) -> None:
        with self._cv:
            heapq.heappush(self._heap, (self.clock() + delay_ms / 1000, partition))
            self._cv.notify()

    def wait_for_due(self, until: float, poll_s: float = 1.0) -> set[int]:
        """Block until a scheduled partition is due, ``until`` passes or ``stop``; pop the due ones."""
        with self._cv:
            while not self._stopped:
                now = self.clock()
                first = self._heap[0][0] if self._heap else until
                if min(first, until) <= now:
                    break
                self._cv.wait(timeout=max(min(first, until, now + poll_s) - now, 0.001))
            due = set()
            while self._heap and self._heap[0][0] <= self.clock():
                due.add(heapq.heappop(self._heap)[1])
            return due

    def stop(self) -> None:
        """Release the waiter; ``wait_for_due`` returns at once from now on."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def __len__(self) -> int:
        with self._cv:
            return len(self._heap)


class Promoter:
    """Promotes due delayed work: scheduled partitions when due, every partition each pass."""

    def __init__(self, client: Client, interval_s: float | None = 1.0, poll_s: float = 1.0,
                 batch: int = PROMOTE_BATCH, timers: DueTimers | None = None) -> None:
        self.client = client
        self.interval_s = interval_s
        self.poll_s = poll_s
        self.batch = batch
        self.timers = timers or DueTimers()

    def schedule(self, partition: int, delay_ms: int) -> None:
        """Promote this partition when the retry is due, so retries do not wait for the
        reconciler's next pass (which still promotes them if this worker dies first)."""
        self.timers.schedule(partition, delay_ms)

    def run(self, stopped: threading.Event) -> None:
        """Promote until ``stopped`` (then ``stop`` wakes the wait): due partitions as they
        come due, and every partition once per ``interval_s``. One pipelined round each time."""
        partitions = self.client.keys.partitions
        next_pass = self._next_pass()
        while not stopped.is_set():
            due = self.timers.wait_for_due(next_pass, self.poll_s)
            if self.timers.clock() >= next_pass:
                due.update(range(partitions))
                next_pass = self._next_pass()
            if due and not stopped.is_set():
                self.promote(sorted(due))

    def stop(self) -> None:
        self.timers.stop()

    def _next_pass(self) -> float:
        if self.interval_s is None:
            return float("inf")
        return self.timers.clock() + self.interval_s * random.uniform(0.75, 1.25)

    def promote(self, partitions: list[int]) -> None:
        """``exec_promote`` on each partition; hint the lanes that got work. A partition that
        had more due work than one call takes is scheduled again at once."""
        keys = self.client.keys
        replies = self.client.run_many([executions.promote(keys, p, self.batch) for p in partitions])
        hints, failed = [], []
        for partition, reply in zip(partitions, replies, strict=True):
            if isinstance(reply, Exception):
                failed.append((partition, reply))
                continue
            promoted: PromoteReply = reply
            hints += [(partition, lane) for lane in promoted.lanes]
            if promoted.promoted >= self.batch:
                self.schedule(partition, 0)
        if failed:  # one line a pass: a node down fails every partition it serves
            log.warning("promoting %d partition(s) failed, first %d: %s; the next pass retries them",
                        len(failed), failed[0][0], failed[0][1])
        if hints:
            self.client.run_many(hint_commands(keys, hints))
