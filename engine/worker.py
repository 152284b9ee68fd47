"""The worker runtime: hints in, claims in batches, handlers, results out.

Threads, each with one job:
  * hint listeners (one per lane × hint list) block on ``BLMPOP`` only while
    the worker has free capacity, so a busy worker never swallows a hint;
  * the claim loop turns wake-ups into ``exec_claim`` calls sized to the free
    capacity, and re-queues a partition that still has ready work;
  * handlers run on long-lived handler threads (plain functions,
    ``engine/handlers.py``) or on one event loop (``async def``);
  * a finished flow step's ready children come back leased in its
    completion's reply (``flow_complete``), and so do the builds a build's
    completion resumed (``slice_complete``) or its missing slices started
    (``slice_missing``); they start in the slots the recorder reserved for them;
  * the recorder records outcomes in batches (one pipelined round per batch);
  * the renewer extends every held lease at a third of the lease and passes
    cancellations to the handlers;
  * the promoter makes due delayed work ready (``exec_promote``) on every
    partition about once a second, and on a partition as soon as one of this
    worker's retries is due, so delays and back-offs need no daemon.

The mechanisms that can be tested alone live in their own modules: the wake
queue (``engine/wakeups.py``), the held leases (``engine/held.py``), the
recorder (``engine/recorder.py``), the renewer (``engine/renewer.py``) and the
promoter with its timer heap (``engine/promoter.py``). This module wires them
to the capacity count, the handlers and the shutdown.

SIGTERM (or SIGINT) stops claiming, lets running handlers finish for
``grace_s`` (saying every few seconds what it waits for), hands back the
leases of those that did not (``exec_release``), and returns; a second
signal hands them back at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from engine import checks, executions, metrics, wants
from engine.app import App, TaskDef
from engine.codec import decode, encode
from engine.context import Suspend, TaskContext, _current
from engine.dispatcher import dispatch
from engine.errors import ContractError, EngineError
from engine.handlers import HandlerThreads
from engine.held import Held, HeldLeases
from engine.hints import hint_commands, pop_hints
from engine.promoter import PROMOTE_BATCH as PROMOTE_BATCH
from engine.promoter import Promoter
from engine.recorder import Handoff, Outcome, Recorder, lane_counter
from engine.recorder import WorkerStats as WorkerStats
from engine.refs import substitute
from engine.renewer import Renewer
from engine.replies import Claimed
from engine.router import Command
from engine.wakeups import WakeQueue
from engine.wants import MissingDependencies
from keys import partition_of

log = logging.getLogger("flowslot.worker")

MAX_ERROR_KIND = 200
SHUTDOWN_REPORT_S = 5.0  # how often a stopping worker says what it still waits for
SIGNAL_POLL_S = 0.1  # how soon the main thread acts on a signal the handler counted
MAX_ERROR_MESSAGE = 4096


@functools.lru_cache(maxsize=1024)
def _run_time(lane: str) -> Any:
    return metrics.RUN_TIME.labels(lane)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The async handlers' loop: runs until the shutdown stops it, then is closed (a loop left
    open warns when it is collected, at whatever moment that happens to be)."""
    try:
        loop.run_forever()
    finally:
        loop.close()


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
        self._held = HeldLeases()
        self._capacity = threading.Condition()
        self._inflight = 0
        self._wakeups = WakeQueue(poll_s)
        self._promoter = Promoter(self.client, promote_interval_s, poll_s)
        handoff = Handoff(self.id, self.lanes, lease_ms, self._reserve, self._start_reserved, self._unreserve,
                          frozenset(p.task.name for p in app.producers))
        self._handoff = handoff
        self._recorder = Recorder(self.client, self._held, self.stats, self._promoter.schedule, self._dispatch,
                                  self._keeper, handoff)
        self._renewer = Renewer(self.client, self._held, lease_ms)
        self._record_inline = False  # set by start(): the recorder thread runs from then on
        self._stopping = threading.Event()
        self._signals = 0  # SIGTERM/SIGINT received (the handler only counts)
        self._signal_name = ""
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = HandlerThreads(concurrency, "flowslot-task")
        self._inline = threading.local()  # per handler thread: the next handler it runs itself
        self._loop: asyncio.AbstractEventLoop | None = None

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
        while not self._signals and not self._stopping.is_set():
            self._stopping.wait(SIGNAL_POLL_S)
        self.stop()
        self._shutdown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        """First signal: stop claiming. Second: stop waiting for running handlers.

        Only plain assignments here, no lock: a signal handler runs in the main
        thread between two bytecodes, possibly while that thread holds the very
        lock an Event or Condition would take, which would deadlock the worker.
        The main thread reads these fields and does the rest."""
        self._signal_name = signal.Signals(signum).name
        self._signals += 1

    def _aborting(self) -> bool:
        """A second signal came: hand the running leases back now."""
        return self._signals >= 2

    @property
    def running_handlers(self) -> int:
        """Handlers started and not yet finished."""
        return self._inflight

    def start(self) -> Worker:
        """Start every thread and return (the caller owns the lifetime)."""
        self._spawn(self._claim_loop, "claim")
        self._spawn(self._complete_loop, "complete")
        self._record_inline = True
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
        self._wakeups.stop()
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
        if self._aborting():
            log.warning("worker %s: second %s, handing back the leases of %d running handler(s) now",
                        self.id, self._signal_name, self._inflight)
        self._release_held()
        self._recorder.close()
        self._stopped.set()
        self._promoter.stop()
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
        while not self._aborting():
            now = time.monotonic()
            if self._inflight <= 0 or now >= deadline:
                return
            if now >= report_at:
                log.warning("worker %s stopping%s: waiting for %d running handler(s), %.0f s of grace "
                            "left; SIGINT/SIGTERM again (Ctrl-C) hands their leases back now", self.id,
                            f" on {self._signal_name}" if self._signal_name else "", self._inflight,
                            deadline - now)
                report_at = now + SHUTDOWN_REPORT_S
            due = self._pool.spread_due()  # the claim loop has stopped: batches are spread from here
            with self._capacity:
                self._capacity.wait(timeout=0.1 if due is None else min(due, 0.1))

    def _release_held(self) -> None:
        held = self._held.running()
        if not held:
            return
        # Release first, then cancel: a cooperative handler that returns as soon as it is
        # canceled must find its lease already handed back, or it would record its result.
        calls = [executions.release(self.keys, h.claimed.execution_id, h.claimed.token) for h in held]
        replies = self.client.run_many(calls)
        for h in held:
            h.context._cancel("worker shutting down")
        hints, released = [], []
        for h, reply in zip(held, replies, strict=True):
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
                due = self._pool.spread_due()  # a full worker's slots may wait behind a slow handler
                self._capacity.wait(timeout=self.poll_s if due is None else min(due, self.poll_s))
            return not self._stopping.is_set()

    def _release_capacity(self) -> None:
        self._unreserve(1)

    def _reserve(self, n: int) -> int:
        """Take up to n free handler slots for children a completion may lease to us."""
        with self._capacity:
            if self._stopping.is_set():
                return 0
            taken = max(0, min(n, self.batch_max, self._free()))
            self._inflight += taken
            return taken

    def _unreserve(self, n: int) -> None:
        """Give back n handler slots. Only a worker with no free slot has waiters (the claim
        loop and the hint listeners wait for one; the shutdown for none in use), so they are
        woken when the first slot frees or the last handler ends, not at every handler's end."""
        with self._capacity:
            was_full = self._free() <= 0
            self._inflight -= n
            if (was_full and self._free() > 0) or self._inflight <= 0:
                self._capacity.notify_all()

    # -- wake-ups --------------------------------------------------------
    def _listen_loop(self, lane: str, index: int) -> None:
        while not self._stopping.is_set():
            if not self._wait_for_capacity():
                return
            partitions = self.client.run(pop_hints(self.keys, lane, index, self.poll_s, self.batch_max))
            for partition in partitions:
                if 0 <= partition < self.keys.partitions:
                    self._wakeups.wake(partition, lane)

    def _sweep(self) -> None:
        """At start, look for ready work whose hints were lost (one pipelined round)."""
        calls = [Command(("ZCARD", self.keys.ready(p, lane)), self.keys.ready(p, lane))
                 for lane in self.lanes for p in range(self.keys.partitions)]
        counts = self.client.run_many(calls)
        targets = [(p, lane) for lane in self.lanes for p in range(self.keys.partitions)]
        for (p, lane), n in zip(targets, counts, strict=True):
            if isinstance(n, int) and n > 0:
                self._wakeups.wake(p, lane)

    # -- claiming --------------------------------------------------------
    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            # (the claim loop hands a claim's plain handlers over as one batch: it also spreads
            # the batches that wait too long, HandlerThreads.spread_due, waking in time for them)
            wakeup = self._wakeups.next(self._pool.spread_due())
            if wakeup is None or not self._wait_for_capacity():
                continue
            partition, lane = wakeup
            self._claim(partition, lane)

    def _claim(self, partition: int, lane: str) -> None:
        count = min(self._free(), self.batch_max)
        if count <= 0:
            self._wakeups.wake(partition, lane)
            return
        reply = self.client.run(executions.claim(self.keys, partition, lane, count, self.lease_ms, self.id))
        if not reply.claimed:
            self.stats.empty_claims += 1
        else:
            lane_counter("claimed", lane).inc(len(reply.claimed))
            with self._capacity:  # the batch's slots and count in one go, not one lock per execution
                self._inflight += len(reply.claimed)
                self.stats.claimed += len(reply.claimed)
        if reply.expired:
            self._dispatch(reply.expired)
        if reply.claimed:
            self._launch_many(reply.claimed, lane)
        if reply.remaining > 0:
            if self._free() > 0:
                self._wakeups.wake(partition, lane)
            elif self._record_inline:  # the recorder sends it with its next round
                self._recorder.hint_soon([(partition, lane)])
            else:
                self.client.run_many(hint_commands(self.keys, [(partition, lane)]))

    def _start(self, claimed: Claimed, lane: str) -> None:
        """Run one leased execution in a new handler slot."""
        with self._capacity:
            self._inflight += 1
        self._start_reserved(claimed, lane)

    def _start_reserved(self, claimed: Claimed, lane: str) -> None:
        """Run a leased execution in a handler slot already counted in ``_inflight``."""
        with self._capacity:  # the claim loop and the recorder (a flow step's children) both start
            self.stats.claimed += 1
        self._launch(claimed, lane)

    def _launch(self, claimed: Claimed, lane: str) -> None:
        """Hold the lease and run its handler (slot and ``stats.claimed`` already counted)."""
        self._launch_many([claimed], lane)

    def _launch_many(self, claimed: Sequence[Claimed], lane: str) -> None:
        """Hold a batch's leases (one lock) and run their handlers: the plain ones as one batch
        of the handler threads (``HandlerThreads.submit_batch``: one thread woken, not one each)."""
        held = [Held(c, lane, TaskContext(c.execution_id, c.attempt, c.deadline_ms, self, c.flow, c.step))
                for c in claimed]
        self._held.add_many(held)
        if len(held) == 1 or getattr(self._inline, "open", False):  # (_run keeps the first for this thread)
            for h in held:
                self._run(h)
            return
        plain: list[tuple[TaskDef, Held]] = []
        for h in held:
            definition = self.app.tasks.get(h.claimed.task)
            if definition is None or definition.is_async:
                self._run(h)
            else:
                plain.append((definition, h))
        if plain:
            self._pool.submit_batch(self._run_sync, plain)

    def _run(self, held: Held) -> None:
        claimed, lane = held.claimed, held.lane
        definition = self.app.tasks.get(claimed.task)
        if definition is None:
            self._finish(held, Outcome(claimed, lane, False, kind="unknown_task",
                                       message=f"no handler registered for task {claimed.task!r} "
                                               f"in worker {self.id}", retryable=False))
            return
        if definition.is_async:
            held.future = asyncio.run_coroutine_threadsafe(self._run_async(definition, held),
                                                           self._event_loop())
        elif getattr(self._inline, "open", False):  # a handler thread recording its success
            self._inline.open = False
            self._inline.next = (definition, held)
        else:
            self._pool.submit(self._run_sync, definition, held)

    # -- running handlers ------------------------------------------------
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=_run_loop, args=(loop,), name="flowslot-asyncio", daemon=True).start()
            self._loop = loop
        return self._loop

    def _run_sync(self, definition: TaskDef, held: Held) -> None:
        """Run a handler, then on this same thread the first plain child its recorded success
        leased to us (``_finish``): a chain's next step starts without a thread switch."""
        step: tuple[TaskDef, Held] | None = (definition, held)
        while step is not None:
            self._run_one(*step)
            step = self._inline.__dict__.pop("next", None)

    def _run_one(self, definition: TaskDef, held: Held) -> None:
        token = _current.set(held.context)
        held.started = time.monotonic()
        metrics.CLAIM_TO_START.observe(held.started - held.claimed_at)
        try:
            args, kwargs = self._arguments(held)
            outcome = self._success(held, definition.fn(*args, **kwargs))
        except Suspend as s:
            outcome = self._suspended(held, s)
        except MissingDependencies as m:
            outcome = self._missing(held, m)
        except BaseException as e:  # noqa: BLE001 - a handler's failure is data, recorded below
            outcome = self._failure(definition, held, e)
        finally:
            _current.reset(token)
        self._finish(held, outcome, on_handler_thread=True)

    async def _run_async(self, definition: TaskDef, held: Held) -> None:
        _current.set(held.context)
        held.context._task = asyncio.current_task()
        held.started = time.monotonic()
        metrics.CLAIM_TO_START.observe(held.started - held.claimed_at)
        try:
            args, kwargs = self._arguments(held)
            outcome = self._success(held, await definition.fn(*args, **kwargs))
        except Suspend as s:
            outcome = self._suspended(held, s)
        except MissingDependencies as m:
            outcome = self._missing(held, m)
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

    def _suspended(self, held: Held, suspend: Suspend) -> Outcome:
        """The handler called ``wait_for`` before its signal came: record a suspension."""
        return Outcome(held.claimed, held.lane, False, kind="suspended", suspend=suspend.name,
                       timeout_ms=suspend.timeout_ms)

    def _missing(self, held: Held, missing: MissingDependencies) -> Outcome:
        """A producer found input slices missing: record the wait (``slice_missing``); a name no
        producer builds, or a task that builds no slice, fails the execution for good."""
        task = held.claimed.task
        try:
            if not any(p.task.name == task for p in self.app.producers):
                raise ContractError(f"task {task} raised MissingDependencies but produces no slice "
                                    "(register it with @app.produces)")
            deps = wants.missing_deps(self.app, missing.slices)
        except ContractError as e:
            return Outcome(held.claimed, held.lane, False, kind="ContractError", message=str(e),
                           retryable=False)
        return Outcome(held.claimed, held.lane, False, kind="missing", missing=deps)

    def _failure(self, definition: TaskDef, held: Held, error: BaseException) -> Outcome:
        policy = definition.retry
        kind = type(error).__qualname__[:MAX_ERROR_KIND]
        message = f"{error}"[:MAX_ERROR_MESSAGE]
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message = (message + "\n" + tb[-(MAX_ERROR_MESSAGE - len(message)):])[:2 * MAX_ERROR_MESSAGE]
        retryable = policy.retryable(error) and not held.context.canceled
        return Outcome(held.claimed, held.lane, False, kind=kind, message=message, retryable=retryable)

    def _finish(self, held: Held, outcome: Outcome, on_handler_thread: bool = False) -> None:
        held.done = True
        if held.started:
            _run_time(held.lane).observe(time.monotonic() - held.started)
        # (not on the event loop of async handlers: the call would hold up the others)
        # (not for a batch's task with more after it: the recorder groups the batch's outcomes)
        if not (on_handler_thread and self._record_inline and self._handoff.takes(outcome)
                and not self._pool.batch_continues() and self._record_inline_now(outcome)):
            self._recorder.put(outcome)
        self._release_capacity()

    def _record_inline_now(self, outcome: Outcome) -> bool:
        """``_record_now`` on a handler thread, which keeps the first plain child the reply
        leases to us to run next itself (``_start_reserved``, ``_run_sync``)."""
        self._inline.open = True
        try:
            return self._record_now(outcome)
        finally:
            self._inline.open = False

    def _record_now(self, outcome: Outcome) -> bool:
        """A flow step's or a build's success, or a build's missing slices, recorded on its
        handler's thread when the recorder is idle (``Recorder.record_now``); an error there is
        logged and the lease left to expire, as the recorder thread would leave it."""
        try:
            return self._recorder.record_now(outcome)
        except Exception as e:  # noqa: BLE001 - the handler thread must go on; the lease expires
            log.warning("could not record %s: %s", outcome.claimed.execution_id, e)
            return True

    # -- the other threads (each mechanism in its own module) -----------
    def _complete_loop(self) -> None:
        self._recorder.run()

    def _renew_loop(self) -> None:
        self._renewer.run(self._stopped)

    def _promote_loop(self) -> None:
        self._promoter.run(self._stopped)

    # -- dispatching -----------------------------------------------------
    def _dispatch(self, execution_ids: list[str]) -> None:
        """Resolve children; while we have room, claim children on our lanes ourselves
        (no hint, so no other worker makes an empty claim for them)."""
        dispatch(self.client, execution_ids, claim_locally=self._keeper())

    def _keeper(self) -> Callable[[int, str], bool]:
        """``claim_locally`` for one dispatch: wake our own claim loop while we have room."""
        room = [self._free()]

        def keep(partition: int, lane: str) -> bool:
            if lane in self.lanes and room[0] > 0:
                room[0] -= 1
                self._wakeups.wake(partition, lane)
                return True
            return False

        return keep
