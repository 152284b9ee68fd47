"""Scanners: each repairs one kind of straggler, bounded per partition per pass.

A scanner builds one FCALL per partition; a pass runs them pipelined per node
(one round trip per node per round) and asks again only where a batch came
back full, up to ``max_rounds``. Every call reads a time-ordered index from
its due end, so a pass over a quiet cluster costs a number of commands that
depends on the partitions, never on how many executions are stored. Each
scanner counts what it repaired; a healthy system repairs nearly nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import (
    executions,
    flowops,
    metrics,
    outbox,
    replies,
    wantoutbox,  # noqa: F401 - registers the want message kinds this process applies
    wants,
)
from engine.calls import FCall
from engine.client import Client
from engine.dispatcher import dispatch
from engine.errors import NotFound
from engine.hints import hint_commands
from engine.router import Command
from reconciler.throttle import LogThrottle

log = logging.getLogger("flowslot.reconciler")
THROTTLE = LogThrottle(log)


@dataclass
class ScanResult:
    scanned_partitions: int = 0
    repaired: int = 0
    rounds: int = 0
    commands: int = 0
    details: list[Any] = field(default_factory=list)
    errors: int = 0
    failed_partitions: list[int] = field(default_factory=list)


@dataclass
class Digest:
    """What one partition's reply asks of the pass."""

    repaired: int = 0
    hints: list[tuple[int, str]] = field(default_factory=list)
    dispatch: list[str] = field(default_factory=list)
    full: bool = False
    details: list[Any] = field(default_factory=list)


class Scanner:
    """Base: subclasses build the call for one partition and digest its reply."""

    name = "scanner"
    default_interval_s = 1.0
    rounds_per_pass = 10  # calls per partition per pass at most, while batches come back full

    def __init__(self, batch: int = 200, interval_s: float | None = None) -> None:
        self.batch = batch
        self.interval_s = self.default_interval_s if interval_s is None else interval_s

    def call(self, client: Client, partition: int) -> FCall:
        raise NotImplementedError

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        raise NotImplementedError

    def finish(self, client: Client, digests: list[Digest], result: ScanResult) -> None:
        """After a round: push hints, dispatch terminal flow steps."""
        hints = [h for d in digests for h in d.hints]
        if hints:
            commands = hint_commands(client.keys, hints)
            client.run_many(commands)
            result.commands += len(commands)
        to_dispatch = [eid for d in digests for eid in d.dispatch]
        if to_dispatch:
            stats = dispatch(client, to_dispatch)
            result.commands += stats.rounds

    def run(self, client: Client, partitions: Sequence[int],
            max_rounds: int | None = None) -> ScanResult:
        """Call, digest and finish every partition; a partition that errors is skipped this pass.

        Its error is logged (rate-limited) and counted in ``result.errors`` and
        ``result.failed_partitions``; every other partition is still repaired.
        """
        result = ScanResult(scanned_partitions=len(partitions))
        todo = list(partitions)
        if max_rounds is None:
            max_rounds = self.rounds_per_pass
        while todo and result.rounds < max_rounds:
            result.rounds += 1
            replies = client.run_many([self.call(client, p) for p in todo])
            result.commands += len(todo)
            digested = [(p, d) for p, reply in zip(todo, replies, strict=False)
                        if (d := self._digest_or_skip(client, p, reply, result)) is not None]
            digests = [d for _, d in digested]
            try:
                self.finish(client, digests, result)
            except Exception as e:  # noqa: BLE001 - its repairs are done; hints/dispatch have their own scanners
                self._count_error(client, result, None, e)
            for d in digests:
                result.repaired += d.repaired
                result.details.extend(d.details)
            todo = [p for p, d in digested if d.full]
        return result

    def _digest_or_skip(self, client: Client, partition: int, reply: Any, result: ScanResult) -> Digest | None:
        """The partition's digest, or None (counted, logged) when its reply or digest is an error."""
        try:
            if isinstance(reply, Exception):
                raise reply
            return self.digest(client, partition, reply)
        except Exception as e:  # noqa: BLE001 - one partition's fault must not stop the others
            self._count_error(client, result, partition, e)
            return None

    def _count_error(self, client: Client, result: ScanResult, partition: int | None, error: Exception) -> None:
        result.errors += 1
        if partition is not None:
            result.failed_partitions.append(partition)
        where = "finishing the round" if partition is None else f"partition {partition}"
        THROTTLE.warning((client.keys.namespace, self.name, partition, type(error).__name__),
                         "scanner %s skipped %s: %s: %s", self.name, where, type(error).__name__, error)


