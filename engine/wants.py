"""Wants: declare the data slices you need; producers build them, discovering their inputs.

A data slice ("clean/2026-11-21": a dataset and its key) is built by the one
producer task whose pattern matches it (``@app.produces("clean/{date}")``). Its
canonical record lives in the partition of hash(slice name), with its build and
the wants for it (lua/15_wants.lua). This module checks names, finds producers,
encodes the specs Lua needs to start a build, builds the FCalls, and follows
their replies: hint what became ready, flush the outbox messages they wrote,
dispatch the builds that ended.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import checks, outbox, replies
from engine.calls import FCall
from engine.client import Client
from engine.errors import ContractError, EngineError, NotFound
from engine.executions import execution_partition
from engine.hints import hint_commands
from engine.router import Command
from keys import KeySpace, partition_of_key

if TYPE_CHECKING:
    from engine.app import App, TaskDef

SEGMENT = r"[A-Za-z0-9_.=\-]+"
SLICE_RE = re.compile(rf"{SEGMENT}(?:/{SEGMENT})+")
FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_SLICE_CHARS = 200
MAX_WANT_SLICES = 100  # lua/15_wants.lua MAX_WANT_SLICES
MAX_MISSING = 100  # lua/32_missing.lua MAX_MISSING
MAX_COMMENT_CHARS = 1000
MAX_SOURCE_CHARS = 200
MAX_HORIZON_S = 100 * 365 * 24 * 3600.0
FOLLOW_ROUNDS = 1000  # full outbox batches flushed per partition by one follow, at most


class MissingDependencies(EngineError):  # noqa: N818 - named for what the producer says
    """Raised by a producer that finds input slices missing: the attempt ends without counting,
    an upstream want is made for each slice, and the build runs again once they are all live."""

    def __init__(self, slices: Iterable[str]) -> None:
        if isinstance(slices, str) or not isinstance(slices, Iterable):
            raise ContractError("MissingDependencies takes a list of slice names, e.g. "
                                "MissingDependencies(['raw/2026-11-21'])")
        names = list(dict.fromkeys(slices))
        super().__init__(f"missing slices: {', '.join(map(str, names))}")
        self.slices = names


def check_slice(name: Any) -> str:
    """A slice name: segments of A-Z a-z 0-9 _ . = - joined by '/', at least two, 200 chars."""
    if not isinstance(name, str) or len(name) > MAX_SLICE_CHARS or not SLICE_RE.fullmatch(name):
        raise ContractError(f"malformed slice name {name!r}: expected like 'sales/2026-11-21' (a dataset, "
                            f"'/', a key; segments of A-Z a-z 0-9 _ . = -; at most {MAX_SLICE_CHARS} "
                            "characters)")
    return name


@dataclass(frozen=True)
class Producer:
    """A task that builds every slice matching ``pattern``; its handler gets the fields."""

    pattern: str
    regex: re.Pattern[str]
    task: TaskDef

    def match(self, name: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(name)
        return found.groupdict() if found else None


def compile_pattern(pattern: Any) -> re.Pattern[str]:
    """``clean/{date}`` → a regex whose named groups are the fields (each within a segment)."""
    if not isinstance(pattern, str):
        raise ContractError(f"a producer pattern is a string like 'clean/{{date}}', got {pattern!r}")
    fields = FIELD_RE.findall(pattern)
    if len(set(fields)) != len(fields):
        raise ContractError(f"producer pattern {pattern!r} names a field twice")
    parts, pos = [], 0
    for m in FIELD_RE.finditer(pattern):
        parts.append(re.escape(pattern[pos:m.start()]))
        parts.append(f"(?P<{m[1]}>{SEGMENT})")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    check_slice(FIELD_RE.sub("x", pattern))  # literal parts spell a slice name
    return re.compile("".join(parts))


def producer_for(producers: Sequence[Producer], name: str) -> tuple[Producer, dict[str, str]]:
    """The one producer of a slice; ContractError when none or several match."""
    check_slice(name)
    found = [(p, fields) for p in producers if (fields := p.match(name)) is not None]
    if not found:
        known = ", ".join(p.pattern for p in producers) or "none registered"
        raise ContractError(f"no producer builds slice {name!r} (producer patterns: {known})")
    if len(found) > 1:
        raise ContractError(f"slice {name!r} matches several producers: "
                            f"{', '.join(p.pattern for p, _ in found)}")
    return found[0]


def slice_partition(ks: KeySpace, name: str) -> int:
    """The partition of hash(the slice's key): the slices of one key ("raw/2026-11-21",
    "clean/2026-11-21", ...) share a partition, so a build that finds another slice of its key
    missing, and everything that follows, is one call each, with no outbox message."""
    return partition_of_key(name.split("/", 1)[1], ks.partitions)


def new_want_id(partition: int) -> str:
    """A UUID (version 4) whose first four hex digits are the want's partition."""
    return str(uuid.UUID(f"{partition:04x}{uuid.uuid4().hex[4:]}"))


