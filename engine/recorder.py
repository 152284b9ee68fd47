"""The recorder: handlers' outcomes go to the cluster in batches, and the replies say what next.

Handlers finish on many threads; one recorder thread drains their outcomes
(up to ``BATCH_MAX`` at a time) and records each batch in one pipelined round
(``exec_complete`` / ``exec_fail`` / ``exec_suspend``), so a busy worker pays one round trip per
batch, not per execution. Each reply then decides the follow-up: count it,
hint a retry that is ready now, schedule a promotion for a delayed one, and
dispatch a flow step that finished. A module of its own so that this mapping
can be tested against the Lua library without running handlers.
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import executions, metrics, outbox, wants
from engine.calls import FCall
from engine.client import Client
from engine.errors import Canceled, InvalidState, NotFound, StaleLease
from engine.held import HeldLeases
from engine.hints import hint_commands
from engine.replies import Claimed, FlowCompleteReply, WantReply
from keys import partition_of

log = logging.getLogger("flowslot.worker")

BATCH_MAX = 256  # outcomes recorded per pipelined round
HINT_WAIT_S = 0.005  # how long a hint waits for an outcome whose round it can ride (else it goes alone)


class _Wake:
    """What ``hint_soon`` puts on the outcome queue so an idle recorder sees its hints."""


_WAKE = _Wake()


@functools.lru_cache(maxsize=1024)
def lane_counter(event: str, lane: str) -> Any:
    """The executions counter of one event and lane (``labels`` looks it up under a lock)."""
    return metrics.EXECUTIONS.labels(event, lane)
STEP_EDGES_MAX = 150  # outgoing edges a flow step's completion resolves in its own call (as DISPATCH_BATCH)
SETTLE_MAX = 150  # wants a build's completion tells in its own call (the dispatcher tells the rest)


@dataclass
class Handoff:
    """How a worker takes a finished flow step's ready children straight from ``flow_complete``.

    ``reserve(n)`` takes up to n handler slots and says how many it took, ``start`` runs a
    child leased in a reply in one of them, ``unreserve(n)`` gives back slots left unused.
    """

    worker_id: str
    lanes: Sequence[str]
    lease_ms: int
    reserve: Callable[[int], int]
    start: Callable[[Claimed, str], None]
    unreserve: Callable[[int], None]
    builds: frozenset[str] = frozenset()  # producer tasks: a success completes with slice_complete

    def claim(self, room: int) -> tuple[int, int, str, Sequence[str]]:
        """The claim arguments of a want call that may lease up to ``room`` builds to us."""
        return room, self.lease_ms, self.worker_id, self.lanes

    def takes(self, outcome: Outcome) -> bool:
        """Whether the outcome's call may lease work to us: a flow step's or a build's success, or
        a build that found inputs missing (its upstream builds)."""
        c = outcome.claimed
        return bool(outcome.missing) or (outcome.ok and (bool(c.flow) or c.task in self.builds))


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
    suspend: str = ""  # the wait name, when the handler suspended (``wait_for``)
    timeout_ms: int = 0  # of that wait (0: none)
    missing: list[dict[str, Any]] = field(default_factory=list)  # slice_missing deps (a producer)


@dataclass
class WorkerStats:
    """What a worker did; the recorder counts the outcomes, the worker the rest."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    empty_claims: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _item(result: Any, pos: int) -> Any:
    """One execution's reply out of an ``exec_complete_many`` result (a whole call that failed,
    e.g. the cluster was unavailable, is that failure for each of its executions)."""
    return result if isinstance(result, Exception) else result[pos]


def log_failure(outcome: Outcome, reply: Any) -> None:
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