class AgedScanner(Scanner):
    """A scanner that repairs only what has waited ``age_s`` (its ``default_age_s`` unless
    given): a younger one is most likely still in the hands of the process that made it."""

    default_batch = 200
    default_age_s = 0.0

    def __init__(self, batch: int | None = None, interval_s: float | None = None,
                 age_s: float | None = None) -> None:
        super().__init__(self.default_batch if batch is None else batch, interval_s)
        self.age_ms = int((self.default_age_s if age_s is None else age_s) * 1000)


class DependencyScanner(AgedScanner):
    """``pending_dispatch`` records older than a threshold → dispatch (a crashed cascade)."""

    name = "dependency"
    default_age_s = 5.0

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_due", (client.keys.pending_dispatch(partition),), (self.age_ms, self.batch),
                     read_only=True)

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        due = replies.rec_due(reply)
        return Digest(repaired=len(due), dispatch=due, full=len(due) >= self.batch)


class LeaseExpiry(Scanner):
    """Expired leases → attempt failed (``lease_lost``) → retry or fail → dispatch."""

    name = "lease_expiry"

    def call(self, client: Client, partition: int) -> FCall:
        return executions.expire_leases(client.keys, partition, self.batch, random.random())

    def digest(self, client: Client, partition: int, reply: list[replies.ExpiredLease]) -> Digest:
        return Digest(repaired=len(reply),
                      hints=[(partition, lost.lane) for lost in reply if lost.state == "ready"],
                      dispatch=[lost.id for lost in reply if lost.dispatch],
                      full=len(reply) >= self.batch)


class DelayedPromoter(AgedScanner):
    """Delayed / backing-off executions due ``age_s`` ago and still not ready → ready → hint
    (``exec_promote``).

    The workers promote on time (a timer for their own retries, a pass about once a
    second for the rest), so what the daemon finds this late is what they missed: a
    repair. Without the age, a pass landing between a retry's due time and its worker's
    timer promoted it first and counted a healthy system's retry as repaired.
    """

    name = "delayed"
    default_interval_s = 0.5
    default_age_s = 2.0

    def call(self, client: Client, partition: int) -> FCall:
        return executions.promote(client.keys, partition, self.batch, self.age_ms)

    def digest(self, client: Client, partition: int, reply: replies.PromoteReply) -> Digest:
        return Digest(repaired=reply.promoted, hints=[(partition, lane) for lane in reply.lanes],
                      full=reply.promoted >= self.batch)


class HintRepair(AgedScanner):
    """Ready work waiting longer than a threshold → hint again (its hint was lost)."""

    name = "hint_repair"
    default_interval_s = 5.0
    default_batch = 100
    default_age_s = 10.0

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_stale_ready", (client.keys.counts(partition),), (self.age_ms, self.batch),
                     read_only=True)

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        lanes = replies.rec_stale_ready(reply)
        return Digest(repaired=len(lanes), hints=[(partition, lane) for lane in lanes])


class DeadlineExpiry(Scanner):
    """Executions past their deadline → ``expired`` → dispatch."""

    name = "timeouts"

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("exec_expire_deadlines", (client.keys.deadlines(partition),), (self.batch,))

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        expired = replies.exec_expire_deadlines(reply)
        if expired:  # an expired remote wait sent wait_unregister: apply it now
            outbox.flush_now(client, partition)
        return Digest(repaired=len(expired), dispatch=[e.id for e in expired if e.dispatch],
                      full=len(expired) >= self.batch)


class UnsealedFlows(AgedScanner):
    """Flows whose batched submit never finished → canceled (never half-runnable)."""

    name = "unsealed_flows"
    default_interval_s = 10.0
    default_batch = 50
    default_age_s = 300.0

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_due", (client.keys.unsealed(partition),), (self.age_ms, self.batch),
                     read_only=True)

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        flow_ids = replies.rec_due(reply)
        for flow_id in flow_ids:
            flowops.cancel(client, flow_id, "its submit never finished")
        return Digest(repaired=len(flow_ids), details=flow_ids)


