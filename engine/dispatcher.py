"""The dispatcher: after a terminal transition, resolve the step's outgoing edges.

Runs in whichever process made the transition (worker, CLI, reconciler). It
walks breadth-first: one pipelined round resolves a batch of edges of every
execution in the frontier (``flow_resolve``), children that became ready are
hinted, children that were skipped form the next frontier. There is no depth
limit and no recursion. A crash anywhere leaves each unfinished execution in
its partition's ``pending_dispatch`` index, and calling ``dispatch`` again on
it is safe: an edge resolves once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from engine import metrics, outbox, replies
from engine.calls import FCall
from engine.client import Client
from engine.errors import NotFound
from engine.executions import _exec_key, execution_partition
from engine.hints import hint_commands
from engine.replies import ResolveReply

DISPATCH_BATCH = 150  # edges per flow_resolve call; a skipped child costs ~40 us


@dataclass
class DispatchStats:
    rounds: int = 0
    edges: int = 0  # edges resolved by this call (satisfied + impossible)
    satisfied: int = 0
    impossible: int = 0
    already_resolved: int = 0
    ready: int = 0
    skipped: int = 0
    woken: list[tuple[int, str]] = field(default_factory=list)  # kept by claim_locally, not hinted


def resolve_call(client: Client, execution_id: str, max_count: int = DISPATCH_BATCH) -> FCall:
    return FCall("flow_resolve", (_exec_key(client.keys, execution_id),), (max_count,),
                 parse=replies.flow_resolve)


def dispatch(client: Client, execution_ids: Iterable[str], max_count: int = DISPATCH_BATCH,
             claim_locally: Callable[[int, str], bool] | None = None) -> DispatchStats:
    """Resolve every outgoing edge of these terminal executions, cascading through skips.

    ``claim_locally(partition, lane)`` lets a worker keep a ready child for itself
    (it claims it at once) instead of hinting it; anything it declines is hinted.
    """
    stats = DispatchStats()
    frontier = list(dict.fromkeys(execution_ids))
    senders: set[int] = set()  # partitions where a child started a remote wait (an outbox message)
    while frontier:
        stats.rounds += 1
        replies = client.run_many([resolve_call(client, eid, max_count) for eid in frontier])
        following: list[str] = []
        hints: list[tuple[int, str]] = []
        for eid, reply in zip(frontier, replies, strict=True):
            if isinstance(reply, NotFound):
                continue  # deleted by retention meanwhile: nothing left to resolve
            if isinstance(reply, Exception):
                raise reply
            resolved: ResolveReply = reply
            tally = resolved.tally
            stats.edges += tally.satisfied + tally.impossible
            stats.satisfied += tally.satisfied
            stats.impossible += tally.impossible
            stats.already_resolved += tally.already_resolved
            stats.ready += len(resolved.ready)
            stats.skipped += tally.skipped
            for step in resolved.ready:
                target = (execution_partition(client.keys, step.id), step.lane)
                if claim_locally is not None and claim_locally(*target):
                    stats.woken.append(target)
                else:
                    hints.append(target)
            following.extend(resolved.cascade)
            if resolved.sent:
                senders.add(execution_partition(client.keys, eid))
            if not resolved.done:
                following.append(eid)
        if hints:
            client.run_many(hint_commands(client.keys, hints))
        frontier = list(dict.fromkeys(following))
    for partition in sorted(senders):  # register the remote waits now (else a worker's pass does)
        outbox.flush_now(client, partition)
    metrics.DISPATCH_CASCADES.inc()
    metrics.DISPATCH_EDGES.labels("satisfied").inc(stats.satisfied)
    metrics.DISPATCH_EDGES.labels("impossible").inc(stats.impossible)
    metrics.CASCADE_SIZE.observe(stats.ready + stats.skipped)
    return stats


def announce(client: Client, ready: Sequence[tuple[str, str]], skipped: Sequence[str]) -> None:
    """After a call that made steps ready or skipped them: hint the ready, dispatch the skipped."""
    keys = client.keys
    if ready:
        client.run_many(hint_commands(keys, [(execution_partition(keys, eid), lane) for eid, lane in ready]))
    if skipped:
        dispatch(client, skipped)
