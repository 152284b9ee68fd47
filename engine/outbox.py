"""Cross-partition messages: written by a Lua call into its own partition's outbox
(``outbox_send`` in lua/00_helpers.lua), applied here by the caller right after.

A writing function that sent messages says so in its reply; the caller then
runs ``flush(client, partition)``, which builds each message's FCall with the
handler registered for its kind (``@handler("kind")``), runs them pipelined and
acknowledges those that ran. A target function calls ``outbox_first`` before
its first write, so applying a message twice is harmless; the daemon's
``outbox`` scanner applies the messages older than 30 s that nobody
acknowledged (a caller killed between the two calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.calls import FCall
from engine.client import Client
from engine.router import Command
from keys import KeySpace

Handler = Callable[[KeySpace, int, str, dict[str, Any]], FCall]
HANDLERS: dict[str, Handler] = {}
FLUSH_BATCH = 200


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that builds the FCall applying messages of ``kind``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def flush(client: Client, partition: int, max_count: int = FLUSH_BATCH,
          only: list[str] | None = None) -> list[tuple[int, Any]]:
    """Apply up to ``max_count`` messages of ``partition``'s outbox (or the ids in ``only``) and
    acknowledge them; returns (target partition, parsed reply) of each applied message. A
    message whose call failed stays for the next flush or the scanner."""
    ks = client.keys
    box, bodies = ks.outbox(partition), ks.outbox_msg(partition)
    ids = only if only is not None else client.run(Command(("ZRANGE", box, 0, max_count - 1), box))
    if not ids:
        return []
    raw = client.run(Command(("HMGET", bodies, *ids), bodies))
    calls, sent, gone = [], [], []
    for msg_id, text in zip(ids, raw, strict=True):
        if text is None:
            gone.append(msg_id)
            continue
        msg = json.loads(text)
        calls.append(HANDLERS[msg["kind"]](ks, int(msg["to"]), msg_id, msg["body"]))
        sent.append((msg_id, int(msg["to"])))
    replies = client.run_many(calls) if calls else []
    applied: list[tuple[int, Any]] = []
    acked = list(gone)
    for (msg_id, to), reply in zip(sent, replies, strict=True):
        if isinstance(reply, Exception):
            continue
        applied.append((to, reply))
        acked.append(msg_id)
    if acked:
        client.run_many([Command(("ZREM", box, *acked), box), Command(("HDEL", bodies, *acked), bodies)])
    return applied


def due(client: Client, partition: int, age_ms: int, max_count: int) -> FCall:
    """Messages sent at least ``age_ms`` ago (``rec_due`` on the outbox): nobody acknowledged them."""
    return FCall("rec_due", (client.keys.outbox(partition),), (age_ms, max_count), read_only=True)
