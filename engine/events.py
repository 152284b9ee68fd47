"""Events by correlation: the wait steps' side of a flow, and ``deliver``.

A correlation is a small dict of strings (``{"order_id": "o-17"}``). Its
canonical JSON (sorted keys, no spaces) names it: its hash chooses the
partition, and a 128-bit digest of the event name and the canonical JSON
(``wait_key``) names the waits set and the event buffer. A flow with
wait steps is placed in its correlation's partition, so delivering an event
is one ``event_deliver`` call on one slot: it resumes every step waiting for
that event and correlation, or buffers the event for the first wait that
registers later. An event matches a wait when the names are equal and the
correlations are equal (not a subset: equality is what makes one key, and one
slot, per correlation).

A flow's further waits may name other correlations. A wait whose correlation
lives in another partition than its flow is remote: it registers in the
correlation's partition through the outbox (``wait_register``), a delivery
there sends ``wait_resume`` back, and a wait that ends otherwise sends
``wait_unregister``; the handlers below build those calls. ``deliver`` flushes
the messages its call recorded before it returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from engine import metrics, outbox, replies
from engine.calls import FCall
from engine.client import Client
from engine.codec import DEFAULT_MAX_PAYLOAD_BYTES, encode
from engine.dispatcher import dispatch
from engine.errors import ContractError, EngineError, TransitionRejected
from engine.router import Command
from keys import KeySpace, partition_of_key

log = logging.getLogger("flowslot.events")

EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CORRELATION_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_CORRELATION_KEYS = 16
MAX_CORRELATION_VALUE = 256
MAX_EVENT_ID = 200
DEFAULT_BUFFER_TTL_S = 3600.0
SEEN_TTL_S = 24 * 3600.0  # how long a delivered event id is remembered (a repeat is a no-op)
DELIVER_BATCH = 200  # waiting steps resumed per call (~40 us each)
ON_TIMEOUT = ("expire", "fail")
SIGNAL_EVENT = "flowslot.signal"  # the event name of a wait that only a signal completes (engine/signals.py)


WAIT_KEY_BYTES = 16  # of SHA-256: 128 bits, in 22 base64url characters


@dataclass(frozen=True)
class Correlation:
    """A checked correlation: its canonical JSON."""

    canonical: str

    def partition(self, partitions: int) -> int:
        return partition_of_key(self.canonical, partitions)

    def wait_key(self, event: str) -> str:
        """Names the waits set and the buffer of this event and correlation: the first
        128 bits of SHA-256 of ``<event>|<canonical JSON>`` in base64url (22 characters;
        event names hold no ``|``, so the pair is unambiguous).

        Two pairs sharing a key would share a waits set (``event_deliver`` still checks
        the event name). Finding a second pair for a given one takes about 2^128 tries,
        and any two colliding pairs about 2^64; among a billion live correlations the
        chance of an accidental collision is about 10^-21.
        """
        digest = hashlib.sha256(f"{event}|{self.canonical}".encode()).digest()[:WAIT_KEY_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Delivery:
    """What ``deliver`` did: ``resumed`` (step execution ids), ``forwarded``, ``buffered`` or
    ``duplicate``.

    ``forwarded``: the event went to remote waits' registrations only, and none of them
    resumed in this call (each had ended, or its ``wait_resume`` is still in the outbox:
    ``pending`` lists those steps, which a worker's pass or the reconciler resumes).
    """

    outcome: str
    resumed: list[str]
    pending: list[str] = field(default_factory=list)


def event_name(value: Any) -> str:
    if not isinstance(value, str) or not EVENT_NAME.fullmatch(value):
        raise ContractError(f"an event name must match {EVENT_NAME.pattern}, got {value!r}")
    return value


def correlation(value: Any) -> Correlation:
    """Check a correlation dict (1..16 names → strings) and build its canonical form."""
    if not isinstance(value, dict) or not value:
        raise ContractError(f"correlate must be a non-empty dict of names to strings, got {value!r}")
    if len(value) > MAX_CORRELATION_KEYS:
        raise ContractError(f"correlate has {len(value)} names; at most {MAX_CORRELATION_KEYS}")
    for name, item in value.items():
        if not isinstance(name, str) or not CORRELATION_KEY.fullmatch(name):
            raise ContractError(f"correlate names must match {CORRELATION_KEY.pattern}, got {name!r}")
        if not isinstance(item, str) or len(item) > MAX_CORRELATION_VALUE:
            raise ContractError(f"correlate[{name!r}] must be a string of at most "
                                f"{MAX_CORRELATION_VALUE} characters, got {item!r}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ContractError(f"correlate[{name!r}] is not valid text: {e}") from e
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Correlation(canonical)


def seconds(value: Any, what: str, *, maximum: float) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not 0 < value <= maximum):
        raise ContractError(f"{what} must be a finite number of seconds in (0, {maximum:g}], got {value!r}")
    return float(value)


def wait_spec(event: str, corr: Correlation, timeout_s: float | None, on_timeout: str) -> dict[str, Any]:
    """The ``wait`` object of a wait step's ``flow_submit`` spec (see lua/40_flows.lua check_wait)."""
    if on_timeout not in ON_TIMEOUT:
        raise ContractError(f"on_timeout must be one of {ON_TIMEOUT}, got {on_timeout!r}")
    timeout_ms = 0 if timeout_s is None else max(int(seconds(timeout_s, "timeout_s", maximum=1e9) * 1000), 1)
    return {"event": event, "key": corr.wait_key(event), "correlate": corr.canonical,
            "timeout_ms": timeout_ms, "on_timeout": on_timeout}


def deliver_call(ks: KeySpace, event: str, corr: Correlation, payload: str, event_id: str,
                 buffer_ttl_ms: int) -> FCall:
    partition = corr.partition(ks.partitions)
    key = corr.wait_key(event)
    return FCall("event_deliver",
                 (ks.waits(partition, key), ks.event_buffer(partition, key),
                  ks.event_seen(partition, event, event_id)),
                 (event, payload, buffer_ttl_ms, int(SEEN_TTL_S * 1000), DELIVER_BATCH),
                 parse=replies.event_deliver)


def deliver(client: Client, event: str, correlate: Any, payload: Any = None, *,
            event_id: str | None = None, buffer_ttl_s: float = DEFAULT_BUFFER_TTL_S,
            max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Delivery:
    """Deliver an event: resume every step waiting for it, or buffer it (``event_deliver``).

    ``event_id`` makes the delivery idempotent: the same id (for the same event and
    correlation) is applied once; without one, every call is a new event. Remote waits
    (their flow in another partition) get a ``wait_resume`` message each, applied here
    before returning (``outbox.flush``); one this call could not apply is in ``pending``,
    and a worker's pass or the reconciler applies it. Counted in
    ``flowslot_deliveries_total`` by outcome; a refused one (bad input) as ``refused``.
    """
    try:
        delivery = _deliver(client, event, correlate, payload, event_id, buffer_ttl_s, max_payload_bytes)
    except (ContractError, TransitionRejected):
        metrics.DELIVERIES.labels(metrics.REFUSED).inc()
        raise
    metrics.DELIVERIES.labels(delivery.outcome).inc()
    return delivery


def _deliver(client: Client, event: str, correlate: Any, payload: Any, event_id: str | None,
             buffer_ttl_s: float, max_payload_bytes: int) -> Delivery:
    name = event_name(event)
    corr = correlation(correlate)
    if event_id is None:
        event_id = uuid.uuid4().hex
    elif not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID or "\n" in event_id:
        raise ContractError(f"event_id must be a string of 1..{MAX_EVENT_ID} characters, got {event_id!r}")
    ttl_ms = int(seconds(buffer_ttl_s, "buffer_ttl_s", maximum=7 * 24 * 3600) * 1000)
    body = encode(payload, limit_bytes=max_payload_bytes, what=f"payload of event {name}")
    partition = corr.partition(client.keys.partitions)
    resumed: list[str] = []
    pending: list[str] = []
    to_dispatch: list[str] = []
    while True:
        reply = client.run(deliver_call(client.keys, name, corr, body, event_id, ttl_ms))
        resumed += [r.execution_id for r in reply.resumed]
        to_dispatch += [r.execution_id for r in reply.resumed if r.dispatch]
        if reply.sent:
            remote, waiting = _flush_sent(client, partition, reply.sent)
            resumed += remote
            pending += waiting
        if not reply.more:
            break
    if to_dispatch:
        dispatch(client, to_dispatch)
    outcome = "resumed" if resumed else "forwarded" if reply.outcome == "resumed" else reply.outcome
    return Delivery(outcome, resumed, pending)


def _flush_sent(client: Client, partition: int, sent: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Apply the ``wait_resume`` messages this delivery recorded, and only those (read by id from
    the correlation's partition, applied and acknowledged by ``outbox.apply``, which also dispatches
    the resumed steps' children): the steps they resumed, and the steps whose message is still to
    be applied (a failed call; or applied meanwhile by another flusher) — a later flush applies it."""
    todo = dict(sent)
    key = client.keys.outbox_msgs(partition)
    try:
        texts = client.run(Command(("HMGET", key, *todo), key))
        raw = [(msg_id, text) for msg_id, text in zip(todo, texts, strict=True) if text is not None]
        applied = outbox.apply(client, partition, raw).applied
    except EngineError as e:  # recorded: a worker's pass or the reconciler applies them
        log.warning("applying the wait_resume messages of partition %d failed: %s", partition, e)
        return [], list(todo.values())
    resumed = [todo.pop(msg_id) for msg_id, reply in applied.items()
               if msg_id in todo and reply.outcome == "resumed"]
    for msg_id in applied:
        todo.pop(msg_id, None)
    return resumed, list(todo.values())


# -- remote waits: the outbox messages between a wait's partition and its correlation's --

def _flush_back(client: Client, to_partition: int, reply: replies.RegisterReply) -> None:
    """A registration that took a buffered event sent it back as ``wait_resume``: apply it now."""
    if reply.sent:
        outbox.flush_now(client, to_partition)


def _dispatch_resumed(client: Client, to_partition: int, reply: replies.WaitResumeReply) -> None:
    """A resumed step's children are dispatched; an event sent back (``returned``) is applied now."""
    if reply.dispatch:
        dispatch(client, [reply.execution_id])
    elif reply.outcome == "returned":
        outbox.flush_now(client, to_partition)


def _after_return(client: Client, to_partition: int, reply: replies.ReturnReply) -> None:
    """A returned event resumed local steps (dispatch them) or sent ``wait_resume`` (apply them)."""
    to_dispatch = [r.execution_id for r in reply.resumed if r.dispatch]
    if to_dispatch:
        dispatch(client, to_dispatch)
    if reply.sent:
        outbox.flush_now(client, to_partition)


@outbox.handler("wait_register", then=_flush_back)
def wait_register_call(ks: KeySpace, to: int, msg_id: str, body: Any) -> FCall:
    """Register a remote wait in its correlation's partition (``wait_register``)."""
    key = str(body["key"])
    return FCall("wait_register", (ks.waits(to, key), ks.event_buffer(to, key)),
                 (msg_id, str(body["id"]), int(body["gen"]), int(body["back"])), parse=replies.wait_register)


@outbox.handler("wait_unregister")
def wait_unregister_call(ks: KeySpace, to: int, msg_id: str, body: Any) -> FCall:
    """Remove a remote wait's registration (``wait_unregister``)."""
    return FCall("wait_unregister", (ks.waits(to, str(body["key"])),), (msg_id, str(body["member"])),
                 parse=replies.wait_unregister)


@outbox.handler("wait_resume", then=_dispatch_resumed)
def wait_resume_call(ks: KeySpace, to: int, msg_id: str, body: Any) -> FCall:
    """Resume a remote wait in its own partition, if it still waits with this generation (``wait_resume``)."""
    return FCall("wait_resume", (ks.execution(to, str(body["id"])),),
                 (msg_id, int(body["gen"]), str(body["payload"]), 1 if body.get("sole") else 0,
                  int(body.get("ttl") or DEFAULT_BUFFER_TTL_S * 1000), str(body.get("event") or "")),
                 parse=replies.wait_resume)


@outbox.handler("wait_return", then=_after_return)
def wait_return_call(ks: KeySpace, to: int, msg_id: str, body: Any) -> FCall:
    """Bring back an event only an ended remote wait took (``wait_return``)."""
    key = str(body["key"])
    return FCall("wait_return", (ks.waits(to, key), ks.event_buffer(to, key)),
                 (msg_id, str(body["event"]), str(body["payload"]), int(body["ttl"])), parse=replies.wait_return)
