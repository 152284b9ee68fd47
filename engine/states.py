"""The state machines of ARCHITECTURE.md §3, once in Python.

``lua/10_states.lua`` holds the same tables for the server, where every
state change is checked against them; the test
``tests/unit/test_lua_contract.py`` reads them back through
``flowslot_states`` and asserts equality, so the two cannot drift.
"""

from __future__ import annotations

from enum import Enum


class ExecutionState(str, Enum):
    BLOCKED = "blocked"
    DELAYED = "delayed"
    READY = "ready"
    LEASED = "leased"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_EXECUTION_STATES


class FlowState(str, Enum):
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


E = ExecutionState
F = FlowState

TERMINAL_EXECUTION_STATES = frozenset({E.SUCCEEDED, E.FAILED, E.SKIPPED, E.CANCELED, E.EXPIRED})

# States an execution is created in: submitted now, submitted delayed, a flow step.
INITIAL_EXECUTION_STATES = frozenset({E.READY, E.DELAYED, E.BLOCKED})

EXECUTION_TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    E.BLOCKED: frozenset({E.READY, E.DELAYED, E.WAITING, E.SKIPPED, E.CANCELED, E.EXPIRED}),
    E.DELAYED: frozenset({E.READY, E.BLOCKED, E.CANCELED, E.EXPIRED}),
    E.READY: frozenset({E.LEASED, E.BLOCKED, E.CANCELED, E.EXPIRED}),
    E.LEASED: frozenset({E.SUCCEEDED, E.FAILED, E.DELAYED, E.READY, E.WAITING, E.CANCELED,
                         E.EXPIRED}),
    E.WAITING: frozenset({E.SUCCEEDED, E.READY, E.DELAYED, E.FAILED, E.CANCELED, E.EXPIRED}),
    E.SUCCEEDED: frozenset(),
    # retry: exec_retry makes a standalone execution ready, flow_retry blocks a step again
    E.FAILED: frozenset({E.READY, E.BLOCKED}),
    E.SKIPPED: frozenset({E.BLOCKED}),
    E.CANCELED: frozenset({E.READY, E.BLOCKED}),
    E.EXPIRED: frozenset({E.READY, E.BLOCKED}),
}

FLOW_TRANSITIONS: dict[FlowState, frozenset[FlowState]] = {
    F.RUNNING: frozenset({F.PAUSING, F.PAUSED, F.SUCCEEDED, F.FAILED, F.CANCELED}),
    F.PAUSING: frozenset({F.PAUSED, F.RUNNING, F.SUCCEEDED, F.FAILED, F.CANCELED}),
    F.PAUSED: frozenset({F.RUNNING, F.SUCCEEDED, F.FAILED, F.CANCELED}),
    F.SUCCEEDED: frozenset(),
    F.FAILED: frozenset({F.RUNNING}),  # flow_retry
    F.CANCELED: frozenset({F.RUNNING}),  # flow_retry
}


def can_move(current: ExecutionState, target: ExecutionState) -> bool:
    return target in EXECUTION_TRANSITIONS[current]


class WantState(str, Enum):
    """A want (``app.want``): see lua/15_wants.lua and the README's "Wants"."""

    WAITING = "waiting"  # recorded; not every slice has answered yet
    BUILDING = "building"  # every slice is live or being built
    SATISFIED = "satisfied"
    FAILED = "failed"  # the build of one of its own slices failed
    UPSTREAM_FAILED = "upstream_failed"  # a slice one of its builds needed failed
    EXPIRED = "expired"  # data_timestamp + ttl_s passed first
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_WANT_STATES


class SliceState(str, Enum):
    """A data slice's canonical record (no record reads as missing)."""

    MISSING = "missing"
    BUILDING = "building"
    LIVE = "live"
    FAILED = "failed"


W = WantState
S = SliceState

TERMINAL_WANT_STATES = frozenset({W.SATISFIED, W.FAILED, W.UPSTREAM_FAILED, W.EXPIRED, W.CANCELED})
_WANT_ENDS = frozenset({W.SATISFIED, W.FAILED, W.UPSTREAM_FAILED, W.EXPIRED, W.CANCELED})

WANT_TRANSITIONS: dict[WantState, frozenset[WantState]] = {
    W.WAITING: _WANT_ENDS | {W.BUILDING},
    W.BUILDING: _WANT_ENDS,
    W.SATISFIED: frozenset(),
    W.FAILED: frozenset(),
    W.UPSTREAM_FAILED: frozenset(),
    W.EXPIRED: frozenset(),
    W.CANCELED: frozenset(),
}

SLICE_TRANSITIONS: dict[SliceState, frozenset[SliceState]] = {
    S.MISSING: frozenset({S.BUILDING}),
    S.BUILDING: frozenset({S.LIVE, S.FAILED}),
    S.LIVE: frozenset({S.BUILDING, S.MISSING}),  # a forced rebuild, app.invalidate
    S.FAILED: frozenset({S.BUILDING, S.MISSING}),  # a new want builds it again, app.invalidate
}
