"""The outbox: durable messages from one partition to another.

A Lua function that must change another partition (another slot, so not in
the same atomic call) records a message in its own partition's outbox with
``outbox_send`` (``lua/00_helpers.lua``), atomically with its own writes.
``flush`` reads a partition's due messages (``outbox_due``), applies each on
its target partition with the ``FCall`` its kind's handler builds, and
acknowledges the applied ones (``outbox_ack``). The target function calls
``outbox_first`` before its first write: a message applied twice (two
flushers, a flusher killed before its ack) changes nothing the second time.

Who flushes: the caller whose call sent messages (at once), every worker's
promotion pass (messages older than ``WORKER_AGE_MS``), and the reconciler's
``outbox`` scanner (older than 30 s). A message whose kind has no handler, or
whose target call fails, stays in the outbox (logged, counted) and is tried
again by the next flush.

Register a kind with ``@handler("kind")`` on a function ``(keyspace,
to_partition, msg_id, body) -> FCall``; ``then=`` names an optional follow-up
``(client, to_partition, parsed_reply) -> None`` run after the message was
applied and acknowledged (dispatching a resumed step's children, flushing
messages the target call itself sent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import metrics, replies
from engine.calls import FCall
from engine.client import Client
from engine.errors import EngineError
from keys import KeySpace

log = logging.getLogger("flowslot.outbox")

FLUSH_BATCH = 200  # messages read and applied per call
WORKER_AGE_MS = 1000  # a worker's pass applies messages at least this old (their sender flushes sooner)
SCANNER_AGE_MS = 30_000  # the reconciler's scanner: messages nobody acknowledged for this long
INBOX_TTL_MS = 24 * 3600 * 1000  # applied ids are remembered this long

Build = Callable[[KeySpace, int, str, Any], FCall]
Then = Callable[[Client, int, Any], None]


@dataclass(frozen=True)
class Handler:
    build: Build
    then: Then | None = None


HANDLERS: dict[str, Handler] = {}


def handler(kind: str, *, then: Then | None = None) -> Callable[[Build], Build]:
    """Register the function that builds the target call of messages of ``kind``."""
    def register(build: Build) -> Build:
        if kind in HANDLERS and HANDLERS[kind].build is not build:
            raise ValueError(f"outbox message kind {kind!r} already has a handler")
        HANDLERS[kind] = Handler(build, then)
        return build
    return register


@dataclass(frozen=True)
class Message:
    id: str
    kind: str
    to: int
    body: Any


@dataclass
class FlushResult:
    """What a flush did: each applied message's parsed target reply, by message id."""

    applied: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # message id -> why it stays in the outbox
    more: bool = False  # the batch was full: more messages may be due


def due_call(ks: KeySpace, partition: int, min_age_ms: int = 0, limit: int = FLUSH_BATCH) -> FCall:
    """``outbox_due``: the partition's messages at least ``min_age_ms`` old, oldest first."""
    return FCall("outbox_due", (ks.outbox(partition), ks.outbox_msgs(partition)), (min_age_ms, limit),
                 parse=replies.outbox_due, read_only=True)


def ack_call(ks: KeySpace, partition: int, msg_ids: Sequence[str]) -> FCall:
    """``outbox_ack``: delete applied messages from the partition's outbox."""
    return FCall("outbox_ack", (ks.outbox(partition), ks.outbox_msgs(partition)), (json.dumps(list(msg_ids)),),
                 parse=replies.outbox_ack)


def defer_call(ks: KeySpace, partition: int, msg_ids: Sequence[str]) -> FCall:
    """``outbox_defer``: move messages that could not be applied behind the others (re-scored now)."""
    return FCall("outbox_defer", (ks.outbox(partition),), (json.dumps(list(msg_ids)),), parse=replies.outbox_defer)


def sweep_call(ks: KeySpace, partition: int, min_age_ms: int = SCANNER_AGE_MS, limit: int = FLUSH_BATCH,
               inbox_age_ms: int = INBOX_TTL_MS, max_pruned: int = 1000) -> FCall:
    """``outbox_sweep`` (the reconciler's call): forget inbox ids older than ``inbox_age_ms``,
    and read the messages at least ``min_age_ms`` old, as ``due_call`` does."""
    return FCall("outbox_sweep", (ks.outbox(partition), ks.outbox_msgs(partition), ks.inbox(partition)),
                 (min_age_ms, limit, inbox_age_ms, max_pruned), parse=replies.outbox_sweep)


