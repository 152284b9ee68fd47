"""Long-lived handler threads fed from one queue.

What the worker needs of a thread pool is small: run ``fn(*args)`` on one of
at most ``size`` threads, start a thread only when none is idle, and stop.
``concurrent.futures.ThreadPoolExecutor`` also builds a ``Future`` and a work
item per task, and takes a semaphore and its condition twice per task; the
worker never reads the futures (a handler's outcome goes to the recorder),
so here a task is one tuple on a ``SimpleQueue`` (a C queue) and the idle
count sits behind one plain lock.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("flowslot.worker")

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class HandlerThreads:
    """Up to ``size`` daemon threads named ``<prefix>-<n>``, started on demand."""

    def __init__(self, size: int, prefix: str) -> None:
        self.size = size
        self.prefix = prefix
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads done with their task and not yet promised another
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle thread, or on a new one while fewer than ``size`` run."""
        with self._lock:
            if self._closed:
                raise RuntimeError("handler threads are shut down")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self.size:
                thread = threading.Thread(target=self._loop, name=f"{self.prefix}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((fn, args))

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

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Refuse new tasks; drop queued ones with ``cancel_futures``; stop the threads once
        their current task returns (and join them with ``wait``)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
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
