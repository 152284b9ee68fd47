"""Every FCALL reply, decoded into a structure with named fields: the one place that knows positions.

A Lua function replies with a flat array (see the ``Reply:`` line of its
header in ``lua/``). Reading it by position scattered the positions across
the code, and the same position meant different things (the third element of
``exec_complete`` is the dispatch flag, of ``exec_fail`` the retry delay).
Each function has one parser here, named after it, and ``PARSERS`` lists them
all; the wrappers in ``engine/executions.py``, ``engine/flowcalls.py`` and
``engine/dispatcher.py`` attach them, and callers read fields by name.

The structures are NamedTuples: immutable, equal to the tuples they replace,
and cheap. Building one costs about 0.2 us more than a plain tuple; a
``Claimed`` (one per claimed execution) costs about 1 us less than the frozen
dataclass it was, so the hot path parses no slower than before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from engine.errors import EngineError, error_from_reply

_NO_INPUTS: Mapping[str, str] = MappingProxyType({})


# -- executions (lua/20_executions.lua, lua/30_leases.lua, lua/45_retry.lua) -----------------
class SubmitReply(NamedTuple):
    """``exec_submit``: the execution, its state, and whether this call created it."""

    id: str
    state: str
    created: bool  # False: an idempotency key matched an existing execution


class CancelReply(NamedTuple):
    """``exec_cancel``: the state it was in ('canceled' when it already was)."""

    previous: str
    lane: str
    dispatch: bool  # the dispatcher must resolve its outgoing edges


class PromoteReply(NamedTuple):
    """``exec_promote``: how many due executions became ready, and the lanes to hint."""

    promoted: int
    lanes: list[str]


class Claimed(NamedTuple):
    """One execution leased by ``exec_claim``."""

    execution_id: str
    token: str
    task: str
    payload: str
    attempt: int
    deadline_ms: int
    lease_expiry_ms: int
    inputs: Mapping[str, str] = _NO_INPUTS  # upstream step → input JSON
    flow: str = ""
    step: str = ""
    inputs_paged: int = 0  # inputs too many to carry (``inputs`` is then empty): see inputs_page


class ClaimReply(NamedTuple):
    """``exec_claim``: ready work left in the set, the leases taken, executions that expired."""

    remaining: int
    claimed: list[Claimed]
    expired: list[str]  # past their deadline when met: to dispatch


class CompleteReply(NamedTuple):
    """``exec_complete``."""

    state: str
    first: bool  # this call made the transition (False: a repeat)
    dispatch: bool


class FailReply(NamedTuple):
    """``exec_fail``: 'ready' (retry now), 'delayed' (retry after ``delay_ms``) or 'failed'."""

    state: str
    first: bool
    delay_ms: int  # 0 unless delayed
    dispatch: bool


class ExpiredLease(NamedTuple):
    """One attempt ``exec_expire_leases`` failed with ``lease_lost``."""

    id: str
    state: str  # what became of it: ready, delayed or failed
    lane: str
    dispatch: bool


class RetryReply(NamedTuple):
    """``exec_retry``: the state it was in, and the lane to hint."""

    previous: str
    lane: str


class Resumed(NamedTuple):
    """One waiting step an event resumed, and whether the dispatcher must resolve its edges."""

    execution_id: str
    dispatch: bool


class DeliverReply(NamedTuple):
    """``event_deliver``: what the event did, the steps it resumed, and whether more wait."""

    outcome: str  # "resumed", "buffered" or "duplicate"
    resumed: list[Resumed]
    more: bool  # more steps wait than one call resumes: call again
    sent: list[tuple[str, str]]  # (msg id, execution id) of each wait_resume sent to a remote wait


class RegisterReply(NamedTuple):
    """``wait_register``: ``registered``, ``taken`` (a buffered event, sent back as ``sent``), ``duplicate``."""

    outcome: str
    sent: str  # msg id of the wait_resume sent, or ""


class WaitResumeReply(NamedTuple):
    """``wait_resume``: ``resumed``, ``stale`` (the wait ended or waits again), ``returned``
    (stale, and the event went back to its correlation's partition: flush) or ``duplicate``."""

    outcome: str
    execution_id: str
    dispatch: bool


class SignalReply(NamedTuple):
    """``wait_signal``: what the signal did, the step's execution, and whether to dispatch it."""

    outcome: str  # "resumed", "duplicate", or (nothing written) "expired" / "retired"
    execution_id: str  # "" unless resumed or duplicate
    dispatch: bool


class SuspendReply(NamedTuple):
    """``exec_suspend``: ``waiting``, or ``ready`` (its signal had come: hint ``lane``)."""

    state: str
    lane: str


class ExecSignalReply(NamedTuple):
    """``exec_signal``: what the signal did to the execution."""

    outcome: str  # "resumed", "stored", "duplicate", or (nothing written) "expired" / "retired"
    lane: str
    hinted: bool  # it went to its lane's ready set: hint the lane


class RotateReply(NamedTuple):
    """``secrets_rotate``: the key the new one replaced, its end of grace, keys dropped."""

    previous: str  # "" when the namespace had no key yet
    previous_until_ms: int
    dropped: int


class InputsPage(NamedTuple):
    """One ``HSCAN`` page of a step's inputs (not an FCALL; read when a claim left them out)."""

    cursor: str  # "0" after the last page
    inputs: dict[str, str]  # upstream step → input JSON


def server_ms(reply: Any) -> int:
    """A ``TIME`` reply (seconds, microseconds) in milliseconds; an error reply is raised."""
    if isinstance(reply, Exception):
        raise reply
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def exec_submit(r: Any) -> SubmitReply:
    return SubmitReply(r[0], r[1], bool(r[2]))


def exec_submit_many(r: Any) -> list[SubmitReply]:
    """One flat (id, state, created) triple per execution."""
    return [SubmitReply(r[i], r[i + 1], bool(r[i + 2])) for i in range(0, len(r), 3)]


def exec_cancel(r: Any) -> CancelReply:
    return CancelReply(r[0], r[1], bool(r[2]))


def exec_watch(r: Any) -> str:
    return str(r)


def exec_promote(r: Any) -> PromoteReply:
    return PromoteReply(int(r[0]), list(r[1]))


def exec_claim(r: Any) -> ClaimReply:
    if len(r) > 3:  # the call's lease expiry after the lists: this library's compact entries
        return ClaimReply(int(r[0]), _claimed_compact(r[1], int(r[3])), list(r[2]))
    return ClaimReply(int(r[0]), _claimed(r[1]), list(r[2]))  # an older library's (bench lua-cost --rev)


def _claimed_compact(flat: Any, lease_expiry_ms: int) -> list[Claimed]:
    """``exec_claim``'s flat list: id, token, task, payload, attempt, deadline_ms, n, the n
    input pairs (or none, n being minus the inputs' count when too many to carry), flow, and
    the step when flow is not empty; then the next. Every lease ends at ``lease_expiry_ms``."""
    claimed = []
    i, end = 0, len(flat)
    while i < end:
        n = int(flat[i + 6])
        j = i + 7
        inputs, paged = _NO_INPUTS, 0
        if n > 0:
            inputs = dict(zip(flat[j:j + 2 * n:2], flat[j + 1:j + 2 * n:2], strict=True))
            j += 2 * n
        elif n < 0:
            paged = -n
        flow = flat[j]
        step = flat[j + 1] if flow else ""
        claimed.append(Claimed(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], int(flat[i + 4]),
                               int(flat[i + 5]), lease_expiry_ms, inputs, flow, step, paged))
        i = j + 2 if flow else j + 1
    return claimed


