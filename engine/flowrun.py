"""A handle on a submitted flow: status, waiting, results, cancel/pause/resume, describe.

Status is one read (the flow hash keeps exact per-state counters); waiting
blocks on the flow's ``done`` list with the same BLMOVE rotation as results.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from engine import checks, flowcalls, flowops, signals
from engine.errors import (
    FlowCanceled,
    NotFound,
    ResultTimeout,
    StepCanceled,
    StepFailed,
    StepSkipped,
    TaskCanceled,
    TaskFailed,
)
from engine.events import SIGNAL_EVENT
from engine.handle import Handle
from engine.replies import event_records, server_ms
from engine.router import BLOCK_MARGIN_S, Command
from engine.states import ExecutionState, FlowState

if TYPE_CHECKING:
    from engine.app import App

TERMINAL_FLOW = {FlowState.SUCCEEDED, FlowState.FAILED, FlowState.CANCELED}

# A flow's timeline reads its partition's event stream from the flow's creation on, less
# this margin (a call's entry id and the created_ms it read from TIME may differ by its
# run time), TIMELINE_PAGE entries a round; the stream holds about 10,000 entries, so
# TIMELINE_MAX_PAGES bounds the rounds above what it can hold.
TIMELINE_MARGIN_MS = 60_000
TIMELINE_PAGE = 1_000
TIMELINE_MAX_PAGES = 20


class FlowRun:
    def __init__(self, app: App, flow_id: str, *, submitted: bool = False) -> None:
        self.app = app
        self.client = app.client
        self.id = flow_id
        self._submitted = submitted  # returned by submit(): the flow exists, wait need not check first
        self.partition = flowcalls.flow_partition(self.client.keys, flow_id)
        self.key = self.client.keys.flow(self.partition, flow_id)

    def __repr__(self) -> str:
        return f"FlowRun({self.id!r})"

    def _get(self, *args: Any, key: str | None = None) -> Any:
        return self.client.run(Command(args, key or self.key))

    # -- state -----------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The flow hash: state, name, labels (a dict), and exact per-state step counts (one read)."""
        raw = self._get("HGETALL", self.key)
        if not raw:
            raise NotFound(f"no flow {self.id}")
        counts = {k[2:]: int(v) for k, v in raw.items() if k.startswith("c:") and int(v)}
        return {"id": self.id, "name": raw.get("name", ""), "state": raw["state"],
                "labels": json.loads(raw.get("labels") or "{}"), "total": int(raw.get("total", 0)),
                "terminal": int(raw.get("terminal", 0)), "counts": counts,
                "created_ms": int(raw.get("created_ms", 0)),
                "finished_ms": int(raw["finished_ms"]) if raw.get("finished_ms") else None}

    def state(self) -> FlowState:
        return FlowState(self.status()["state"])

    def wait(self, timeout: float | None = None) -> FlowState:
        """Block until the flow is terminal; returns its final state (``timeout`` as in Handle.result)."""
        timeout = checks.timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.client.keys.flow_done(self.partition, self.id)
        # A flow this run submitted exists: its first block needs no read before it (the read
        # is there so that an unknown flow id is NotFound at once, not after the timeout).
        state = None if self._submitted else self.state()
        while True:
            if state is not None and state in TERMINAL_FLOW:
                return state
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0 and state is not None:
                raise ResultTimeout(f"flow {self.id} is still {state.value} after {timeout}s")
            block_s = 0 if remaining is None else round(max(remaining, 0.001), 3)
            # The state is read behind the block in the same pipeline: the server runs the
            # HGET once the BLMOVE returns, so a flow's end costs one round trip, not two.
            read_timeout_s = None if block_s == 0 else block_s + BLOCK_MARGIN_S
            replies = self.client.run_many([
                Command(("BLMOVE", done, done, "RIGHT", "RIGHT", block_s), done,
                        read_timeout_s=read_timeout_s),
                Command(("HGET", self.key, "state"), self.key)])
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            now = replies[1]
            if now is None:
                raise NotFound(f"no flow {self.id}")
            state = FlowState(now)

    def step_execution(self, step: str) -> str:
        """The execution id of one step; NotFound when the flow has no such step."""
        checks.step_id(step)
        eid = self._get("HGET", self.client.keys.flow_steps(self.partition, self.id), step)
        if not eid:
            self.status()
            raise NotFound(f"flow {self.id} has no step {step!r}")
        return str(eid)

    def token(self, step: str, *, expires_in_s: float | None = None) -> str:
        """A signed token for wait step ``step``: ``app.signal(token, payload)`` completes it.

        URL-safe and signed (see engine/signals.py); valid until ``expires_in_s`` (server
        time; None: no expiry) and while its signing key is current or in its grace
        period after ``flowslot secrets rotate``. ContractError if ``step`` is not a wait step.
        """
        return signals.issue(self.client, self.id, step, expires_in_s=expires_in_s)

    def result(self, step: str, timeout: float | None = None) -> Any:
        """The step's result; StepFailed / StepSkipped / StepCanceled / FlowCanceled otherwise."""
        checks.timeout(timeout)
        handle = Handle(self.client, self.step_execution(step), created=False)
        try:
            return handle.result(timeout)
        except TaskCanceled as e:
            if self.state() is FlowState.CANCELED:
                raise FlowCanceled(self.id) from e
            raise StepCanceled(e.execution_id) from e
        except TaskFailed as e:
            if e.state == ExecutionState.SKIPPED.value:
                raise StepSkipped(step, e.message) from e
            raise StepFailed(e.execution_id, e.kind, e.message, e.state) from e

    # -- control ---------------------------------------------------------
    def cancel(self, reason: str = "flow canceled") -> str:
        """Cancel the flow and every unfinished step (``flow_cancel`` in batches). Idempotent."""
        checks.reason(reason)
        return flowops.cancel(self.client, self.id, reason)

    def pause(self) -> str:
        """Hold ready and future-ready steps; running ones finish (``flow_pause``). Idempotent."""
        return str(self.client.run(flowcalls.pause(self.client.keys, self.id)))

    def resume(self) -> str:
        """Release held steps and hint them (``flow_resume`` in batches). Idempotent."""
        return flowops.resume(self.client, self.id)

    def retry(self) -> str:
        """Re-run the failed, skipped, expired and canceled steps (``flow_retry`` in phases), with
        fresh attempts and no deadline (an expired step's has passed)."""
        flowops.retry(self.client, self.id)
        return self.state().value

    # -- inspection ------------------------------------------------------
    def describe(self, timeline_limit: int = 10_000) -> dict[str, Any]:
        """The flow, each step (state, attempts, timings, error, blockers), and its timeline."""
        checks.integer(timeline_limit, "timeline_limit", minimum=1, maximum=10**9)
        ks = self.client.keys
        flow = self.status()
        steps = self._get("HGETALL", ks.flow_steps(self.partition, self.id))
        created = self._get("LRANGE", ks.flow_order(self.partition, self.id), 0, -1)
        rank = {eid: n for n, eid in enumerate(created)}
        order = sorted(steps.items(), key=lambda item: rank.get(item[1], len(rank)))
        calls = []
        for _, eid in order:
            calls.append(Command(("HGETALL", ks.execution(self.partition, eid)), self.key))
            calls.append(Command(("HGETALL", ks.edges_in(self.partition, eid)), self.key))
        # Durations of live steps count to the server's clock, the one their times come from
        # (the caller's may be skewed).
        calls.append(Command(("TIME",), self.key))
        replies = self.client.run_many(calls)
        now_ms = server_ms(replies[-1])
        described = []
        for n, (step, eid) in enumerate(order):
            fields, edges = replies[2 * n], replies[2 * n + 1]
            described.append(_describe_step(step, eid, fields, edges, flow["state"], now_ms))
        return {"flow": flow, "steps": described, "timeline": self._timeline(timeline_limit, flow["created_ms"])}

    def timeline(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """This flow's events (at most ``limit``), oldest first, from its partition's stream.

        A stream entry holds every transition of one call; each is one event here. The
        stream is read from the flow's creation on (less a margin for the clock), a page
        at a time, until ``limit`` events or its end: the entries of other work in the
        partition, before or among the flow's, take nothing from ``limit``.
        """
        checks.integer(limit, "limit", minimum=1, maximum=10**9)
        return self._timeline(limit, self.status()["created_ms"])

    def _timeline(self, limit: int, created_ms: int) -> list[dict[str, Any]]:
        key = self.client.keys.events(self.partition)
        start = f"{max(created_ms - TIMELINE_MARGIN_MS, 0)}-0"
        out: list[dict[str, Any]] = []
        for _ in range(TIMELINE_MAX_PAGES):  # the stream is capped (lua/00_helpers.lua EVENTS_MAXLEN)
            entries = self._get("XRANGE", key, start, "+", "COUNT", TIMELINE_PAGE, key=key)
            for entry_id, flat in entries:
                at_ms = int(entry_id.split("-")[0])
                out.extend({"at_ms": at_ms, **fields} for fields in event_records(flat)
                           if fields.get("flow") == self.id)
            if len(out) >= limit or len(entries) < TIMELINE_PAGE:
                break
            start = "(" + entries[-1][0]
        return out[:limit]


def _describe_step(step: str, eid: str, f: dict[str, str], edges: dict[str, str], flow_state: str,
                   now_ms: int) -> dict[str, Any]:
    def ms(name: str) -> int | None:
        return int(f[name]) if f.get(name) else None

    state = f.get("state", "missing")
    ready, started, finished = ms("ready_ms"), ms("started_ms"), ms("finished_ms")
    # queued: from ready to started; queued again (ready after a failed attempt, whose start is
    # older): from ready until now, or until it ended without starting again
    if ready and started is not None and started >= ready:
        queued: int | None = started - ready
    else:
        queued = (finished or now_ms) - ready if ready else None
    running = (finished or now_ms) - started if started and state in ("leased", "succeeded", "failed") else None
    return {
        "step": step, "id": eid, "task": f.get("task"), "state": state,
        "attempts": int(f.get("attempts", 0)), "optional": f.get("optional") == "1",
        "created_ms": ms("created_ms") or 0, "queued_ms": queued, "running_ms": running,
        "error": {"kind": f["error_kind"], "message": f.get("error_msg", "")} if f.get("error_kind") else None,
        "edges": {up: value.split("|")[0] + ":" + value.split("|")[1] for up, value in edges.items()},
        "blockers": _blockers(state, f, edges, flow_state, now_ms),
    }


def _blockers(state: str, f: dict[str, str], edges: dict[str, str], flow_state: str,
              now_ms: int) -> list[str]:
    """Why a non-terminal step is not running (or not done) yet, in words."""
    if state == "blocked":
        waiting = [f"edge from {up} ({v.split('|')[0]}) is pending" for up, v in edges.items()
                   if v.endswith("|pending")]
        return waiting or ["waiting for the flow's submit to be sealed"]
    if state == "ready" and flow_state in ("paused", "pausing"):
        return [f"flow is {flow_state}"]
    if state == "ready":
        return ["waiting for a worker on lane " + f.get("lane", "?")]
    if state == "delayed":
        return [f"retry back-off, due in {_until(f.get('due_ms'), now_ms)} (attempt {f.get('attempts')} "
                f"failed: {f.get('error_kind')})"]
    if state == "leased":
        return [f"running on {f.get('worker')}, lease ends in {_until(f.get('lease_expiry_ms'), now_ms)}"]
    if state == "waiting":
        return [_waiting_for(f, now_ms)]
    return []


def _until(at_ms: str | None, now_ms: int) -> str:
    """How long from ``now_ms`` (the server's clock) until ``at_ms``, in words (``?`` unknown)."""
    return duration_text(int(at_ms) - now_ms) if at_ms else "?"


def _waiting_for(f: dict[str, str], now_ms: int) -> str:
    """``event payment_received {"order_id":"o-17"}, 12 min, times out in 23 h``."""
    event = f.get("wait_event", "?")
    if f.get("suspend_on"):
        what = f"signal {f['suspend_on']} (the handler suspended in wait_for)"
    elif event == SIGNAL_EVENT:
        what = "a signal (a token from run.token())"
    else:
        what = f"event {event} {f.get('wait_correlate', '')}".rstrip()
    since = int(f.get("waiting_ms") or now_ms)
    text = f"{what}, {duration_text(now_ms - since)}"
    deadline = int(f.get("deadline_ms") or 0)
    if deadline:
        text += f", times out in {duration_text(deadline - now_ms)}"
    return text


def duration_text(ms: int) -> str:
    """A person's reading of a duration: 850 ms, 42 s, 12 min, 23 h, 3 d."""
    ms = max(ms, 0)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size} {unit}"
    return f"{ms} ms"
