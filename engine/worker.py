"""The worker runtime: hints in, claims in batches, handlers, results out.

Threads, each with one job:
  * hint listeners (one per lane × hint list) block on ``BLMPOP`` only while
    the worker has free capacity, so a busy worker never swallows a hint;
  * the claim loop turns wake-ups into ``exec_claim`` calls sized to the free
    capacity, and re-queues a partition that still has ready work;
  * handlers run in a thread pool (plain functions) or on one event loop
    (``async def``);
  * the completer records outcomes in batches (one pipelined round per batch);
  * the renewer extends every held lease at a third of the lease and passes
    cancellations to the handlers;
  * the promoter makes due delayed work ready (``exec_promote``) on every
    partition about once a second, and on a partition as soon as one of this
    worker's retries is due, so delays and back-offs need no daemon.

SIGTERM (or SIGINT) stops claiming, lets running handlers finish for
``grace_s`` (saying every few seconds what it waits for), hands back the
leases of those that did not (``exec_release``), and returns; a second
signal hands them back at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine import checks, executions, metrics
from engine.app import App, TaskDef
from engine.codec import decode, encode
from engine.context import TaskContext, _current
from engine.dispatcher import dispatch
from engine.errors import Canceled, EngineError, InvalidState, NotFound, StaleLease, TransitionRejected
from engine.hints import hint_commands, pop_hints
from engine.refs import substitute
from engine.replies import Claimed
from keys import partition_of

log = logging.getLogger("flowslot.worker")

MAX_ERROR_KIND = 200
SHUTDOWN_REPORT_S = 5.0  # how often a stopping worker says what it still waits for
PROMOTE_BATCH = 200  # due delayed executions promoted per partition per call
MAX_ERROR_MESSAGE = 4096


@dataclass
class Outcome:
    """What a handler produced, waiting to be recorded."""

    claimed: Claimed
    lane: str
    ok: bool
    result: str = ""
    kind: str = ""
    message: str = ""
    retryable: bool = True


def _log_failure(outcome: Outcome, reply: Any) -> None:
    """One WARNING line per failed attempt: task, id, attempt, error kind and message, and what
    became of it (retry, failed, or not recorded)."""
    c = outcome.claimed
    message = outcome.message.split("\n", 1)[0][:500]
    if isinstance(reply, Exception):
        then = f"not recorded: {reply}"
    elif reply.state == "delayed":
        then = f"retry in {reply.delay_ms / 1000:g} s"
    elif reply.state == "ready":
        then = "retry now"
    else:
        then = str(reply.state)
    fields = {"task": c.task, "id": c.execution_id, "attempt": c.attempt, "error_kind": outcome.kind,
              "error_message": message, "outcome": then}
    log.warning("task %s %s attempt %d failed: %s: %s (%s)", c.task, c.execution_id, c.attempt,
                outcome.kind, message, then, extra={"fields": fields})


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The async handlers' loop: runs until the shutdown stops it, then is closed (a loop left
    open warns when it is collected, at whatever moment that happens to be)."""
    try:
        loop.run_forever()
    finally:
        loop.close()