def _claimed(entries: Any) -> list[Claimed]:
    """Claimed entries: ``exec_claim``'s one flat list, or the others' list of entries."""
    if entries and not isinstance(entries[0], list):
        return _claimed_flat(entries)
    claimed = []
    for c in entries:
        inputs, paged = _claimed_inputs(c[7])
        claimed.append(Claimed(c[0], c[1], c[2], c[3], int(c[4]), int(c[5]), int(c[6]), inputs,
                               c[8], c[9], paged))
    return claimed


def _claimed_flat(flat: Any) -> list[Claimed]:
    """An older library's ``exec_claim`` flat list (``bench lua-cost --rev``): id, token,
    task, payload, attempt, deadline_ms, lease_expiry_ms, n, paged, n input pairs, flow,
    step; then the next."""
    claimed = []
    i, end = 0, len(flat)
    while i < end:
        n = int(flat[i + 7]) * 2
        j = i + 9 + n
        inputs = dict(zip(flat[i + 9:j:2], flat[i + 10:j:2], strict=True)) if n else _NO_INPUTS
        claimed.append(Claimed(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], int(flat[i + 4]),
                               int(flat[i + 5]), int(flat[i + 6]), inputs, flat[j], flat[j + 1],
                               int(flat[i + 8])))
        i = j + 2
    return claimed