class FlowOps(AgedScanner):
    """Multi-call flow operations (seal, cancel, resume, retry) a crashed caller left
    half-done → finished, from the ``flow_ops`` index."""

    name = "flow_ops"
    default_interval_s = 5.0
    default_batch = 50
    default_age_s = 30.0

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_due", (client.keys.flow_ops(partition),), (self.age_ms, self.batch),
                     read_only=True)

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        members = replies.rec_due(reply)
        for member in members:
            log.warning("finishing flow operation %s left by a crashed caller", member)
            try:
                flowops.finish_op(client, member)
            except NotFound:  # the flow is gone (retention): nothing left to finish
                key = client.keys.flow_ops(partition)
                client.run(Command(("ZREM", key, member), key))
        return Digest(repaired=len(members), details=members, full=len(members) >= self.batch)


class Retention(Scanner):
    """Terminal executions and flows older than the retention → deleted with all their keys."""

    name = "retention"
    default_interval_s = 30.0

    def __init__(self, batch: int = 200, interval_s: float | None = None,
                 retention_s: float = 7 * 24 * 3600) -> None:
        super().__init__(batch, interval_s)
        self.age_ms = int(retention_s * 1000)

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_purge", (client.keys.terminal(partition),), (self.age_ms, self.batch))

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        purged = replies.rec_purge(reply)
        return Digest(repaired=purged, full=purged >= self.batch)


class FlowRetention(Retention):
    """Terminal flows older than the retention → deleted with every step, in batches."""

    name = "flow_retention"

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("flow_purge", (client.keys.flows_done(partition),), (self.age_ms, self.batch))

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        purged = replies.flow_purge(reply)
        return Digest(repaired=purged.flows, full=purged.steps >= self.batch)


class WantRetention(Retention):
    """Wants that ended longer ago than the retention → deleted (``want_purge``); slices stay."""

    name = "want_retention"

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("want_purge", (client.keys.wants_done(partition),), (self.age_ms, self.batch),
                     parse=replies.want_purge)

    def digest(self, client: Client, partition: int, reply: int) -> Digest:
        return Digest(repaired=reply, full=reply >= self.batch)


class IndexCheck(Scanner):
    """Executions and flows whose state and indexes disagree → repaired, counted, logged.

    Follows each partition's event stream from a cursor (``rec_audit``): every
    transition writes its event first, so whatever a half-applied transition
    left is named there. A pass makes one call per partition, which reads up
    to ``batch`` events, recounts flows of up to ``batch`` steps, and checks
    at most ``max_work`` executions and ``max_work`` edges; the next pass goes
    on from the cursor. Each call
    also clears the first ``head_count`` members of the lease, delayed and
    ready sets whose execution is gone or in another state.
    """

    name = "index_check"
    default_interval_s = 10.0
    # One call per partition per pass bounds what the check costs the servers
    # (up to max_work executions per partition every interval); under heavier
    # load the stream is trimmed before the check reads it all, and it samples.
    rounds_per_pass = 1

    def __init__(self, batch: int = 1000, interval_s: float | None = None, max_work: int = 100,
                 head_count: int = 100) -> None:
        super().__init__(batch, interval_s)
        self.max_work = max_work
        self.head_count = head_count

    def call(self, client: Client, partition: int) -> FCall:
        ks = client.keys
        return FCall("rec_audit",
                     (ks.counts(partition), ks.events(partition), ks.check_cursor(partition),
                      ks.leases(partition), ks.delayed(partition), ks.deadlines(partition),
                      ks.terminal(partition), ks.pending_dispatch(partition), ks.flows_done(partition)),
                     (self.batch, self.max_work, self.head_count))

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        audit = replies.rec_audit(reply)
        for r in audit.repairs:
            log.warning("index check repaired %s of %s in partition %d: %s", r.kind, r.id, partition, r.detail)
        return Digest(repaired=len(audit.repairs), hints=[(partition, lane) for lane in audit.lanes],
                      dispatch=audit.dispatch, full=audit.more, details=list(audit.repairs))