def decode(raw: Sequence[tuple[str, str]]) -> tuple[list[Message], list[str]]:
    """Messages from an ``outbox_due`` reply, and ids whose message is missing or unreadable."""
    messages, broken = [], []
    for msg_id, text in raw:
        try:
            data = json.loads(text)
            messages.append(Message(msg_id, str(data["kind"]), int(data["to"]), data.get("body")))
        except (ValueError, TypeError, KeyError):
            broken.append(msg_id)
    return messages, broken


def flush(client: Client, partition: int, min_age_ms: int = 0, limit: int = FLUSH_BATCH) -> FlushResult:
    """Apply up to ``limit`` of the partition's messages at least ``min_age_ms`` old, acknowledge
    the applied ones (``outbox_due``, then each target call, then ``outbox_ack``)."""
    raw = client.run(due_call(client.keys, partition, min_age_ms, limit))
    result = apply(client, partition, raw)
    result.more = len(raw) >= limit
    return result


def flush_now(client: Client, partition: int) -> FlushResult | None:
    """``flush`` right after a call that sent messages; on an ``EngineError`` (a node away, say) log
    and return None: the messages are recorded, a worker's pass or the reconciler applies them, so
    the caller's own call, which succeeded, is not reported as failed."""
    try:
        return flush(client, partition)
    except EngineError as e:
        log.warning("flushing the outbox of partition %d failed, left to a later flush: %s", partition, e)
        return None


def apply(client: Client, partition: int, raw: Sequence[tuple[str, str]]) -> FlushResult:
    """Apply messages read from ``partition``'s outbox (an ``outbox_due`` reply): every target call
    in one pipelined round, then one ``outbox_ack`` for the applied ones, then the follow-ups."""
    result = FlushResult()
    messages, broken = decode(raw)
    for msg_id in broken:
        _fail(result, msg_id, "?", "its message is missing or not JSON")
    todo: list[tuple[Message, Handler]] = []
    for m in messages:
        h = HANDLERS.get(m.kind)
        if h is None:
            _fail(result, m.id, m.kind, f"no handler for message kind {m.kind!r}")
        else:
            todo.append((m, h))
    calls, built = [], []
    for m, h in todo:
        try:
            calls.append(h.build(client.keys, m.to, m.id, m.body))
            built.append((m, h))
        except Exception as e:  # noqa: BLE001 - a malformed body must not stop the other messages
            _fail(result, m.id, m.kind, f"{type(e).__name__}: {e}")
    done: list[tuple[Message, Handler, Any]] = []
    for (m, h), reply in zip(built, client.run_many(calls) if calls else [], strict=True):
        if isinstance(reply, Exception):
            _fail(result, m.id, m.kind, f"{type(reply).__name__}: {reply}")
        else:
            result.applied[m.id] = reply
            done.append((m, h, reply))
            metrics.OUTBOX.labels(m.kind, "applied").inc()
    if done:
        client.run(ack_call(client.keys, partition, [m.id for m, _, _ in done]))
    if result.failed:  # to the back of the queue: messages behind them are applied meanwhile
        client.run(defer_call(client.keys, partition, list(result.failed)))
    for m, h, reply in done:
        if h.then is not None:
            try:
                h.then(client, m.to, reply)
            except Exception as e:  # noqa: BLE001 - applied and acknowledged; its own scanner repairs the rest
                log.warning("follow-up of outbox message %s (%s) failed: %s: %s", m.id, m.kind,
                            type(e).__name__, e)
    return result


_REPORTED: dict[str, None] = {}  # message ids already logged by this process (oldest dropped past 10,000)


def _fail(result: FlushResult, msg_id: str, kind: str, why: str) -> None:
    """Count every failure; log a message id's first failure as an error, later ones at debug
    level (a worker's pass meets the same stuck message every second)."""
    result.failed[msg_id] = why
    metrics.OUTBOX.labels(kind, "failed").inc()
    if msg_id in _REPORTED:
        log.debug("outbox message %s (%s) still not applied: %s", msg_id, kind, why)
        return
    _REPORTED[msg_id] = None
    if len(_REPORTED) > 10_000:
        del _REPORTED[next(iter(_REPORTED))]
    log.error("outbox message %s (%s) not applied, left in the outbox: %s", msg_id, kind, why)