def _claimed_inputs(raw: Any) -> tuple[dict[str, str], int]:
    """A claimed step's inputs, or none and their count when too many to carry in the claim."""
    if isinstance(raw, int):
        return {}, raw
    return dict(zip(raw[::2], raw[1::2], strict=True)), 0


def exec_renew(r: Any) -> int:
    """The new lease expiry (ms)."""
    return int(r)


def exec_complete(r: Any) -> CompleteReply:
    return CompleteReply(r[0], bool(r[1]), bool(r[2]))


def exec_complete_many(r: Any) -> list[CompleteReply | EngineError]:
    """One reply per execution, in the call's order: its ``CompleteReply``, or the exception
    ``exec_complete`` would have raised for it (that execution was not recorded)."""
    return [_refused(r[i]) if r[i + 1] == -1 else CompleteReply(r[i], bool(r[i + 1]), bool(r[i + 2]))
            for i in range(0, len(r), 3)]


def _refused(message: str) -> EngineError:
    mapped = error_from_reply(message)
    return mapped if mapped is not None else EngineError(message)


def exec_fail(r: Any) -> FailReply:
    return FailReply(r[0], bool(r[1]), int(r[2]), bool(r[3]))


def exec_release(r: Any) -> str:
    """The lane to hint."""
    return str(r)


def exec_expire_leases(r: Any) -> list[ExpiredLease]:
    return [ExpiredLease(i, s, lane, bool(d)) for i, s, lane, d in r]


def exec_retry(r: Any) -> RetryReply:
    return RetryReply(r[0], r[1])


def inputs_page(r: Any) -> InputsPage:
    cursor, items = r
    pairs = dict(items) if isinstance(items, dict) else dict(zip(items[::2], items[1::2], strict=True))
    return InputsPage(str(cursor), pairs)


# -- flows (lua/40_flows.lua, lua/45_retry.lua) ----------------------------------------------
class ReadyStep(NamedTuple):
    """A step a flow call made ready: to hint on its lane."""

    id: str
    lane: str


class FlowSubmitReply(NamedTuple):
    """``flow_submit``."""

    state: str  # the flow's state
    created: bool
    ready: list[ReadyStep]
    skipped: list[str]  # to dispatch
    roots_left: int  # roots still held for ``flow_seal`` (a batched submit)


class SealReply(NamedTuple):
    """``flow_seal``."""

    ready: list[ReadyStep]
    roots_left: int


class ResolveTally(NamedTuple):
    """What one ``flow_resolve`` call resolved."""

    satisfied: int
    impossible: int
    already_resolved: int
    skipped: int


class ResolveReply(NamedTuple):
    """``flow_resolve``."""

    done: bool  # every outgoing edge is resolved (else call again)
    ready: list[ReadyStep]
    cascade: list[str]  # skipped children with children of their own: the next frontier
    tally: ResolveTally
    sent: int  # outbox messages recorded (remote waits that started): flush the partition


