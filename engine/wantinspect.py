"""Reading wants and slices for people: lists, and why a want is not done yet, in words.

Reads only (pipelined HGETALL / ZRANGE per partition); what a want waits for is
followed from its slices to their builds, and from a build waiting for missing
slices to the upstream wants it spawned, down to ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.client import Client
from engine.router import Command
from engine.wants import slice_partition, slice_record, want_record
from keys import partition_of

MAX_DEPTH = 6
LIST_FIELDS = ("state", "first_slice", "total", "source", "created_ms", "breached_ms", "sla_due_ms",
               "reason")


def _iso(ms: Any) -> str:
    value = int(ms or 0)
    if value <= 0:
        return "-"
    moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def list_wants(client: Client, *, limit: int = 50, breached: bool = False,
               state: str | None = None) -> list[dict[str, str]]:
    """The newest wants of every partition (or those that missed their SLA), newest first: the
    newest ``limit`` ids of each partition's index, then the fields of the newest ``limit`` of
    them all (of all of them when filtering by ``state``)."""
    ks = client.keys
    index = ks.wants_breached if breached else ks.wants
    calls = [Command(("ZRANGE", index(p), 0, limit - 1, "REV", "WITHSCORES"), index(p))
             for p in range(ks.partitions)]
    found = []
    for p, reply in zip(range(ks.partitions), client.run_many(calls), strict=True):
        pairs = reply if reply and isinstance(reply[0], (list, tuple)) else \
            list(zip(reply[::2], reply[1::2], strict=True))
        found += [(float(score), p, want_id) for want_id, score in pairs]
    found.sort(reverse=True)
    if state is None:
        found = found[:limit]
    if not found:
        return []
    rows = client.run_many([Command(("HMGET", ks.want(p, i), *LIST_FIELDS), ks.want(p, i)) for _, p, i in found])
    out = [{"id": i, **{f: v or "" for f, v in zip(LIST_FIELDS, row, strict=True)}}
           for (_, _, i), row in zip(found, rows, strict=True)]
    if state is not None:
        out = [w for w in out if w["state"] == state]
    return out[:limit]


def build_record(client: Client, execution_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """A build's execution hash and, when it waits for missing slices, slice → want|state."""
    ks = client.keys
    p = partition_of(execution_id, ks.partitions)
    info, missing = client.run_many([Command(("HGETALL", ks.execution(p, execution_id)), ks.execution(p, execution_id)),
                                     Command(("HGETALL", ks.missing(p, execution_id)), ks.missing(p, execution_id))])
    return info or {}, missing or {}


def explain_slice(client: Client, name: str, depth: int = 0) -> list[str]:
    """Lines saying where a slice stands and, while it is being built, what its build waits for."""
    pad = "  " * (depth + 1)
    rec = slice_record(client, name)
    state = rec["state"]
    if state == "live":
        return [f"{pad}{name}: live since {_iso(rec.get('live_ms'))}"]
    if state == "failed":
        return [f"{pad}{name}: failed: {rec.get('root')} failed: {rec.get('error')}"]
    if state == "missing":
        return [f"{pad}{name}: missing (no build yet)"]
    build = rec.get("build", "")
    info, missing = build_record(client, build)
    lines = [f"{pad}{name}: being built by {build} ({_build_words(info, missing)})"]
    if depth + 1 >= MAX_DEPTH:
        return lines
    for dep, entry in sorted(missing.items()):
        upstream, _, dep_state = entry.partition("|")
        if dep_state == "waiting":
            lines.append(f"{pad}  needs {dep} (upstream want {upstream}):")
            lines.extend(explain_slice(client, dep, depth + 2))
    return lines


def _build_words(info: dict[str, str], missing: dict[str, str]) -> str:
    state = info.get("state", "gone")
    if state == "ready":
        return f"queued: ready, waiting for a worker on lane {info.get('lane')}"
    if state == "leased":
        return f"running: attempt {info.get('attempts')} on worker {info.get('worker')}"
    if state == "delayed":
        return f"retrying at {_iso(info.get('due_ms'))} after {info.get('error_kind')}: " + \
            (info.get("error_msg") or "").split("\n", 1)[0]
    if state == "waiting" and missing:
        waiting = sum(1 for v in missing.values() if v.endswith("|waiting"))
        return f"waiting for {waiting} of {len(missing)} missing slice(s) to become live"
    return state


def explain(client: Client, want_id: str) -> list[str]:
    """Why a want is where it is, in words: one line for the want, then each slice."""
    w = want_record(client, want_id)
    head = f"want {want_id} is {w['state']}"
    if w.get("reason"):
        head += f": {w['reason']}"
    lines = [head]
    if int(w.get("sla_due_ms", "-1")) >= 0:
        missed = f", missed at {_iso(w['breached_ms'])}" if w.get("breached_ms") else ""
        lines.append(f"  SLA due {_iso(w['sla_due_ms'])}{missed}")
    if int(w.get("ttl_due_ms", "-1")) >= 0:
        lines.append(f"  expires {_iso(w['ttl_due_ms'])} unless satisfied")
    if w["state"] in ("waiting", "building"):
        for name, known in sorted(w["known"].items()):
            if known == "live":
                lines.append(f"    {name}: live")
            else:
                lines.extend(explain_slice(client, name, 1))
    return lines


def slice_view(client: Client, name: str) -> dict[str, Any]:
    """A slice's record, its build, the wants waiting for it, and its partition."""
    ks = client.keys
    rec = slice_record(client, name)
    p = slice_partition(ks, name)
    waiting = client.run(Command(("SMEMBERS", ks.slice_wants(p, name)), ks.slice_wants(p, name))) or []
    build, missing = build_record(client, rec["build"]) if rec.get("build") else ({}, {})
    return {**rec, "partition": p, "waiting_wants": sorted(waiting),
            "build_state": build.get("state", ""), "missing": missing}