@dataclass
class Held:
    """A lease this worker holds."""

    claimed: Claimed
    lane: str
    context: TaskContext
    future: Any = None
    done: bool = False
    claimed_at: float = field(default_factory=time.monotonic)
    started: float = 0.0


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    empty_claims: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs the tasks registered on ``app`` for the given lanes."""

    def __init__(self, app: App, lanes: Sequence[str] = ("default",), *, concurrency: int = 16,
                 lease_ms: int = 30_000, batch_max: int = 64, grace_s: float = 30.0,
                 poll_s: float = 1.0, worker_id: str | None = None,
                 promote_interval_s: float | None = 1.0) -> None:
        checks.integer(concurrency, "concurrency", minimum=1, maximum=4096)
        checks.integer(lease_ms, "lease_ms", minimum=100, maximum=86_400_000)
        checks.integer(batch_max, "batch_max", minimum=1, maximum=1000)
        self.app = app
        self.client = app.client
        self.keys = self.client.keys
        self.lanes = checks.lanes(lanes)
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.batch_max = batch_max
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.promote_interval_s = promote_interval_s
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"
        self.stats = WorkerStats()
        self._held: dict[str, Held] = {}
        self._held_lock = threading.Lock()
        self._capacity = threading.Condition()
        self._inflight = 0
        self._wakeups: deque[tuple[int, str]] = deque()
        self._wakeup_set: set[tuple[int, str]] = set()
        self._wakeup_cv = threading.Condition()
        self._outcomes: queue.Queue[Outcome | None] = queue.Queue()
        self._stopping = threading.Event()
        self._abort = threading.Event()  # a second signal: release the leases now
        self._signal_name = ""
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="flowslot-task")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[tuple[float, int]] = []
        self._timers_cv = threading.Condition()

    # -- lifecycle -------------------------------------------------------
    def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``), then shut down gracefully.

        A second SIGTERM/SIGINT during the grace period hands the leases of the
        handlers still running back at once (``exec_release``) and returns; the
        caller decides whether to wait for those handler threads
        (``running_handlers``) or to exit the process.
        """
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.start()
        self._stopping.wait()
        self._shutdown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        """First signal: stop claiming. Second: stop waiting for running handlers.
        (Only flags here; the main thread does the logging and the calls.)"""
        self._signal_name = signal.Signals(signum).name
        if self._stopping.is_set():
            self._abort.set()
            with self._capacity:
                self._capacity.notify_all()
        else:
            self.stop()

    @property
    def running_handlers(self) -> int:
        """Handlers started and not yet finished."""
        return self._inflight

    def start(self) -> Worker:
        """Start every thread and return (the caller owns the lifetime)."""
        self._spawn(self._claim_loop, "claim")
        self._spawn(self._complete_loop, "complete")
        self._spawn(self._renew_loop, "renew")
        self._spawn(self._promote_loop, "promote")
        for lane in self.lanes:
            for index in range(self.keys.hint_lists):
                self._spawn(self._listen_loop, f"hints-{lane}-{index}", lane, index)
        self._sweep()
        log.info("worker %s started: lanes=%s concurrency=%d", self.id, self.lanes, self.concurrency)
        return self

    def stop(self) -> None:
        """Ask the worker to stop claiming; ``run`` then finishes the shutdown."""
        self._stopping.set()
        with self._wakeup_cv:
            self._wakeup_cv.notify_all()
        with self._capacity:
            self._capacity.notify_all()

    def stop_and_wait(self) -> None:
        """Stop and shut down from another thread (for embedded workers)."""
        self.stop()
        self._shutdown()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(target, *args), name=f"flowslot-{name}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        while not self._stopped.is_set():
            try:
                target(*args)
                return
            except Exception as e:
                if self._stopping.is_set():
                    return
                log.warning("worker thread %s failed (%s); restarting it in 0.5s", target.__name__, e)
                self._stopping.wait(0.5)

    def _shutdown(self) -> None:
        if self._stopped.is_set():
            return
        for thread in self._threads:  # claim loop and hint listeners first: nothing new starts
            if thread.name.startswith(("flowslot-claim", "flowslot-hints")):
                thread.join(timeout=self.poll_s + 10)
        self._wait_for_handlers(time.monotonic() + self.grace_s)
        if self._abort.is_set():
            log.warning("worker %s: second %s, handing back the leases of %d running handler(s) now",
                        self.id, self._signal_name, self._inflight)
        self._release_held()
        self._outcomes.put(None)
        self._stopped.set()
        with self._timers_cv:
            self._timers_cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.poll_s + 10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        log.info("worker %s stopped: %s", self.id, self.stats)

    def _wait_for_handlers(self, deadline: float) -> None:
        """Let running handlers finish until the deadline or a second signal, saying every
        few seconds what is still running."""
        report_at = time.monotonic()
        while not self._abort.is_set():
            now = time.monotonic()
            if self._inflight <= 0 or now >= deadline:
                return
            if now >= report_at:
                log.warning("worker %s stopping%s: waiting for %d running handler(s), %.0f s of grace "
                            "left; SIGINT/SIGTERM again (Ctrl-C) hands their leases back now", self.id,
                            f" on {self._signal_name}" if self._signal_name else "", self._inflight,
                            deadline - now)
                report_at = now + SHUTDOWN_REPORT_S
            with self._capacity:
                self._capacity.wait(timeout=0.1)

    def _release_held(self) -> None:
        with self._held_lock:
            held = [h for h in self._held.values() if not h.done]
        if not held:
            return
        for h in held:
            h.context._cancel("worker shutting down")
        calls = [executions.release(self.keys, h.claimed.execution_id, h.claimed.token) for h in held]
        replies = self.client.run_many(calls)
        hints, released = [], []
        for h, reply in zip(held, replies):
            if isinstance(reply, Exception):
                log.warning("could not release %s: %s", h.claimed.execution_id, reply)
                continue
            self.stats.released += 1
            released.append(h.claimed.execution_id)
            hints.append((partition_of(h.claimed.execution_id, self.keys.partitions), h.lane))
        if released:
            log.warning("worker %s handed back %d lease(s), their attempts not counted: %s", self.id,
                        len(released), ", ".join(released))
        if hints:
            self.client.run_many(hint_commands(self.keys, hints))

    # -- capacity --------------------------------------------------------
    def _free(self) -> int:
        return self.concurrency - self._inflight

    def _wait_for_capacity(self) -> bool:
        with self._capacity:
            while self._free() <= 0 and not self._stopping.is_set():
                self._capacity.wait(timeout=self.poll_s)
            return not self._stopping.is_set()

    def _release_capacity(self) -> None:
        with self._capacity:
            self._inflight -= 1
            self._capacity.notify_all()

    # -- wake-ups --------------------------------------------------------
    def _wake(self, partition: int, lane: str) -> None:
        with self._wakeup_cv:
            if (partition, lane) not in self._wakeup_set:
                self._wakeup_set.add((partition, lane))
                self._wakeups.append((partition, lane))
                self._wakeup_cv.notify()

    def _next_wakeup(self) -> tuple[int, str] | None:
        with self._wakeup_cv:
            while not self._wakeups and not self._stopping.is_set():
                self._wakeup_cv.wait(timeout=self.poll_s)
            if self._stopping.is_set() or not self._wakeups:
                return None
            item = self._wakeups.popleft()
            self._wakeup_set.discard(item)
            return item

    def _listen_loop(self, lane: str, index: int) -> None:
        while not self._stopping.is_set():
            if not self._wait_for_capacity():
                return
            partitions = self.client.run(pop_hints(self.keys, lane, index, self.poll_s, self.batch_max))
            for partition in partitions:
                if 0 <= partition < self.keys.partitions:
                    self._wake(partition, lane)

    def _sweep(self) -> None:
        """At start, look for ready work whose hints were lost (one pipelined round)."""
        from engine.router import Command

        calls = [Command(("ZCARD", self.keys.ready(p, lane)), self.keys.ready(p, lane))
                 for lane in self.lanes for p in range(self.keys.partitions)]
        counts = self.client.run_many(calls)
        targets = [(p, lane) for lane in self.lanes for p in range(self.keys.partitions)]
        for (p, lane), n in zip(targets, counts):
            if isinstance(n, int) and n > 0:
                self._wake(p, lane)

    # -- claiming --------------------------------------------------------
    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            wakeup = self._next_wakeup()
            if wakeup is None or not self._wait_for_capacity():
                continue
            partition, lane = wakeup
            self._claim(partition, lane)

    def _claim(self, partition: int, lane: str) -> None:
        count = min(self._free(), self.batch_max)
        if count <= 0:
            self._wake(partition, lane)
            return
        reply = self.client.run(executions.claim(self.keys, partition, lane, count, self.lease_ms, self.id))
        if not reply.claimed:
            self.stats.empty_claims += 1
        elif reply.claimed:
            metrics.EXECUTIONS.labels("claimed", lane).inc(len(reply.claimed))
        if reply.expired:
            self._dispatch(reply.expired)
        for claimed in reply.claimed:
            self._start(claimed, lane)
        if reply.remaining > 0:
            if self._free() > 0:
                self._wake(partition, lane)
            else:
                self.client.run_many(hint_commands(self.keys, [(partition, lane)]))

    def _start(self, claimed: Claimed, lane: str) -> None:
        self.stats.claimed += 1
        with self._capacity:
            self._inflight += 1
        context = TaskContext(claimed.execution_id, claimed.attempt, claimed.deadline_ms, self,
                              claimed.flow, claimed.step)
        held = Held(claimed, lane, context)
        with self._held_lock:
            self._held[claimed.execution_id] = held
        definition = self.app.tasks.get(claimed.task)
        if definition is None:
            self._finish(held, Outcome(claimed, lane, False, kind="unknown_task",
                                       message=f"no handler registered for task {claimed.task!r} "
                                               f"in worker {self.id}", retryable=False))
            return
        if definition.is_async:
            future = asyncio.run_coroutine_threadsafe(self._run_async(definition, held), self._event_loop())
        else:
            future = self._pool.submit(self._run_sync, definition, held)
        held.future = future

    # -- running handlers ------------------------------------------------
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=_run_loop, args=(loop,), name="flowslot-asyncio", daemon=True).start()
            self._loop = loop
        return self._loop

    def _run_sync(self, definition: TaskDef, held: Held) -> None:
        token = _current.set(held.context)
        held.started = time.monotonic()
        metrics.CLAIM_TO_START.observe(held.started - held.claimed_at)
        try:
            args, kwargs = self._arguments(held)
            outcome = self._success(held, definition.fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - a handler's failure is data, recorded below
            outcome = self._failure(definition, held, e)
        finally:
            _current.reset(token)
        self._finish(held, outcome)

    async def _run_async(self, definition: TaskDef, held: Held) -> None:
        _current.set(held.context)
        held.context._task = asyncio.current_task()
        held.started = time.monotonic()
        metrics.CLAIM_TO_START.observe(held.started - held.claimed_at)
        try:
            args, kwargs = self._arguments(held)
            outcome = self._success(held, await definition.fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - includes CancelledError from cooperative cancel
            outcome = self._failure(definition, held, e)
        self._finish(held, outcome)

    def _arguments(self, held: Held) -> tuple[list[Any], dict[str, Any]]:
        """Decode the payload; in a flow step, put upstream results at the listed reference paths.

        The argument values themselves are passed on exactly as submitted.
        """
        payload = decode(held.claimed.payload) or {}
        args, kwargs = list(payload.get("args", [])), dict(payload.get("kwargs", {}))
        if payload.get("refs"):
            raw = held.claimed.inputs or self._paged_inputs(held.claimed)
            inputs = {step: decode(value) for step, value in raw.items()}
            substitute(args, kwargs, payload["refs"], inputs)
        return args, kwargs

    def _paged_inputs(self, claimed: Claimed) -> dict[str, str]:
        """The inputs the claim left out (a wide fan-in): read in bounded ``HSCAN`` pages."""
        inputs: dict[str, str] = {}
        cursor = "0"
        while claimed.inputs_paged:
            page_call = executions.inputs_page(self.keys, claimed.execution_id, cursor)
            page = self.client.run(page_call)
            inputs.update(page.inputs)
            cursor = page.cursor
            if cursor == "0":
                break
        return inputs

    def _success(self, held: Held, value: Any) -> Outcome:
        try:
            text = encode(value, limit_bytes=self.app.max_payload_bytes,
                          what=f"result of {held.claimed.task}")
        except EngineError as e:
            return Outcome(held.claimed, held.lane, False, kind=type(e).__name__, message=str(e),
                           retryable=False)
        return Outcome(held.claimed, held.lane, True, result=text)

    def _failure(self, definition: TaskDef, held: Held, error: BaseException) -> Outcome:
        policy = definition.retry
        kind = type(error).__qualname__[:MAX_ERROR_KIND]
        message = f"{error}"[:MAX_ERROR_MESSAGE]
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message = (message + "\n" + tb[-(MAX_ERROR_MESSAGE - len(message)):])[:2 * MAX_ERROR_MESSAGE]
        retryable = policy.retryable(error) and not held.context.canceled
        return Outcome(held.claimed, held.lane, False, kind=kind, message=message, retryable=retryable)

    def _finish(self, held: Held, outcome: Outcome) -> None:
        held.done = True
        if held.started:
            metrics.RUN_TIME.labels(held.lane).observe(time.monotonic() - held.started)
        self._outcomes.put(outcome)
        self._release_capacity()

    # -- recording outcomes ----------------------------------------------
    def _complete_loop(self) -> None:
        closing = False
        while not closing:
            batch: list[Outcome] = []
            item = self._outcomes.get()
            while True:
                if item is None:
                    closing = True
                else:
                    batch.append(item)
                if len(batch) >= 256:
                    break
                try:
                    item = self._outcomes.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._record(batch)

    def _record(self, batch: list[Outcome]) -> None:
        calls = []
        for o in batch:
            c = o.claimed
            if o.ok:
                calls.append(executions.complete(self.keys, c.execution_id, c.token, o.result))
            else:
                calls.append(executions.fail(self.keys, c.execution_id, c.token, o.kind, o.message,
                                             o.retryable, random.random()))
        replies = self.client.run_many(calls)
        hints: list[tuple[int, str]] = []
        to_dispatch: list[str] = []
        for o, reply in zip(batch, replies):
            with self._held_lock:
                self._held.pop(o.claimed.execution_id, None)
            if not o.ok:
                _log_failure(o, reply)
            if isinstance(reply, (Canceled, StaleLease, NotFound, InvalidState)):  # e.g. expired meanwhile
                if o.ok:
                    log.info("result of %s not recorded: %s", o.claimed.execution_id, reply)
                continue
            if isinstance(reply, Exception):
                if o.ok:
                    log.error("could not record %s: %s", o.claimed.execution_id, reply)
                continue
            state = reply.state
            if reply.dispatch:
                to_dispatch.append(o.claimed.execution_id)
            event = "succeeded" if o.ok else ("failed" if state == "failed" else "retried")
            metrics.EXECUTIONS.labels(event, o.lane).inc()
            if o.ok:
                self.stats.succeeded += 1
            elif state == "failed":
                self.stats.failed += 1
            else:
                self.stats.retried += 1
                partition = partition_of(o.claimed.execution_id, self.keys.partitions)
                if state == "ready":
                    hints.append((partition, o.lane))
                elif state == "delayed":
                    self._schedule_promotion(partition, reply.delay_ms)
        if hints:
            self.client.run_many(hint_commands(self.keys, hints))
        if to_dispatch:
            self._dispatch(to_dispatch)

    def _dispatch(self, execution_ids: list[str]) -> None:
        """Resolve children; while we have room, claim children on our lanes ourselves
        (no hint, so no other worker makes an empty claim for them)."""
        room = [self._free()]

        def keep(partition: int, lane: str) -> bool:
            if lane in self.lanes and room[0] > 0:
                room[0] -= 1
                self._wake(partition, lane)
                return True
            return False

        dispatch(self.client, execution_ids, claim_locally=keep)

    # -- delayed retries -------------------------------------------------
    def _schedule_promotion(self, partition: int, delay_ms: int) -> None:
        """Promote this partition when the retry is due, so retries do not wait for the
        reconciler's next pass (which still promotes them if this worker dies first)."""
        with self._timers_cv:
            heapq.heappush(self._timers, (time.monotonic() + delay_ms / 1000, partition))
            self._timers_cv.notify()

    def _promote_loop(self) -> None:
        """Promote due delayed work: a partition when one of our retries is due, and every
        partition once per ``promote_interval_s`` (jittered), so ``delay_s`` and retries
        other processes scheduled run with no daemon. One pipelined round, bounded per call."""
        next_pass = self._next_promote_pass()
        while not self._stopped.is_set():
            due = self._wait_for_due(next_pass)
            if time.monotonic() >= next_pass:
                due.update(range(self.keys.partitions))
                next_pass = self._next_promote_pass()
            if due and not self._stopped.is_set():
                self._promote(sorted(due))

    def _next_promote_pass(self) -> float:
        if self.promote_interval_s is None:
            return float("inf")
        return time.monotonic() + self.promote_interval_s * random.uniform(0.75, 1.25)

    def _wait_for_due(self, until: float) -> set[int]:
        """Block until a scheduled partition is due or ``until``; pop the due ones."""
        with self._timers_cv:
            while not self._stopped.is_set():
                now = time.monotonic()
                first = self._timers[0][0] if self._timers else until
                if min(first, until) <= now:
                    break
                self._timers_cv.wait(timeout=max(min(first, until, now + self.poll_s) - now, 0.001))
            due = set()
            while self._timers and self._timers[0][0] <= time.monotonic():
                due.add(heapq.heappop(self._timers)[1])
            return due

    def _promote(self, partitions: list[int]) -> None:
        """``exec_promote`` on each partition; hint the lanes that got work. A partition that
        had more due work than one call takes is scheduled again at once."""
        replies = self.client.run_many([executions.promote(self.keys, p, PROMOTE_BATCH)
                                        for p in partitions])
        hints, failed = [], []
        for partition, reply in zip(partitions, replies):
            if isinstance(reply, Exception):
                failed.append((partition, reply))
                continue
            hints += [(partition, lane) for lane in reply.lanes]
            if reply.promoted >= PROMOTE_BATCH:
                self._schedule_promotion(partition, 0)
        if failed:  # one line a pass: a node down fails every partition it serves
            log.warning("promoting %d partition(s) failed, first %d: %s; the next pass retries them",
                        len(failed), failed[0][0], failed[0][1])
        if hints:
            self.client.run_many(hint_commands(self.keys, hints))

    # -- lease renewal ---------------------------------------------------
    def _renew_loop(self) -> None:
        interval_s = self.lease_ms / 3000
        while not self._stopped.wait(interval_s):
            with self._held_lock:
                held = [h for h in self._held.values() if not h.done]
            if not held:
                continue
            calls = [executions.renew(self.keys, h.claimed.execution_id, h.claimed.token, self.lease_ms)
                     for h in held]
            for h, reply in zip(held, self.client.run_many(calls)):
                if isinstance(reply, Canceled):
                    h.context._cancel("canceled")
                elif isinstance(reply, TransitionRejected):
                    h.context._cancel(f"lease lost: {reply}")

