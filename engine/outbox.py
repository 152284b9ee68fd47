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
    return flush_many(client, [partition], max_count, {partition: only} if only is not None else None)


def flush_many(client: Client, partitions: list[int], max_count: int = FLUSH_BATCH,
               only: dict[int, list[str]] | None = None) -> list[tuple[int, Any]]:
    """``flush`` for several partitions in three pipelined rounds: read the ids and bodies,
    apply every message, acknowledge."""
    ks = client.keys
    if only is None:
        id_lists = client.run_many([Command(("ZRANGE", ks.outbox(p), 0, max_count - 1), ks.outbox(p))
                                    for p in partitions])
    else:
        id_lists = [only.get(p, []) for p in partitions]
    found = [(p, ids) for p, ids in zip(partitions, id_lists, strict=True) if ids and not isinstance(ids, Exception)]
    if not found:
        return []
    bodies = client.run_many([Command(("HMGET", ks.outbox_msg(p), *ids), ks.outbox_msg(p)) for p, ids in found])
    calls: list[FCall] = []
    sent: list[tuple[int, str, int]] = []  # (source partition, message id, target partition)
    acked: dict[int, list[str]] = {}
    for (p, ids), raw in zip(found, bodies, strict=True):
        for msg_id, text in zip(ids, raw, strict=True):
            if text is None:  # acknowledged meanwhile
                acked.setdefault(p, []).append(msg_id)
                continue
            msg = json.loads(text)
            calls.append(HANDLERS[msg["kind"]](ks, int(msg["to"]), msg_id, msg["body"]))
            sent.append((p, msg_id, int(msg["to"])))
    replies = client.run_many(calls) if calls else []
    applied: list[tuple[int, Any]] = []
    for (p, msg_id, to), reply in zip(sent, replies, strict=True):
        if isinstance(reply, Exception):
            continue
        applied.append((to, reply))
        acked.setdefault(p, []).append(msg_id)
    acks = []
    for p, ids in acked.items():
        acks += [Command(("ZREM", ks.outbox(p), *ids), ks.outbox(p)),
                 Command(("HDEL", ks.outbox_msg(p), *ids), ks.outbox_msg(p))]
    if acks:
        client.run_many(acks)
    return applied


def due(client: Client, partition: int, age_ms: int, max_count: int) -> FCall:
    """Messages sent at least ``age_ms`` ago (``rec_due`` on the outbox): nobody acknowledged them."""
    return FCall("rec_due", (client.keys.outbox(partition),), (age_ms, max_count), read_only=True)