def want_partition(ks: KeySpace, want_id: Any) -> int:
    """The partition of a want id; ContractError when it is not one."""
    try:
        parsed = uuid.UUID(want_id) if isinstance(want_id, str) else None
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != want_id:
        raise ContractError(f"malformed want id {want_id!r}: expected a UUID as app.want returns")
    partition = int(want_id[:4], 16)
    if partition >= ks.partitions:
        raise ContractError(f"want id {want_id!r} names partition {partition}, but there are {ks.partitions}")
    return partition


def task_spec(app: App, task: TaskDef, partition: int, kwargs: dict[str, Any],
              args: Sequence[Any] = ()) -> dict[str, Any]:
    """What Lua needs to create an execution of ``task`` in ``partition`` (create_execution)."""
    spec, _ = app.prepare(task, args, kwargs, partition=partition)
    return {"build_id": spec.execution_id, "task": spec.task, "lane": spec.lane, "payload": spec.payload,
            "priority": spec.priority, "max_attempts": spec.max_attempts, "backoff_ms": spec.backoff_ms,
            "backoff_max_ms": spec.backoff_max_ms, "deadline_in_ms": spec.deadline_in_ms,
            "partition": partition}


def slice_entry(app: App, name: str) -> dict[str, Any]:
    """{name, partition, spec}: a slice as want_create and slice_missing take it."""
    producer, fields = producer_for(app.producers, name)
    partition = slice_partition(app.client.keys, name)
    return {"name": name, "partition": partition, "spec": task_spec(app, producer.task, partition, fields)}


def timestamp_ms(value: Any) -> int:
    """data_timestamp: a datetime (naive means UTC), a date (its midnight UTC), or epoch seconds."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return int(aware.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"data_timestamp must be a datetime, a date or epoch seconds, got "
                            f"{type(value).__name__} {value!r}"[:300])
    seconds = checks.number(value, "data_timestamp", minimum=0, maximum=1e11)
    return int(seconds * 1000)


def horizons(data_timestamp: Any, sla_s: Any, ttl_s: Any) -> tuple[int, int, int]:
    """(data_ts_ms, sla_ms, ttl_ms), -1 for none; refuses SLA < 0 and TTL shorter than SLA."""
    if data_timestamp is None:
        if sla_s is not None or ttl_s is not None:
            raise ContractError("sla_s and ttl_s count from data_timestamp: pass data_timestamp too")
        return 0, -1, -1
    data_ts_ms = timestamp_ms(data_timestamp)
    sla_ms = ttl_ms = -1
    if sla_s is not None:
        sla_ms = int(checks.number(sla_s, "sla_s", minimum=0, maximum=MAX_HORIZON_S) * 1000)
    if ttl_s is not None:
        ttl_ms = int(checks.number(ttl_s, "ttl_s", minimum=0.001, maximum=MAX_HORIZON_S) * 1000)
    if sla_ms >= 0 and 0 <= ttl_ms < sla_ms:
        raise ContractError(f"ttl_s ({ttl_s}) is shorter than sla_s ({sla_s}): the want would expire "
                            "before its SLA could be missed")
    return data_ts_ms, sla_ms, ttl_ms


def slice_names(slices: Any) -> list[str]:
    if isinstance(slices, str) or not isinstance(slices, Iterable):
        raise ContractError(f"want takes a list of slice names, got {slices!r}")
    names = list(dict.fromkeys(check_slice(s) for s in slices))
    if not 1 <= len(names) <= MAX_WANT_SLICES:
        raise ContractError(f"a want names 1..{MAX_WANT_SLICES} slices, got {len(names)}")
    return names


# -- calls -----------------------------------------------------------------------------------
def create_call(ks: KeySpace, want_id: str, body: dict[str, Any], msg_id: str = "") -> FCall:
    return FCall("want_create", (ks.want(want_partition(ks, want_id), want_id),),
                 (msg_id, json.dumps(body)), parse=replies.want_create)


def cancel_call(ks: KeySpace, want_id: str, reason: str) -> FCall:
    return FCall("want_cancel", (ks.want(want_partition(ks, want_id), want_id),), (reason,),
                 parse=replies.want_cancel)


def invalidate_call(ks: KeySpace, name: str, reason: str) -> FCall:
    return FCall("slice_invalidate", (ks.slice(slice_partition(ks, name), name),), (reason,),
                 parse=replies.slice_invalidate)


def missing_call(ks: KeySpace, execution_id: str, token: str, deps: list[dict[str, Any]],
                 claim: tuple[int, int, str, Sequence[str]] = (0, 0, "", ())) -> FCall:
    """``slice_missing``; ``claim`` (claim_count, lease_ms, worker_id, lanes) leases the upstream
    builds it starts in the build's own partition to that worker."""
    key = ks.execution(execution_partition(ks, execution_id), execution_id)
    count, lease_ms, worker_id, lanes = claim
    return FCall("slice_missing", (key,), (token, json.dumps(deps), count, lease_ms, worker_id, " ".join(lanes)),
                 parse=replies.slice_missing)