class FlowCompleteReply(NamedTuple):
    """``flow_complete``: ``exec_complete`` plus the edges it resolved and the children it leased."""

    state: str
    first: bool  # this call made the transition (False: a repeat)
    dispatch: bool  # the dispatcher resolves this step's edges (more than the call's bound)
    ready: list[ReadyStep]  # children made ready and not leased to the caller: to hint
    cascade: list[str]  # skipped children with children of their own: to dispatch
    claimed: list[Claimed]  # children leased to the caller, as exec_claim leases them
    claimed_lanes: list[str]  # the lane of each
    sent: int = 0  # outbox messages recorded (remote waits that started): the caller flushes


class FlowCancelReply(NamedTuple):
    """``flow_cancel``."""

    previous: str
    remaining: int  # steps still to cancel (call again)


class FlowResumeReply(NamedTuple):
    """``flow_resume``."""

    state: str
    lanes: list[str]  # lanes that received work: to hint
    remaining: int  # held steps still to release (call again)


class FlowRetryReply(NamedTuple):
    """``flow_retry``."""

    done: bool  # every phase finished (else call again)
    ready: list[ReadyStep]
    skipped: list[str]  # to dispatch


def _ready(r: Any) -> list[ReadyStep]:
    """The flat ``id, lane, id, lane, ...`` list of steps a call made ready (a list of pairs
    would cost the server a table per step)."""
    return [ReadyStep(r[i], r[i + 1]) for i in range(0, len(r), 2)]


def flow_submit(r: Any) -> FlowSubmitReply:
    return FlowSubmitReply(r[0], bool(r[1]), _ready(r[2]), list(r[3]), int(r[4]))


def flow_seal(r: Any) -> SealReply:
    return SealReply(_ready(r[0]), int(r[1]))


def flow_resolve(r: Any) -> ResolveReply:
    satisfied, impossible, already, skipped = r[3]
    return ResolveReply(bool(r[0]), _ready(r[1]), list(r[2]),
                        ResolveTally(int(satisfied), int(impossible), int(already), int(skipped)), int(r[4]))


def _step_claimed(entries: Any, r: Any, at: int) -> list[Claimed]:
    """``flow_complete(_many)``'s leased children: ``exec_claim``'s flat entries with the call's
    lease expiry at ``r[at]``, or an older library's list of entries (``bench lua-cost --rev``)."""
    if len(r) > at:
        return _claimed_compact(entries, int(r[at]))
    return _claimed(entries)


def flow_complete(r: Any) -> FlowCompleteReply:
    return FlowCompleteReply(r[0], bool(r[1]), bool(r[2]), _ready(r[3]), list(r[4]), _step_claimed(r[5], r, 8),
                             list(r[6]), int(r[7]))


def flow_complete_many(r: Any) -> list[FlowCompleteReply | EngineError]:
    """One reply per step, in the call's order: its ``FlowCompleteReply``, or the exception
    ``flow_complete`` would have raised for it (that step was not recorded). What the call did
    for all of them (children hinted, cascaded and leased; outbox messages) is in the first
    reply that is not an exception; the other replies' lists are empty, so a caller that
    follows up each reply as a ``flow_complete`` one does every follow-up once."""
    triples, ready, cascade, claimed, lanes, sent = r[:6]
    out: list[FlowCompleteReply | EngineError] = []
    shared = True
    for i in range(0, len(triples), 3):
        if triples[i + 1] == -1:
            out.append(_refused(triples[i]))
        elif shared:
            out.append(FlowCompleteReply(triples[i], bool(triples[i + 1]), bool(triples[i + 2]), _ready(ready),
                                         list(cascade), _step_claimed(claimed, r, 6), list(lanes), int(sent)))
            shared = False
        else:
            out.append(FlowCompleteReply(triples[i], bool(triples[i + 1]), bool(triples[i + 2]), [], [], [], []))
    return out