class OutboxScanner(AgedScanner):
    """Outbox messages nobody acknowledged for ``age_s`` (their sender died before flushing, or
    a flush failed) → applied on their target partition, then acknowledged (engine/outbox.py);
    applying one twice is a no-op. The same call (``outbox_sweep``) forgets inbox ids older
    than 24 hours."""

    name = "outbox"
    default_interval_s = 5.0
    default_batch = outbox.FLUSH_BATCH
    default_age_s = outbox.SCANNER_AGE_MS / 1000

    def call(self, client: Client, partition: int) -> FCall:
        return outbox.sweep_call(client.keys, partition, self.age_ms, self.batch)

    def digest(self, client: Client, partition: int, reply: replies.SweepReply) -> Digest:
        if reply.due:
            log.warning("applying %d outbox message(s) of partition %d nobody acknowledged", len(reply.due),
                        partition)
        flushed = outbox.apply(client, partition, reply.due)
        return Digest(repaired=len(flushed.applied), details=sorted(flushed.applied),
                      full=len(reply.due) >= self.batch and bool(flushed.applied))


class WantDeadlines(Scanner):
    """Wants past data_timestamp + sla_s → flagged breached (event, metric, on_sla_breach task);
    past data_timestamp + ttl_s → expired; from each partition's due-time index (``want_due``)."""

    name = "want_deadlines"

    def call(self, client: Client, partition: int) -> FCall:
        return wants.due_call(client.keys, partition, self.batch)

    def digest(self, client: Client, partition: int, reply: replies.WantDueReply) -> Digest:
        if reply.breached:
            metrics.WANT_SLA_BREACHES.inc(len(reply.breached))
            for want_id in reply.breached:
                log.warning("want %s missed its SLA", want_id)
        ended: list[str] = []
        wants.follow(client, [(partition, reply.follow)], ended.extend)
        return Digest(repaired=len(reply.breached) + len(reply.expired), dispatch=ended,
                      full=reply.read >= self.batch, details=[*reply.breached, *reply.expired])


class WantCycles(AgedScanner):
    """Builds waiting for missing slices longer than ``age_s`` whose wait leads, through the
    builds of those slices, back to their own slice (a cycle none of the builds could see:
    each was started by a want of its own before any found its input missing) → failed for
    good with the cycle named (``slice_cycle``), which ends every want involved."""

    name = "want_cycles"
    default_interval_s = 10.0
    default_batch = 50
    default_age_s = 30.0

    def call(self, client: Client, partition: int) -> FCall:
        return FCall("rec_due", (client.keys.build_waits(partition),), (self.age_ms, self.batch),
                     read_only=True)

    def digest(self, client: Client, partition: int, reply: Any) -> Digest:
        ks, walked = client.keys, replies.rec_due(reply)
        found: list[str] = []
        ended_ids: list[str] = []
        if walked:  # to the back of the index (server time): the next pass walks from the others first
            index = ks.build_waits(partition)
            seconds, micros = client.run(Command(("TIME",), index))
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            client.run(Command(("ZADD", index, "XX", *[x for eid in walked for x in (now_ms, eid)]), index))
        for eid in walked:
            key, miss = ks.execution(partition, eid), ks.missing(partition, eid)
            (slice_name, suspend_on), missing = client.run_many(
                [Command(("HMGET", key, "slice", "suspend_on"), key), Command(("HGETALL", miss), miss)])
            if suspend_on != wants.BUILD_WAIT or not slice_name:
                continue
            path = wants.find_cycle(client, slice_name, missing or {})
            if path is None:
                continue
            text = "dependency cycle: " + " → ".join(path)
            result = client.run(wants.cycle_call(ks, eid, text))
            if result.outcome == "failed":
                log.warning("build %s of %s ended: %s", eid, slice_name, text)
                found.append(eid)
                wants.follow(client, [(partition, result)], ended_ids.extend)
        return Digest(repaired=len(found), dispatch=ended_ids, details=found, full=len(walked) >= self.batch)


SCANNERS: dict[str, type[Scanner]] = {
    cls.name: cls for cls in (DependencyScanner, LeaseExpiry, DelayedPromoter, HintRepair,
                              DeadlineExpiry, UnsealedFlows, FlowOps, OutboxScanner, Retention,
                              FlowRetention, IndexCheck, WantDeadlines, WantCycles, WantRetention)
}


def default_scanners() -> list[Scanner]:
    return [cls() for cls in SCANNERS.values()]
