"""Read-only views across partitions for operators: flows, lanes, partitions.

Each view costs a bounded number of pipelined rounds that depends on the
partition count (and ``limit``), never on how many executions are stored:
flows come from each partition's time-ordered ``flows`` index, queue depth
from the per-lane counters the Lua transitions keep.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from engine.client import Client
from engine.router import Command
from keys import key_slot


def list_flows(client: Client, *, state: str | None = None, labels: dict[str, str] | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """The newest flows over all partitions (up to ``limit`` per partition considered)."""
    ks = client.keys
    calls = [Command(("ZREVRANGE", ks.flows(p), 0, limit - 1, "WITHSCORES"), ks.flows(p))
             for p in range(ks.partitions)]
    found: list[tuple[int, int, str]] = []
    for p, reply in enumerate(client.run_many(calls)):
        for flow_id, score in reply:
            found.append((int(float(score)), p, flow_id))
    found.sort(reverse=True)
    reads = [Command(("HMGET", ks.flow(p, fid), "name", "state", "labels", "total", "terminal"),
                     ks.flow(p, fid)) for _, p, fid in found]
    flows = []
    for (created, _, fid), values in zip(found, client.run_many(reads), strict=False):
        name, st, raw_labels, total, terminal = values
        if st is None:
            continue
        flow_labels = json.loads(raw_labels or "{}")
        if state and st != state:
            continue
        if labels and any(flow_labels.get(k) != v for k, v in labels.items()):
            continue
        flows.append({"id": fid, "name": name, "state": st, "labels": flow_labels,
                      "steps": int(total or 0), "terminal": int(terminal or 0), "created_ms": created})
        if len(flows) >= limit:
            break
    return flows


def lane_counts(client: Client, partitions: list[int] | None = None) -> dict[str, dict[str, int]]:
    """Lane → state → executions, summed from the per-partition counters."""
    ks = client.keys
    chosen = range(ks.partitions) if partitions is None else partitions
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for reply in client.run_many([Command(("HGETALL", ks.counts(p)), ks.counts(p)) for p in chosen]):
        for field, value in (reply or {}).items():
            lane, _, st = field.rpartition(":")
            if int(value):
                totals[lane][st] += int(value)
    return {lane: dict(states) for lane, states in sorted(totals.items())}


@dataclass
class PartitionView:
    partition: int
    node: str
    owner: str | None
    backlog: int  # ready + delayed executions


def partitions_view(client: Client) -> list[PartitionView]:
    """Each partition's node, owning daemon and backlog (ready + delayed)."""
    ks = client.keys
    calls: list[Command] = []
    for p in range(ks.partitions):
        calls.append(Command(("GET", ks.owner(p)), ks.owner(p)))
        calls.append(Command(("HGETALL", ks.counts(p)), ks.counts(p)))
    replies = client.run_many(calls)
    out = []
    for p in range(ks.partitions):
        owner, counts = replies[2 * p], replies[2 * p + 1] or {}
        backlog = sum(int(v) for f, v in counts.items() if f.endswith((":ready", ":delayed")))
        node = client.router.node_for_slot(key_slot(ks.counts(p)))
        out.append(PartitionView(p, node, owner, backlog))
    return out