# -- wants (lua/15_wants.lua, lua/32_missing.lua) ---------------------------------------------
class WantReply(NamedTuple):
    """``want_create``, ``want_request``, ``want_news``, ``build_news``, ``want_cancel``,
    ``slice_missing``, ``slice_complete``: what the call did, and what the caller does next."""

    outcome: str  # a want's or build's state, or what a message did ('duplicate', 'ignored', ...)
    sent: int  # outbox messages written: flush the partition
    ready: list[ReadyStep]  # executions made ready: hint their lanes
    dispatch: list[str]  # builds that ended: dispatch them (their slice tells its wants)
    claimed: list[Claimed] = []  # builds leased to the caller (slice_missing, slice_complete)
    claimed_lanes: list[str] = []  # the lane of each


class WantDueReply(NamedTuple):
    """``want_due``: SLA breaches flagged and wants expired by one scanner call."""

    breached: list[str]
    expired: list[str]
    follow: WantReply  # messages sent, breach tasks to hint, builds to dispatch
    read: int  # due entries read (a full batch: call again)


def _want_reply(r: Any) -> WantReply:
    if len(r) > 4:
        return WantReply(str(r[0]), int(r[1]), _ready(r[2]), list(r[3]), _claimed(r[4]), list(r[5]))
    return WantReply(str(r[0]), int(r[1]), _ready(r[2]), list(r[3]))


def want_create(r: Any) -> WantReply:
    return _want_reply(r)


def want_request(r: Any) -> WantReply:
    return _want_reply(r)


def want_news(r: Any) -> WantReply:
    return _want_reply(r)


def build_news(r: Any) -> WantReply:
    return _want_reply(r)


def want_cancel(r: Any) -> WantReply:
    """``outcome``: the state the want was in."""
    return _want_reply(r)


def slice_missing(r: Any) -> WantReply:
    """``outcome``: the build's state now (waiting, ready, or failed on a dependency cycle)."""
    return _want_reply(r)


def slice_complete(r: Any) -> WantReply:
    """``outcome``: the build's state ('succeeded'); ``dispatch`` names it when wants are left to tell."""
    return _want_reply(r)


def want_purge(r: Any) -> int:
    """Wants deleted."""
    return int(r)


def slice_cycle(r: Any) -> WantReply:
    """``outcome``: 'failed' (the build ended on the cycle) or 'ignored' (it no longer waits)."""
    return _want_reply(r)


def slice_invalidate(r: Any) -> str:
    """The state the slice was in ('missing' when there was nothing to invalidate)."""
    return str(r)


def want_due(r: Any) -> WantDueReply:
    return WantDueReply(list(r[0]), list(r[1]), WantReply("due", int(r[2]), _ready(r[3]), list(r[4])),
                        int(r[5]))


def flow_cancel(r: Any) -> FlowCancelReply:
    return FlowCancelReply(r[0], int(r[1]))


def flow_pause(r: Any) -> str:
    """The flow's new state."""
    return str(r)


def flow_resume(r: Any) -> FlowResumeReply:
    return FlowResumeReply(r[0], list(r[1]), int(r[2]))


def flow_retry(r: Any) -> FlowRetryReply:
    return FlowRetryReply(bool(r[0]), _ready(r[1]), list(r[2]))


# -- the reconciler (lua/50_reconcile.lua) ---------------------------------------------------
class ExpiredDeadline(NamedTuple):
    """One execution ``exec_expire_deadlines`` expired."""

    id: str
    dispatch: bool


class FlowPurgeReply(NamedTuple):
    """``flow_purge``."""

    flows: int
    steps: int  # a full batch of steps: call again


class Repair(NamedTuple):
    """One disagreement ``rec_audit`` repaired."""

    kind: str
    id: str
    detail: str


class AuditReply(NamedTuple):
    """``rec_audit``."""

    more: bool  # events left for another call
    repairs: list[Repair]
    lanes: list[str]  # to hint
    dispatch: list[str]  # execution ids to dispatch


def rec_due(r: Any) -> list[str]:
    """Members of the index that came due."""
    return list(r)