class Recorder:
    """Records outcomes in batches; ``schedule`` and ``dispatch`` are the worker's follow-ups."""

    def __init__(self, client: Client, held: HeldLeases, stats: WorkerStats,
                 schedule: Callable[[int, int], None], dispatch: Callable[[list[str]], None],
                 keeper: Callable[[], Callable[[int, str], bool]] | None = None,
                 handoff: Handoff | None = None) -> None:
        self.client = client
        self.handoff = handoff  # None: flow steps complete with exec_complete, the dispatcher resolves
        self.held = held
        self.stats = stats
        self.schedule = schedule  # (partition, delay_ms): promote that partition when a retry is due
        self.dispatch = dispatch  # execution ids whose outgoing edges need resolving
        self.keeper = keeper  # a claim_locally for builds that missing slices made ready at once
        self._outcomes: queue.SimpleQueue[Outcome | _Wake | None] = queue.SimpleQueue()  # C: cheap put
        self._recording = threading.Lock()  # one record() at a time: stats, reservations
        self._hints: list[tuple[int, str]] = []  # hint_soon's, for the next round
        self._hints_lock = threading.Lock()

    def put(self, outcome: Outcome) -> None:
        self._outcomes.put(outcome)

    def close(self) -> None:
        """``run`` records what is queued and sends the hints held, then returns."""
        self._outcomes.put(None)

    def hint_soon(self, targets: Sequence[tuple[int, str]]) -> None:
        """Hint (partition, lane) targets whose ready work exists already (a claim left it):
        sent in the pipelined round of the next batch recorded, so the caller makes no round
        trip for them, or alone once no outcome came for ``HINT_WAIT_S``. Only while ``run``
        runs (a worker that started)."""
        with self._hints_lock:
            first = not self._hints
            self._hints.extend(targets)
        if first:
            self._outcomes.put(_WAKE)

    def _take_hints(self) -> list[tuple[int, str]]:
        with self._hints_lock:
            hints, self._hints = self._hints, []
        return hints

    def _send_hints(self) -> None:
        hints = self._take_hints()
        if hints:
            self.client.run_many(hint_commands(self.client.keys, hints))

    def run(self) -> None:
        """Record outcomes in batches until ``close``."""
        closing = False
        while not closing:
            batch, closing, woken = self._gather(self._outcomes.get())
            if woken and not batch and not closing:  # hints only: wait a little for an outcome
                try:
                    batch, closing, _ = self._gather(self._outcomes.get(timeout=HINT_WAIT_S))
                except queue.Empty:
                    pass
            if batch:
                with self._recording:
                    self.record(batch)
            else:
                self._send_hints()
        self._send_hints()

    def _gather(self, item: Outcome | _Wake | None) -> tuple[list[Outcome], bool, bool]:
        """The batch starting at ``item`` and whatever else is queued, up to ``BATCH_MAX``; then
        whether ``close`` was called and whether ``hint_soon`` woke the recorder."""
        batch: list[Outcome] = []
        closing = woken = False
        while True:
            if item is None:
                closing = True
            elif isinstance(item, _Wake):
                woken = True
            else:
                batch.append(item)
            if len(batch) >= BATCH_MAX:
                break
            try:
                item = self._outcomes.get_nowait()
            except queue.Empty:
                break
        return batch, closing, woken

    def record_now(self, outcome: Outcome) -> bool:
        """Record one outcome on the caller's thread when nothing is queued and nobody is
        recording (False otherwise: ``put`` it). A finished flow step's child then starts one
        thread switch sooner; under load the recorder thread is busy and batches as before."""
        if not self._outcomes.empty() or not self._recording.acquire(blocking=False):
            return False
        try:
            self.record([outcome])
        finally:
            self._recording.release()
        return True

    def record(self, batch: list[Outcome]) -> None:
        """One pipelined round for the batch, then the hints and the dispatch its replies ask for."""
        keys = self.client.keys
        rooms = self._rooms(batch)
        calls, places = self._calls(batch, rooms)
        held_hints = self._take_hints()  # their work exists: they go in the same round
        try:
            results = self.client.run_many([*calls, *hint_commands(keys, held_hints)])
        except BaseException:
            self._give_back(sum(rooms))
            self.hint_soon(held_hints)
            raise
        replies = [results[call] if pos < 0 else _item(results[call], pos) for call, pos in places]
        hints: list[tuple[int, str]] = []
        to_dispatch: list[str] = []
        senders: set[int] = set()
        unused = sum(rooms)
        waits: list[tuple[int, WantReply]] = []
        self.held.forget_many([o.claimed.execution_id for o in batch])
        for o, reply in zip(batch, replies, strict=True):
            if isinstance(reply, FlowCompleteReply):
                unused -= self._handed_off(reply, hints, to_dispatch)
                if reply.sent:
                    senders.add(partition_of(o.claimed.execution_id, keys.partitions))
            if o.suspend:
                self._suspended(o, reply, hints)
                continue
            if o.missing:
                unused -= self._missing(o, reply, waits)
                continue
            if not o.ok:
                log_failure(o, reply)
            if isinstance(reply, (Canceled, StaleLease, NotFound, InvalidState)):  # e.g. expired meanwhile
                if o.ok:
                    log.info("result of %s not recorded: %s", o.claimed.execution_id, reply)
                continue
            if isinstance(reply, Exception):
                if o.ok:
                    log.error("could not record %s: %s", o.claimed.execution_id, reply)
                continue
            if isinstance(reply, WantReply):  # a build's success (slice_complete)
                self._count(o, "succeeded")
                unused -= self._leased(reply)
                waits.append((partition_of(o.claimed.execution_id, keys.partitions), reply))
                continue
            if reply.dispatch:
                to_dispatch.append(o.claimed.execution_id)
            self._count(o, reply.state)
            if not o.ok and reply.state in ("ready", "delayed"):
                partition = partition_of(o.claimed.execution_id, keys.partitions)
                if reply.state == "ready":
                    hints.append((partition, o.lane))
                else:
                    self.schedule(partition, reply.delay_ms)
        self._give_back(unused)
        if hints:
            self.client.run_many(hint_commands(keys, hints))
        for partition in sorted(senders):  # register the remote waits now (else a worker's pass does)
            outbox.flush_now(self.client, partition)
        if to_dispatch:
            self.dispatch(to_dispatch)
        if waits:
            wants.follow(self.client, waits, self.dispatch, self.keeper() if self.keeper else None)

    def _calls(self, batch: list[Outcome], rooms: list[int]) -> tuple[list[FCall], list[tuple[int, int]]]:
        """The calls that record the batch, and where each outcome's reply is: (call index,
        position in an ``exec_complete_many`` or ``flow_complete_many`` reply, or -1 for a call
        of its own). Plain successes, and flow steps' successes, are grouped by partition, up to
        ``COMPLETE_MANY_MAX`` per call."""
        keys = self.client.keys
        calls: list[FCall] = []
        places: list[tuple[int, int]] = []
        groups: dict[int, list[int]] = {}  # partition -> positions in batch of plain successes
        steps: dict[int, list[int]] = {}  # partition -> positions in batch of flow steps' successes
        for n, (o, room) in enumerate(zip(batch, rooms, strict=True)):
            c = o.claimed
            if o.suspend:
                call = executions.suspend(keys, c.execution_id, c.token, o.suspend, o.timeout_ms)
            elif o.missing and self.handoff is not None:
                call = wants.missing_call(keys, c.execution_id, c.token, o.missing, self.handoff.claim(room))
            elif o.missing:
                call = wants.missing_call(keys, c.execution_id, c.token, o.missing)
            elif o.ok and c.flow and self.handoff is not None:
                steps.setdefault(partition_of(c.execution_id, keys.partitions), []).append(n)
                places.append((-1, -1))  # placed below
                continue
            elif o.ok and self.handoff is not None and c.task in self.handoff.builds:
                call = wants.complete_call(keys, c.execution_id, c.token, o.result, SETTLE_MAX,
                                           self.handoff.claim(room))
            elif o.ok:
                groups.setdefault(partition_of(c.execution_id, keys.partitions), []).append(n)
                places.append((-1, -1))  # placed below
                continue
            else:
                call = executions.fail(keys, c.execution_id, c.token, o.kind, o.message, o.retryable,
                                       random.random())
            places.append((len(calls), -1))
            calls.append(call)
        for partition, members in groups.items():
            for start in range(0, len(members), executions.COMPLETE_MANY_MAX):
                chunk = members[start:start + executions.COMPLETE_MANY_MAX]
                if len(chunk) == 1:
                    c = batch[chunk[0]].claimed
                    places[chunk[0]] = (len(calls), -1)
                    calls.append(executions.complete(keys, c.execution_id, c.token, batch[chunk[0]].result))
                    continue
                items = [(batch[n].claimed.execution_id, batch[n].claimed.token, batch[n].result)
                         for n in chunk]
                for pos, n in enumerate(chunk):
                    places[n] = (len(calls), pos)
                calls.append(executions.complete_many(keys, partition, items))
        for members in steps.values():
            for start in range(0, len(members), executions.COMPLETE_MANY_MAX):
                chunk = members[start:start + executions.COMPLETE_MANY_MAX]
                calls.append(self._steps_call(batch, rooms, chunk))
                for pos, n in enumerate(chunk):
                    places[n] = (len(calls) - 1, -1 if len(chunk) == 1 else pos)
        return calls, places

    def _steps_call(self, batch: list[Outcome], rooms: list[int], chunk: list[int]) -> FCall:
        """The call that records the successes of the flow steps at ``chunk`` (one partition):
        ``flow_complete`` for one, ``flow_complete_many`` for more, which may lease children
        into all of their reserved slots."""
        assert self.handoff is not None
        h, keys = self.handoff, self.client.keys
        if len(chunk) == 1:
            o = batch[chunk[0]]
            c = o.claimed
            return executions.complete_step(keys, c.execution_id, c.token, o.result, STEP_EDGES_MAX,
                                            rooms[chunk[0]], h.lease_ms, h.worker_id, h.lanes)
        items = [(batch[n].claimed.execution_id, batch[n].claimed.token, batch[n].result) for n in chunk]
        return executions.complete_steps(keys, partition_of(items[0][0], keys.partitions), items, STEP_EDGES_MAX,
                                         sum(rooms[n] for n in chunk), h.lease_ms, h.worker_id, h.lanes)

    def _missing(self, outcome: Outcome, reply: Any, waits: list[tuple[int, WantReply]]) -> int:
        """A build that waits for missing slices: start the upstream builds the call leased to
        us; their wants' messages are to follow. Returns how many reserved slots they took."""
        eid = outcome.claimed.execution_id
        if isinstance(reply, Exception):
            log.info("missing slices of %s not recorded: %s", eid, reply)
            return 0
        self.stats.extra["missing"] = self.stats.extra.get("missing", 0) + 1
        waits.append((partition_of(eid, self.client.keys.partitions), reply))
        return self._leased(reply)

    def _leased(self, reply: WantReply) -> int:
        """Start the builds a want call leased to us; returns how many slots they took."""
        if self.handoff is None:
            return 0
        for claimed, lane in zip(reply.claimed, reply.claimed_lanes, strict=True):
            lane_counter("claimed", lane).inc()
            self.handoff.start(claimed, lane)
        return len(reply.claimed)

    def _rooms(self, batch: list[Outcome]) -> list[int]:
        """Handler slots each outcome's call may fill with children or builds: the free ones,
        shared out among the batch's outcomes that can lease work to us (``Handoff.takes``),
        reserved now so nothing else takes them."""
        rooms = [0] * len(batch)
        if self.handoff is None:
            return rooms
        handoff = self.handoff
        steps = [n for n, o in enumerate(batch) if not o.suspend and handoff.takes(o)]
        if not steps:
            return rooms
        room = self.handoff.reserve(BATCH_MAX)
        share, extra = divmod(room, len(steps))
        for rank, n in enumerate(steps):
            rooms[n] = share + (1 if rank < extra else 0)
        return rooms

    def _give_back(self, unused: int) -> None:
        if unused > 0 and self.handoff is not None:
            self.handoff.unreserve(unused)

    def _handed_off(self, reply: FlowCompleteReply, hints: list[tuple[int, str]],
                    to_dispatch: list[str]) -> int:
        """Start the children the call leased to us, hint the others, queue the skipped ones
        with children for the dispatcher; returns how many reserved slots the children took."""
        assert self.handoff is not None
        keys = self.client.keys
        for step in reply.ready:
            hints.append((partition_of(step.id, keys.partitions), step.lane))
        to_dispatch.extend(reply.cascade)
        for claimed, lane in zip(reply.claimed, reply.claimed_lanes, strict=True):
            lane_counter("claimed", lane).inc()
            self.handoff.start(claimed, lane)
        return len(reply.claimed)

    def _suspended(self, outcome: Outcome, reply: Any, hints: list[tuple[int, str]]) -> None:
        """Count a recorded suspension; hint the lane when its signal had come meanwhile."""
        eid = outcome.claimed.execution_id
        if isinstance(reply, Exception):
            log.info("suspension of %s not recorded: %s", eid, reply)
            return
        self.stats.extra["suspended"] = self.stats.extra.get("suspended", 0) + 1
        if reply.state == "ready":
            hints.append((partition_of(eid, self.client.keys.partitions), reply.lane))

    def _count(self, outcome: Outcome, state: str) -> None:
        event = "succeeded" if outcome.ok else ("failed" if state == "failed" else "retried")
        lane_counter(event, outcome.lane).inc()
        if outcome.ok:
            self.stats.succeeded += 1
        elif state == "failed":
            self.stats.failed += 1
        else:
            self.stats.retried += 1