def complete_call(ks: KeySpace, execution_id: str, token: str, result: str, max_count: int,
                  claim: tuple[int, int, str, Sequence[str]]) -> FCall:
    """``slice_complete``: a build's success, up to ``max_count`` of its slice's wants told, and the
    builds that this resumed leased to the worker ``claim`` names (claim_count, lease_ms, worker_id,
    lanes), in one call."""
    key = ks.execution(execution_partition(ks, execution_id), execution_id)
    count, lease_ms, worker_id, lanes = claim
    return FCall("slice_complete", (key,), (token, result, max_count, count, lease_ms, worker_id, " ".join(lanes)),
                 parse=replies.slice_complete)


def cycle_call(ks: KeySpace, execution_id: str, cycle: str) -> FCall:
    key = ks.execution(execution_partition(ks, execution_id), execution_id)
    return FCall("slice_cycle", (key,), (cycle,), parse=replies.slice_cycle)


def due_call(ks: KeySpace, partition: int, max_count: int) -> FCall:
    return FCall("want_due", (ks.want_due(partition),), (max_count,), parse=replies.want_due)


# -- following replies -----------------------------------------------------------------------
def follow(client: Client, results: Sequence[tuple[int, replies.WantReply]],
           dispatch: Callable[[list[str]], Any],
           claim_locally: Callable[[int, str], bool] | None = None) -> None:
    """After want calls (partition where each ran, its reply): hint what became ready, apply
    the outbox messages they wrote (each applied message's own follow-up runs this again:
    engine/wantoutbox.py), then dispatch the builds that ended, so their slices tell their
    wants (``dispatch``: the dispatcher, or a caller's frontier). ``claim_locally(partition,
    lane)`` lets a worker keep a build made ready for itself instead of hinting it, as the
    dispatcher does."""
    hints = [(execution_partition(client.keys, r.id), r.lane) for _, w in results for r in w.ready]
    if claim_locally is not None:
        hints = [h for h in hints if not claim_locally(*h)]
    if hints:
        client.run_many(hint_commands(client.keys, hints))
    for partition in sorted({p for p, w in results if w.sent}):
        for _ in range(FOLLOW_ROUNDS):
            flushed = outbox.flush_now(client, partition)  # on an error: left to a later flush
            if flushed is None or not flushed.more:
                break
    ended = [eid for _, w in results for eid in w.dispatch]
    if ended:
        dispatch(ended)


# -- the public calls (App.want, App.invalidate, App.cancel_want) ---------------------------------
def want(app: App, slices: Any, dispatch: Callable[[list[str]], Any], *, data_timestamp: Any = None,
         sla_s: Any = None, ttl_s: Any = None, source: Any = "api", comment: Any = "",
         force: Any = False) -> str:
    """Check everything, then one ``want_create`` in the first slice's partition; follow its reply."""
    names = slice_names(slices)
    data_ts_ms, sla_ms, ttl_ms = horizons(data_timestamp, sla_s, ttl_s)
    checks.text(source, "source", max_chars=MAX_SOURCE_CHARS, allow_empty=True)
    checks.text(comment, "comment", max_chars=MAX_COMMENT_CHARS, allow_empty=True)
    if not isinstance(force, bool):
        raise ContractError(f"force must be True or False, got {force!r}")
    entries = [slice_entry(app, name) for name in names]
    home = entries[0]["partition"]
    want_id = new_want_id(home)
    breach = ""
    if app.breach_task is not None and sla_ms >= 0:
        breach = json.dumps(task_spec(app, app.breach_task, home, {}, (want_id,)))
    body = {"want": want_id, "slices": entries, "data_ts_ms": data_ts_ms, "sla_ms": sla_ms, "ttl_ms": ttl_ms,
            "source": source, "comment": comment, "force": force, "parent": "", "chain": [],
            "breach_task": breach}
    reply = app.client.run(create_call(app.client.keys, want_id, body))
    follow(app.client, [(home, reply)], dispatch)
    return want_id