def exec_expire_deadlines(r: Any) -> list[ExpiredDeadline]:
    return [ExpiredDeadline(i, bool(d)) for i, d in r]


def rec_stale_ready(r: Any) -> list[str]:
    """Lanes whose ready work waited too long: to hint."""
    return list(r)


def rec_purge(r: Any) -> int:
    """Executions purged."""
    return int(r)


def flow_purge(r: Any) -> FlowPurgeReply:
    return FlowPurgeReply(int(r[0]), int(r[1]))


def rec_audit(r: Any) -> AuditReply:
    return AuditReply(bool(r[0]), [Repair(kind, eid, detail) for kind, eid, detail in r[1]], list(r[2]),
                      list(r[3]))


def own_claim(r: Any) -> bool:
    """This daemon owns the partition now."""
    return bool(r)


def own_release(r: Any) -> bool:
    """Released (False: another daemon held it)."""
    return bool(r)


def own_heartbeat(r: Any) -> list[str]:
    """The daemons alive now, in expiry order."""
    return list(r)


def flowslot_states(r: Any) -> dict[str, Any]:
    """Both transition tables (JSON decoded)."""
    tables: dict[str, Any] = json.loads(r)
    return tables


def event_deliver(r: Any) -> DeliverReply:
    return DeliverReply(r[0], [Resumed(i, bool(d)) for i, d in r[1]], bool(r[2]), [(m, i) for m, i in r[3]])


def wait_register(r: Any) -> RegisterReply:
    return RegisterReply(r[0], r[1])


class ReturnReply(NamedTuple):
    """``wait_return``: ``resumed`` (local steps, and ``sent`` messages to remote ones), ``buffered``,
    ``duplicate``."""

    outcome: str
    resumed: list[Resumed]
    sent: int


def wait_return(r: Any) -> ReturnReply:
    return ReturnReply(r[0], [Resumed(i, bool(d)) for i, d in r[1]], int(r[2]))


def wait_unregister(r: Any) -> str:
    """``wait_unregister``: ``removed``, ``absent`` or ``duplicate``."""
    return str(r)


def wait_resume(r: Any) -> WaitResumeReply:
    return WaitResumeReply(r[0], r[1], bool(r[2]))


def wait_signal(r: Any) -> SignalReply:
    return SignalReply(r[0], r[1], bool(r[2]))


def exec_suspend(r: Any) -> SuspendReply:
    return SuspendReply(r[0], r[1])


def exec_signal(r: Any) -> ExecSignalReply:
    return ExecSignalReply(r[0], r[1], bool(r[2]))


def secrets_rotate(r: Any) -> RotateReply:
    return RotateReply(r[0], int(r[1]), int(r[2]))


def event_records(flat: list[str]) -> list[dict[str, str]]:
    """The transitions one event-stream entry holds (one entry per FCALL, see lua/10_states.lua).

    An entry's flat field list is a run of records. An execution's is one field ``e``
    whose value is ``"<id> <from> <to> <flow> <detail>"`` (``note_event`` in
    lua/00_helpers.lua; flow and detail may be empty, detail may hold spaces), or in
    the long form (streams written before it, ids with a space) starts at ``id``
    (``id, from, to[, flow][, detail]``). Consecutive transitions of one kind (the same
    from, to, flow and detail: a batch's) share one field ``g`` whose value is
    ``"<from> <to> <flow> <n> <id 1> ... <id n> <detail>"`` (``close_group``). A flow's
    starts at ``flow`` directly followed by ``from`` (``flow, from, to, detail``). Each
    transition comes back as a dict with the long form's keys: ``flow`` and ``detail``
    only when not empty.
    """
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for i in range(0, len(flat) - 1, 2):
        name = flat[i]
        if name == "g":
            current = None
            head = flat[i + 1].split(" ", 4)
            if len(head) < 5 or not head[3].isdigit():
                continue  # not written by close_group
            count = int(head[3])
            rest = head[4].split(" ", count)
            if len(rest) < count + 1:
                continue
            for member in rest[:count]:
                record = {"id": member, "from": head[0], "to": head[1]}
                if head[2]:
                    record["flow"] = head[2]
                if rest[count]:
                    record["detail"] = rest[count]
                records.append(record)
            continue
        if name == "e":
            parts = flat[i + 1].split(" ", 4)
            if len(parts) < 5:
                continue  # not written by note_event
            record = {"id": parts[0], "from": parts[1], "to": parts[2]}
            if parts[3]:
                record["flow"] = parts[3]
            if parts[4]:
                record["detail"] = parts[4]
            records.append(record)
            current = None
            continue
        if name == "id" or (name == "flow" and i + 2 < len(flat) and flat[i + 2] == "from"):
            current = {}
            records.append(current)
        if current is not None:
            current[name] = flat[i + 1]
    return records


