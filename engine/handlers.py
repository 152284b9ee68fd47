"""Long-lived handler threads fed from one queue, a claim's tasks handed over together.

What the worker needs of a thread pool is small: run ``fn(*args)`` on one of
at most ``size`` threads, start a thread only when none is idle, and stop.
``concurrent.futures.ThreadPoolExecutor`` also builds a ``Future`` and a work
item per task, and takes a semaphore and its condition twice per task; the
worker never reads the futures (a handler's outcome goes to the recorder),
so here a task is one tuple on a ``SimpleQueue`` (a C queue) and the idle
count sits behind one plain lock.

Waking a thread costs more than a quick handler: with many worker processes
on few cores, one wake-up per task was a quarter of a no-op job's worker CPU.
So a claim's tasks go over as one batch (``submit_batch``), which one thread
runs back to back. The tasks of a batch handed over ``spread_after_s`` ago
that have not started yet (behind a slow handler, or one that blocks) go to
other threads, one task each, as ``submit`` would have sent them from the
start, when the owner calls ``spread_due``: the worker's claim loop does in
its waits, which it cuts short to the next batch's due time. A thread of its
own for that would be woken once per batch, which costs what a batch saves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("flowslot.worker")

Task = tuple[Callable[..., Any], tuple[Any, ...]]

# How long after a batch was handed over its tasks not yet started go to other
# threads: about what a slow or blocked handler can delay the rest of its claim.
SPREAD_AFTER_S = 0.005


class _Batch:
    """Tasks ``fn(*args)`` one thread runs in turn (``HandlerThreads.submit_batch``)."""

    __slots__ = ("fn", "items", "due")

    def __init__(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], due: float) -> None:
        self.fn = fn
        self.items: deque[tuple[Any, ...]] = deque(items)  # the tasks not started yet
        self.due = due  # monotonic time from which spread_due hands them to other threads


class HandlerThreads:
    """Up to ``size`` daemon threads named ``<prefix>-<n>``, started on demand."""

    def __init__(self, size: int, prefix: str, spread_after_s: float = SPREAD_AFTER_S) -> None:
        self.size = size
        self.prefix = prefix
        self.spread_after_s = spread_after_s
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with their task and not yet promised another
        self._threads: list[threading.Thread] = []
        self._batches: set[_Batch] = set()  # batches with tasks not yet started
        self._running = threading.local()  # .more: the batch this thread runs has tasks after this one
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle thread, or on a new one while fewer than ``size`` run."""
        with self._lock:
            if self._closed:
                raise RuntimeError("handler threads are shut down")
            self._take_thread()
        self._queue.put((fn, args))

    def submit_batch(self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]]) -> None:
        """Run ``fn(*args)`` for each ``args`` of ``items``, in order, on one thread; those not
        started ``spread_after_s`` from now go to other threads at the next ``spread_due``."""
        if len(items) == 1:
            self.submit(fn, *items[0])
            return
        batch = _Batch(fn, items, time.monotonic() + self.spread_after_s)
        with self._lock:
            if self._closed:
                raise RuntimeError("handler threads are shut down")
            self._take_thread()
            self._batches.add(batch)
        self._queue.put((self._run_batch, (batch,)))

    def spread_due(self) -> float | None:
        """Hand the tasks not yet started of the batches that are due to other threads, one
        task each; then the seconds until the next batch is due (None: no batch waits)."""
        if not self._batches:  # (the common case, without the lock; the caller's own batches are seen)
            return None
        now = time.monotonic()
        spread: list[Task] = []
        due: float | None = None
        with self._lock:
            if self._closed:  # (shutdown: the batches' threads run what is left, or it was dropped)
                return None
            for batch in list(self._batches):
                wait = batch.due - now
                if wait > 0:
                    due = wait if due is None else min(due, wait)
                    continue
                spread.extend((batch.fn, args) for args in batch.items)
                batch.items.clear()
                self._batches.discard(batch)
            for _ in spread:
                self._take_thread()
        for task in spread:
            self._queue.put(task)
        return due

    def _take_thread(self) -> None:
        """Promise the next queued task an idle thread, or start one (lock held)."""
        if self._idle > 0:
            self._idle -= 1
        elif len(self._threads) < self.size:
            thread = threading.Thread(target=self._loop, name=f"{self.prefix}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - a task reports its own errors; the thread lives on
                log.exception("handler thread task %r failed", fn)
            with self._lock:
                self._idle += 1

    def _run_batch(self, batch: _Batch) -> None:
        fn = batch.fn
        while True:
            with self._lock:
                if not batch.items:
                    return
                args = batch.items.popleft()
                more = bool(batch.items)
                if not more:
                    self._batches.discard(batch)
            self._running.more = more
            try:
                fn(*args)
            except BaseException:  # noqa: BLE001 - as in _loop: the batch's other tasks still run
                log.exception("handler thread task %r failed", fn)
            finally:
                self._running.more = False

    def batch_continues(self) -> bool:
        """Whether the task running on this thread is followed by more of its batch (which
        this thread runs next unless they are spread)."""
        return bool(getattr(self._running, "more", False))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Refuse new tasks; drop queued ones with ``cancel_futures`` (a batch's too); stop the
        threads once their current task returns (and join them with ``wait``)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            if cancel_futures:
                for batch in self._batches:
                    batch.items.clear()
                self._batches.clear()
        if cancel_futures:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
