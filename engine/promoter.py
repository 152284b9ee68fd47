"""The worker's promoter: delayed work becomes ready with no daemon running.

Two triggers, one call (``exec_promote``): a timer heap fires a partition when
one of this worker's own retries is due (so a back-off of 200 ms waits about
200 ms, not for a pass), and a periodic pass promotes every partition about
once per ``interval_s``, which runs ``delay_s`` submissions and the retries
other processes scheduled. The timer heap is its own class so its ordering can
be tested with a fake clock.

The periodic pass runs once per interval per namespace, not once per worker:
each worker, about once per ``interval_s`` (jittered), asks for the pass lock
(``SET <ns>:promote-pass NX PX``, held for ``PASS_LOCK_SHARE`` of the
interval, so the winner's own next attempt finds it expired) and only the
winner passes. A winner that dies holds the lock until it expires; the next
worker to ask after that passes. A failed lock request passes anyway: a pass
too many costs a round, a pass too few delays work.

The same periodic pass reads the oldest entry of every partition's outbox
(one plain ``ZRANGE outbox 0 0 WITHSCORES`` per partition in the same
pipelined round: about 0.1 us of server time each, against about 9 us for an
``outbox_due`` call) and flushes the partitions whose oldest message is older
than ``outbox.WORKER_AGE_MS``, so a message whose sender did not flush it is
applied with no daemon running. The age is judged on the clock of the node
that holds the partition (one ``TIME`` per node in the same round), as the
flush itself judges it, so a worker's skewed clock neither delays nor hastens
a flush.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from engine import executions, outbox
from engine.client import Client
from engine.hints import hint_commands
from engine.replies import PromoteReply, server_ms
from engine.router import Command, Routable
from keys import KeySpace, key_slot

log = logging.getLogger("flowslot.worker")

PROMOTE_BATCH = 200  # due delayed executions promoted per partition per call
PASS_LOCK_SHARE = 0.7  # the pass lock's life, as a share of the interval (below the 0.75 jitter floor)


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
        self.timers = timers if timers is not None else DueTimers()  # an empty heap is falsy
        self.owner = uuid.uuid4().hex

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
            full_pass = self.timers.clock() >= next_pass
            if full_pass:
                next_pass = self._next_pass()
                full_pass = self.won_pass()
            if full_pass:
                due.update(range(partitions))
            if due and not stopped.is_set():
                self.promote(sorted(due), outbox=full_pass)

    def stop(self) -> None:
        self.timers.stop()

    def won_pass(self) -> bool:
        """Whether this worker runs this interval's full pass: it took the namespace's pass
        lock, or could not ask for it (then it passes rather than risk that nobody does)."""
        if self.interval_s is None:
            return False
        key = self.client.keys.promote_pass()
        life_ms = max(int(self.interval_s * 1000 * PASS_LOCK_SHARE), 1)
        try:
            return bool(self.client.run(Command(("SET", key, self.owner, "NX", "PX", life_ms), key)))
        except Exception as e:  # noqa: BLE001 - the pass itself reports what is wrong with the server
            log.debug("asking for the promotion-pass lock failed (%s: %s); passing anyway", type(e).__name__, e)
            return True

    def _next_pass(self) -> float:
        if self.interval_s is None:
            return float("inf")
        return self.timers.clock() + self.interval_s * random.uniform(0.75, 1.25)

    def promote(self, partitions: list[int], outbox: bool = False) -> None:
        """``exec_promote`` on each partition; hint the lanes that got work. A partition that
        had more due work than one call takes is scheduled again at once. With ``outbox``, the
        same round reads each partition's due outbox messages, applied afterwards."""
        keys = self.client.keys
        calls: list[Routable] = [executions.promote(keys, p, self.batch) for p in partitions]
        node_of: list[str] = []
        clocks: dict[str, int] = {}  # one TIME per node: a message's age counts by the clock that stamped it
        if outbox:
            router = self.client.router
            node_of = [router.node_for_slot(key_slot(keys.outbox(p))) for p in partitions]
            clocks = {node: p for node, p in zip(node_of, partitions, strict=True)}
            calls += [oldest_message(keys, p) for p in partitions]
            calls += [Command(("TIME",), keys.outbox(p)) for p in clocks.values()]
        replies = self.client.run_many(calls)
        if outbox:
            times = dict(zip(clocks, replies[2 * len(partitions):], strict=True))
            self._apply_outbox(partitions, replies[len(partitions):2 * len(partitions)],
                               [times[node] for node in node_of])
            replies = replies[:len(partitions)]
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

    def _apply_outbox(self, partitions: list[int], oldest: list[object], server_times: list[object]) -> None:
        """Flush the partitions whose oldest outbox message is due by its node's clock (a failed
        read or flush waits for the next pass, or the daemon's scanner)."""
        for partition, created_ms, server_time in zip(partitions, oldest, server_times, strict=True):
            if not isinstance(created_ms, float) or isinstance(server_time, Exception):
                continue
            if created_ms > server_ms(server_time) - outbox.WORKER_AGE_MS:
                continue
            try:
                outbox.flush(self.client, partition, min_age_ms=outbox.WORKER_AGE_MS)
            except Exception as e:  # noqa: BLE001 - the next pass (or the daemon's scanner) tries again
                log.warning("flushing the outbox of partition %d failed: %s: %s", partition,
                            type(e).__name__, e)


def oldest_message(keys: KeySpace, partition: int) -> Command:
    """The creation time (ms) of the partition's oldest outbox message, or None."""
    key = keys.outbox(partition)
    return Command(("ZRANGE", key, 0, 0, "WITHSCORES"), key, parse=_first_score)


def _first_score(reply: Any) -> float | None:
    """The score of a one-entry ``ZRANGE ... WITHSCORES`` reply, whichever shape the client gave it."""
    if not reply:
        return None
    first = reply[0]
    if isinstance(first, (list, tuple)):
        return float(first[1])
    return float(reply[1])