def missing_deps(app: App, slices: Sequence[str]) -> list[dict[str, Any]]:
    """The entries slice_missing takes for what a producer said it misses; ContractError when
    a name is malformed, no producer builds it, or there are too many."""
    names = list(dict.fromkeys(check_slice(s) for s in slices))
    if not 1 <= len(names) <= MAX_MISSING:
        raise ContractError(f"MissingDependencies names 1..{MAX_MISSING} slices, got {len(names)}")
    deps = []
    for name in names:
        entry = slice_entry(app, name)
        entry["want"] = new_want_id(entry["partition"])
        deps.append(entry)
    return deps


# -- reading ---------------------------------------------------------------------------------
def slice_record(client: Client, name: Any) -> dict[str, str]:
    """A slice's record (``state`` missing when nobody asked for it yet)."""
    check_slice(name)
    key = client.keys.slice(slice_partition(client.keys, name), name)
    record: dict[str, str] = client.run(Command(("HGETALL", key), key)) or {}
    return {"name": name, "state": "missing", **record}


def want_record(client: Client, want_id: Any) -> dict[str, Any]:
    """A want's record with what it knows of each slice; NotFound when there is none."""
    ks = client.keys
    partition = want_partition(ks, want_id)
    key, wsl = ks.want(partition, want_id), ks.want_slices(partition, want_id)
    record, known = client.run_many([Command(("HGETALL", key), key), Command(("HGETALL", wsl), wsl)])
    if not record:
        raise NotFound(f"no want {want_id}")
    return {**record, "known": known or {}}


# -- cycles no build could see ----------------------------------------------------------------
BUILD_WAIT = "flowslot.slices"  # lua/15_wants.lua: suspend_on of a build waiting for missing slices
MAX_WALK = 500  # slices one walk reads at most


def waiting_for(missing: dict[str, str]) -> list[str]:
    """The slices a build's ``miss:`` hash says it still waits for."""
    return [name for name, entry in missing.items() if entry.endswith("|waiting")]


def find_cycle(client: Client, start: str, missing: dict[str, str], max_slices: int = MAX_WALK) -> list[str] | None:
    """Walk from slice ``start`` (whose build waits for ``missing``) through the builds of the
    slices it waits for, breadth first, one pipelined round per level; the path back to
    ``start`` when there is one (``[start, ..., start]``), else None. Reads only."""
    ks = client.keys
    parent: dict[str, str] = {}
    frontier = []
    for name in waiting_for(missing):
        if name == start:
            return [start, start]
        parent.setdefault(name, start)
        frontier.append(name)
    while frontier and len(parent) < max_slices:
        keys = [ks.slice(slice_partition(ks, n), n) for n in frontier]
        records = client.run_many([Command(("HMGET", k, "state", "build"), k) for k in keys])
        builds = [(n, r[1]) for n, r in zip(frontier, records, strict=True)
                  if isinstance(r, list) and r[0] == "building" and r[1]]
        reads = []
        for _, build in builds:
            p = execution_partition(ks, build)
            reads += [Command(("HGET", ks.execution(p, build), "suspend_on"), ks.execution(p, build)),
                      Command(("HGETALL", ks.missing(p, build)), ks.missing(p, build))]
        replies_ = client.run_many(reads) if reads else []
        following = []
        for i, (name, _) in enumerate(builds):
            suspend_on, waits = replies_[2 * i], replies_[2 * i + 1]
            if suspend_on != BUILD_WAIT or not isinstance(waits, dict):
                continue
            for dep in waiting_for(waits):
                if dep == start:
                    path = [name]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if dep not in parent:
                    parent[dep] = name
                    following.append(dep)
        frontier = following
    return None
