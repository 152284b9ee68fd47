"""Python wrappers for the execution FCALLs: the only callers of those functions.

``SIGNATURES`` covers every function of the library (the flow wrappers live
in ``engine/flowcalls.py``).

Each builder returns an ``FCall`` (to run alone or pipelined) whose KEYS come
from ``keys.KeySpace`` and whose reply is decoded by the function's parser in
``engine/replies.py``. ``SIGNATURES`` names the KEYS and ARGV of each Lua
function; ``tests/unit/test_lua_contract.py`` checks them against the header
comments in ``lua/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine import replies
from engine.calls import FCall
from engine.errors import ContractError
from engine.replies import Claimed as Claimed
from engine.replies import ClaimReply as ClaimReply
from engine.router import Command
from keys import KIND_EXECUTION, KeySpace, MalformedId, parse_id, partition_of

SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "exec_submit": (
        ("exec", "ready", "delayed", "idem"),
        ("id", "task", "lane", "payload", "priority", "delay_ms", "max_attempts", "backoff_ms",
         "backoff_max_ms", "deadline_in_ms", "idem_ttl_ms"),
    ),
    "exec_submit_many": (
        ("delayed",),
        ("id", "task", "lane", "payload", "priority", "delay_ms", "max_attempts", "backoff_ms",
         "backoff_max_ms", "deadline_in_ms"),
    ),
    "exec_cancel": (("exec",), ("reason",)),
    "exec_watch": (("exec",), ()),
    "exec_promote": (("delayed",), ("max_count", "min_late_ms")),
    "exec_claim": (("ready",), ("max_count", "lease_ms", "worker_id")),
    "exec_renew": (("exec",), ("token", "lease_ms")),
    "exec_complete": (("exec",), ("token", "result")),
    "exec_complete_many": (("leases",), ("id", "token", "result")),
    "exec_fail": (("exec",), ("token", "error_kind", "error_msg", "retryable", "jitter")),
    "exec_release": (("exec",), ("token",)),
    "exec_suspend": (("exec",), ("token", "name", "timeout_ms")),
    "exec_expire_leases": (("leases",), ("max_count", "jitter")),
    "flow_submit": (("flow",), ("flow_id", "name", "labels", "steps", "final", "parent")),
    "flow_seal": (("flow",), ("max_count",)),
    "flow_resolve": (("exec",), ("max_count",)),
    "flow_complete": (("exec",), ("token", "result", "max_edges", "claim_count", "lease_ms", "worker_id",
                                  "lanes")),
    "flow_complete_many": (("leases",), ("max_edges", "claim_count", "lease_ms", "worker_id", "lanes", "id",
                                         "token", "result")),
    "flow_cancel": (("flow",), ("max_count", "reason")),
    "flow_pause": (("flow",), ()),
    "flow_resume": (("flow",), ("max_count",)),
    "rec_due": (("index",), ("age_ms", "max_count")),
    "exec_expire_deadlines": (("deadlines",), ("max_count",)),
    "rec_stale_ready": (("counts",), ("age_ms", "max_lanes")),
    "rec_purge": (("terminal",), ("age_ms", "max_count")),
    "flow_purge": (("flows_done",), ("age_ms", "max_steps")),
    "rec_audit": (
        ("counts", "events", "cursor", "leases", "delayed", "deadlines", "terminal", "pending_dispatch",
         "flows_done"),
        ("max_count", "max_work", "head_count"),
    ),
    "own_claim": (("owner",), ("daemon_id", "ttl_ms")),
    "own_release": (("owner",), ("daemon_id",)),
    "own_heartbeat": (("daemons",), ("daemon_id", "ttl_ms", "leaving")),
    "exec_retry": (("exec",), ()),
    "flow_retry": (("flow",), ("max_count",)),
    "event_deliver": (("waits", "buffer", "seen"),
                      ("event", "payload", "buffer_ttl_ms", "seen_ttl_ms", "max_count")),
    "wait_signal": (("flow",), ("step", "payload", "expires_ms", "key_until_ms")),
    "exec_signal": (("exec",), ("name", "payload", "expires_ms", "key_until_ms")),
    "secrets_rotate": (("secrets",), ("key_id", "secret", "grace_ms", "max_keys")),
    "want_create": (("want",), ("msg_id", "body")),
    "want_request": (("slice",), ("msg_id", "body")),
    "want_news": (("want",), ("msg_id", "body")),
    "build_news": (("exec",), ("msg_id", "body")),
    "want_cancel": (("want",), ("reason",)),
    "slice_invalidate": (("slice",), ("reason",)),
    "want_due": (("due",), ("max_count",)),
    "want_purge": (("done",), ("age_ms", "max_count")),
    "slice_missing": (("exec",), ("token", "deps", "claim_count", "lease_ms", "worker_id", "lanes")),
    "slice_complete": (("exec",), ("token", "result", "max_count", "claim_count", "lease_ms", "worker_id",
                                   "lanes")),
    "slice_cycle": (("exec",), ("cycle",)),
    "wait_register": (("waits", "buffer"), ("msg_id", "execution_id", "gen", "back")),
    "wait_unregister": (("waits",), ("msg_id", "member")),
    "wait_resume": (("exec",), ("msg_id", "gen", "payload", "sole", "buffer_ttl_ms", "event")),
    "wait_return": (("waits", "buffer"), ("msg_id", "event", "payload", "buffer_ttl_ms")),
    "outbox_due": (("outbox", "msgs"), ("age_ms", "max_count")),
    "outbox_ack": (("outbox", "msgs"), ("msg_ids",)),
    "outbox_defer": (("outbox",), ("msg_ids",)),
    "outbox_sweep": (("outbox", "msgs", "inbox"), ("age_ms", "max_count", "inbox_age_ms", "max_pruned")),
    "flowslot_states": ((), ()),
    "flowslot_version": ((), ()),
}


@dataclass(frozen=True)
class SubmitSpec:
    """Everything ``exec_submit`` stores, already validated and encoded."""

    execution_id: str
    task: str
    lane: str
    payload: str
    priority: int = 0
    delay_ms: int = 0
    max_attempts: int = 3
    backoff_ms: int = 1000
    backoff_max_ms: int = 300_000
    deadline_in_ms: int = 0
    idempotency_key: str | None = None
    idempotency_ttl_ms: int = 24 * 3600 * 1000


def submit(ks: KeySpace, spec: SubmitSpec, partition: int) -> FCall:
    idem = spec.idempotency_key or ""
    return FCall(
        "exec_submit",
        (ks.execution(partition, spec.execution_id), ks.ready(partition, spec.lane),
         ks.delayed(partition), ks.idempotency(partition, idem)),
        (spec.execution_id, spec.task, spec.lane, spec.payload, spec.priority, spec.delay_ms,
         spec.max_attempts, spec.backoff_ms, spec.backoff_max_ms, spec.deadline_in_ms,
         spec.idempotency_ttl_ms if idem else 0),
        parse=replies.exec_submit,
    )


SUBMIT_MANY_MAX = 100  # executions one exec_submit_many call takes (lua/20_executions.lua)


def submit_many(ks: KeySpace, partition: int, specs: Sequence[SubmitSpec]) -> FCall:
    """``exec_submit_many``: up to ``SUBMIT_MANY_MAX`` executions of one partition, none with an
    idempotency key, in one call. Parses to one ``SubmitReply`` per execution, in order."""
    if not 1 <= len(specs) <= SUBMIT_MANY_MAX:
        raise ContractError(f"submit_many takes 1..{SUBMIT_MANY_MAX} executions, got {len(specs)}")
    if any(spec.idempotency_key for spec in specs):
        raise ContractError("exec_submit_many takes no idempotency keys: submit those with exec_submit")
    return FCall("exec_submit_many", (ks.delayed(partition),),
                 tuple(v for s in specs for v in (s.execution_id, s.task, s.lane, s.payload, s.priority,
                                                   s.delay_ms, s.max_attempts, s.backoff_ms,
                                                   s.backoff_max_ms, s.deadline_in_ms)),
                 parse=replies.exec_submit_many)


def inputs_page(ks: KeySpace, execution_id: str, cursor: str, count: int = 1000) -> Command:
    """One page of a step's inputs (``HSCAN inp:<id>``), for a claim that left them out.

    Parses to ``replies.InputsPage``; its cursor is "0" after the last page.
    """
    key = ks.inputs(execution_partition(ks, execution_id), execution_id)
    return Command(("HSCAN", key, cursor, "COUNT", count), key, parse=replies.inputs_page)


def claim(ks: KeySpace, partition: int, lane: str, max_count: int, lease_ms: int,
          worker_id: str) -> FCall:
    return FCall("exec_claim", (ks.ready(partition, lane),), (max_count, lease_ms, worker_id),
                 parse=replies.exec_claim)


def id_partition(ks: KeySpace, entity_id: str, kind: str) -> int:
    """The partition of an execution or flow id; ContractError naming the problem if malformed."""
    try:
        parse_id(entity_id, kind=kind)
        return partition_of(entity_id, ks.partitions)
    except MalformedId as e:
        raise ContractError(str(e)) from e


def execution_partition(ks: KeySpace, execution_id: str) -> int:
    return id_partition(ks, execution_id, KIND_EXECUTION)


def _exec_key(ks: KeySpace, execution_id: str) -> str:
    return ks.execution(execution_partition(ks, execution_id), execution_id)


def renew(ks: KeySpace, execution_id: str, token: str, lease_ms: int) -> FCall:
    return FCall("exec_renew", (_exec_key(ks, execution_id),), (token, lease_ms), parse=replies.exec_renew)


def complete(ks: KeySpace, execution_id: str, token: str, result: str) -> FCall:
    return FCall("exec_complete", (_exec_key(ks, execution_id),), (token, result),
                 parse=replies.exec_complete)


COMPLETE_MANY_MAX = 100  # executions one exec_complete_many call takes (lua/30_leases.lua)


def complete_many(ks: KeySpace, partition: int, items: Sequence[tuple[str, str, str]]) -> FCall:
    """``exec_complete_many``: the successes of up to ``COMPLETE_MANY_MAX`` executions of one
    partition, as (execution id, token, result) triples, in one call. Parses to one
    ``CompleteReply`` or exception per execution (a refused one does not stop the others)."""
    if not 1 <= len(items) <= COMPLETE_MANY_MAX:
        raise ContractError(f"complete_many takes 1..{COMPLETE_MANY_MAX} executions, got {len(items)}")
    return FCall("exec_complete_many", (ks.leases(partition),), tuple(v for item in items for v in item),
                 parse=replies.exec_complete_many)


def complete_step(ks: KeySpace, execution_id: str, token: str, result: str, max_edges: int,
                  claim_count: int, lease_ms: int, worker_id: str, lanes: Sequence[str]) -> FCall:
    """``flow_complete``: a flow step's success, its edges resolved (up to ``max_edges``) and up to
    ``claim_count`` of its newly ready children on ``lanes`` leased to ``worker_id``, in one call."""
    return FCall("flow_complete", (_exec_key(ks, execution_id),),
                 (token, result, max_edges, claim_count, lease_ms, worker_id, " ".join(lanes)),
                 parse=replies.flow_complete)


def complete_steps(ks: KeySpace, partition: int, items: Sequence[tuple[str, str, str]], max_edges: int,
                   claim_count: int, lease_ms: int, worker_id: str, lanes: Sequence[str]) -> FCall:
    """``flow_complete_many``: ``complete_step`` for up to ``COMPLETE_MANY_MAX`` flow steps of one
    partition, as (execution id, token, result) triples, in one call; ``claim_count`` bounds the
    children leased by the whole call. Parses to one ``FlowCompleteReply`` or exception per step
    (see ``replies.flow_complete_many``)."""
    if not 1 <= len(items) <= COMPLETE_MANY_MAX:
        raise ContractError(f"complete_steps takes 1..{COMPLETE_MANY_MAX} steps, got {len(items)}")
    return FCall("flow_complete_many", (ks.leases(partition),),
                 (max_edges, claim_count, lease_ms, worker_id, " ".join(lanes),
                  *(v for item in items for v in item)),
                 parse=replies.flow_complete_many)


def fail(ks: KeySpace, execution_id: str, token: str, kind: str, message: str,
         retryable: bool, jitter: float) -> FCall:
    return FCall("exec_fail", (_exec_key(ks, execution_id),),
                 (token, kind, message, int(retryable), f"{jitter:.6f}"),
                 parse=replies.exec_fail)


def release(ks: KeySpace, execution_id: str, token: str) -> FCall:
    return FCall("exec_release", (_exec_key(ks, execution_id),), (token,), parse=replies.exec_release)


def suspend(ks: KeySpace, execution_id: str, token: str, name: str, timeout_ms: int) -> FCall:
    return FCall("exec_suspend", (_exec_key(ks, execution_id),), (token, name, timeout_ms),
                 parse=replies.exec_suspend)


def signal(ks: KeySpace, execution_id: str, name: str, payload: str, expires_ms: int,
           key_until_ms: int) -> FCall:
    return FCall("exec_signal", (_exec_key(ks, execution_id),), (name, payload, expires_ms, key_until_ms),
                 parse=replies.exec_signal)


def cancel(ks: KeySpace, execution_id: str, reason: str = "canceled") -> FCall:
    return FCall("exec_cancel", (_exec_key(ks, execution_id),), (reason,),
                 parse=replies.exec_cancel)


def watch(ks: KeySpace, execution_id: str) -> FCall:
    """Ask for the done marker a result waiter blocks on (``exec_watch``); replies the state."""
    return FCall("exec_watch", (_exec_key(ks, execution_id),), (), parse=replies.exec_watch)


def promote(ks: KeySpace, partition: int, max_count: int, min_late_ms: int = 0) -> FCall:
    """Due delayed work of one partition -> ready: what came due at least ``min_late_ms`` ago."""
    return FCall("exec_promote", (ks.delayed(partition),), (max_count, min_late_ms),
                 parse=replies.exec_promote)


def expire_leases(ks: KeySpace, partition: int, max_count: int, jitter: float) -> FCall:
    return FCall("exec_expire_leases", (ks.leases(partition),), (max_count, f"{jitter:.6f}"),
                 parse=replies.exec_expire_leases)


def retry(ks: KeySpace, execution_id: str) -> FCall:
    return FCall("exec_retry", (_exec_key(ks, execution_id),), (), parse=replies.exec_retry)
