"""Benchmark worker processes: spawned, counted, and stopped within a deadline.

Each process runs ``target(child, *args)``. The target calls ``child.ready()``
once it can take work, reports how many jobs it finished with
``child.report(n)`` (a shared counter: the parent sees completion without
asking the server), and returns a small stats dict when ``child.stopping()``
turns true: on the parent's stop event, at its own deadline, or when the
parent is gone. The "spawn" context gives each process its own interpreter,
so W processes use W cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from bench.params import BenchError

CTX = mp.get_context("spawn")


class Child:
    """The child's side: readiness, progress, and when to stop.

    ``stop`` is a shared byte the parent sets once and children read without a
    lock (a ``multiprocessing.Event`` takes semaphores and a condition on every
    look, which the benchmarks counted as the worker's CPU).
    """

    def __init__(self, index: int, stop: Any, counters: Any, events: Any,
                 deadline_s: float) -> None:
        self.index = index
        self._stop, self._counters, self._events = stop, counters, events
        self._deadline = time.monotonic() + deadline_s
        self._parent = os.getppid()

    def ready(self) -> None:
        self._events.put(("ready", self.index, None))

    def report(self, done: int) -> None:
        self._counters[self.index] = done

    def stopping(self, wait_s: float = 0.0) -> bool:
        """Whether to stop, after sleeping ``wait_s`` unless the parent already said stop."""
        if wait_s > 0 and not self._stop.value:
            time.sleep(wait_s)
        return bool(self._stop.value) or time.monotonic() > self._deadline or os.getppid() != self._parent


def _child_main(target: Callable[..., dict[str, Any]], index: int, args: tuple[Any, ...],
                stop: Any, counters: Any, events: Any, deadline_s: float) -> None:
    child = Child(index, stop, counters, events, deadline_s)
    try:
        events.put(("stats", index, dict(target(child, *args))))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises BenchError
        events.put(("error", index, traceback.format_exc()))


def elapsed_cpu_s(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


@contextlib.contextmanager
def running(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], count: int,
            deadline_s: float) -> Iterator[ProcessGroup]:
    """Start ``count`` processes running ``target``; always stop them on the way out."""
    group = ProcessGroup(target, args, count, deadline_s)
    group.start()
    try:
        yield group
    finally:
        group.stop()


class ProcessGroup:
    """``count`` processes running ``target`` (use ``running`` to start and stop them)."""

    def __init__(self, target: Callable[..., dict[str, Any]], args: tuple[Any, ...], count: int,
                 deadline_s: float) -> None:
        self.count = count
        self._stop = CTX.RawValue("b", 0)  # set once by stop(); read lock-free by the children
        self._counters = CTX.Array("q", count, lock=False)
        self._events: Any = CTX.Queue()
        self._procs = [CTX.Process(target=_child_main, name=f"bench-{i}", daemon=True,
                                   args=(target, i, args, self._stop, self._counters, self._events,
                                         deadline_s))
                       for i in range(count)]
        self.stats: list[dict[str, Any]] = []

    def start(self) -> None:
        for proc in self._procs:
            proc.start()

    def _next_event(self, timeout_s: float) -> tuple[str, int, Any]:
        try:
            kind, index, value = self._events.get(timeout=max(timeout_s, 0.001))
        except queue.Empty:
            raise BenchError(f"worker processes did not answer within {timeout_s:.0f}s") from None
        if kind == "error":
            raise BenchError(f"worker process {index} failed:\n{value}")
        return kind, index, value

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        ready: set[int] = set()
        while len(ready) < self.count:
            kind, index, _ = self._next_event(deadline - time.monotonic())
            if kind == "ready":
                ready.add(index)

    def cpu_s(self) -> float | None:
        """User + system CPU seconds the processes used so far (Linux /proc; None elsewhere)."""
        total = 0
        try:
            for proc in self._procs:
                with open(f"/proc/{proc.pid}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            return None
        return total / os.sysconf("SC_CLK_TCK")

    def done(self) -> int:
        return sum(self._counters)

    def wait_done(self, total: int, timeout_s: float, poll_s: float = 0.002) -> bool:
        """Poll the shared counters until they reach ``total``; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while self.done() < total:
            if time.monotonic() > deadline or not any(p.is_alive() for p in self._procs):
                return False
            time.sleep(poll_s)
        return True

    def stop(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Ask every process to finish, collect its stats, end stragglers by PID."""
        if self._stop.value:
            return self.stats
        self._stop.value = 1
        deadline = time.monotonic() + timeout_s
        try:
            while len(self.stats) < self.count and time.monotonic() < deadline:
                try:
                    kind, index, value = self._events.get(timeout=0.5)
                except queue.Empty:
                    if any(p.is_alive() for p in self._procs):
                        continue
                    raise BenchError("a worker process exited without reporting") from None
                if kind == "error":
                    raise BenchError(f"worker process {index} failed:\n{value}")
                if kind == "stats":
                    self.stats.append(value)
        finally:
            for proc in self._procs:
                proc.join(timeout=max(deadline - time.monotonic(), 0.1))
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
        return self.stats


STOP_POLL_S = 0.05  # how often a worker process looks at the parent's stop flag


def publish_counts(stats: Any, child: Child) -> None:
    """Make a worker's ``WorkerStats`` report succeeded + failed to the parent at each change
    (its class is swapped for a subclass that does), so no loop in the worker process polls it:
    a 2 ms poll cost each worker process about 20 ms of CPU a second (timer wake-ups), which
    the benchmarks counted as the engine's."""

    class Published(type(stats)):  # type: ignore[misc]
        def __setattr__(self, name: str, value: Any) -> None:
            object.__setattr__(self, name, value)
            if name in ("succeeded", "failed"):
                child.report(self.succeeded + self.failed)

    stats.__class__ = Published


def serve_app(child: Child, app: Any, concurrency: int) -> dict[str, Any]:
    """Body of one flowslot worker process: a threaded ``Worker`` on ``app`` whose counts reach
    the parent as they change, until the parent says stop."""
    from engine.worker import Worker

    worker = Worker(app, ["default"], concurrency=concurrency, grace_s=2.0, poll_s=0.5)
    publish_counts(worker.stats, child)
    worker.start()
    child.ready()
    while not child.stopping(STOP_POLL_S):
        pass
    worker.stop_and_wait()
    app.close()
    s = worker.stats
    return {"claimed": s.claimed, "succeeded": s.succeeded, "failed": s.failed,
            "empty_claims": s.empty_claims}