def outbox_due(r: Any) -> list[tuple[str, str]]:
    """``outbox_due``: (message id, message JSON) of each due message, oldest first."""
    return [(str(i), str(m)) for i, m in r]


def outbox_ack(r: Any) -> int:
    """``outbox_ack``: how many messages were deleted."""
    return int(r)


def outbox_defer(r: Any) -> int:
    """``outbox_defer``: how many messages were moved behind the others."""
    return int(r)


class SweepReply(NamedTuple):
    """``outbox_sweep``: how many inbox ids were forgotten, and the due messages."""

    pruned: int
    due: list[tuple[str, str]]


def outbox_sweep(r: Any) -> SweepReply:
    return SweepReply(int(r[0]), outbox_due(r[1]))


def flowslot_version(r: Any) -> str:
    """The library's source hash."""
    return str(r)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "exec_submit": exec_submit,
    "exec_submit_many": exec_submit_many,
    "exec_cancel": exec_cancel,
    "exec_watch": exec_watch,
    "exec_promote": exec_promote,
    "exec_claim": exec_claim,
    "exec_renew": exec_renew,
    "exec_complete": exec_complete,
    "exec_complete_many": exec_complete_many,
    "exec_fail": exec_fail,
    "exec_release": exec_release,
    "exec_suspend": exec_suspend,
    "exec_expire_leases": exec_expire_leases,
    "exec_retry": exec_retry,
    "flow_submit": flow_submit,
    "flow_seal": flow_seal,
    "flow_resolve": flow_resolve,
    "flow_complete": flow_complete,
    "flow_complete_many": flow_complete_many,
    "want_create": want_create,
    "want_request": want_request,
    "want_news": want_news,
    "build_news": build_news,
    "want_cancel": want_cancel,
    "slice_missing": slice_missing,
    "slice_complete": slice_complete,
    "slice_invalidate": slice_invalidate,
    "slice_cycle": slice_cycle,
    "want_purge": want_purge,
    "want_due": want_due,
    "flow_cancel": flow_cancel,
    "flow_pause": flow_pause,
    "flow_resume": flow_resume,
    "flow_retry": flow_retry,
    "rec_due": rec_due,
    "exec_expire_deadlines": exec_expire_deadlines,
    "rec_stale_ready": rec_stale_ready,
    "rec_purge": rec_purge,
    "flow_purge": flow_purge,
    "rec_audit": rec_audit,
    "own_claim": own_claim,
    "own_release": own_release,
    "own_heartbeat": own_heartbeat,
    "event_deliver": event_deliver,
    "wait_signal": wait_signal,
    "exec_signal": exec_signal,
    "secrets_rotate": secrets_rotate,
    "wait_register": wait_register,
    "wait_unregister": wait_unregister,
    "wait_resume": wait_resume,
    "wait_return": wait_return,
    "outbox_due": outbox_due,
    "outbox_ack": outbox_ack,
    "outbox_defer": outbox_defer,
    "outbox_sweep": outbox_sweep,
    "flowslot_states": flowslot_states,
    "flowslot_version": flowslot_version,
}
