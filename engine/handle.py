"""Handles on submitted executions: state, cancel, and a blocking ``result``.

``result`` is woken by the outcome, not by polling: before each block a
waiter marks the execution watched (``exec_watch``); the terminal transition
of a watched execution pushes one element to its ``done`` list, and waiters
block on ``BLMOVE done done`` — a rotation, so the element stays for every
other waiter. A block lasts at most ``RECHECK_S`` (5 s), after which the
waiter reads the state and watches again (a watch lost to a failover costs
it that long at most). Executions nobody waits on get no done list.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from engine import checks, executions
from engine.codec import decode
from engine.dispatcher import dispatch
from engine.errors import NotFound, ResultTimeout, TaskCanceled, TaskFailed
from engine.hints import hint_commands
from engine.router import Command
from engine.states import ExecutionState

if TYPE_CHECKING:
    from engine.client import Client


# What exec_submit leaves unstored at its default (attempts and epoch until the first claim
# writes them); EXEC_DEFAULTS in lua/10_states.lua holds the same (a unit test compares).
SUBMIT_DEFAULTS = {"attempts": "0", "epoch": "0", "deadline_ms": "0", "priority": "0", "max_attempts": "3",
                   "backoff_ms": "1000", "backoff_max_ms": "300000"}

# What flow_submit leaves unstored at its default on a flow step besides those (create_step).
STEP_DEFAULTS = {"optional": "0", "policy": "all", "quorum": "0", "req_total": "0", "req_ok": "0",
                 "req_bad": "0", "soft_total": "0", "soft_done": "0"}

# What a wait step leaves unstored at its default besides STEP_DEFAULTS (lua/40_flows.lua
# wait_step_fields); it holds no attempts nor retry policy at all: it runs no handler.
WAIT_STEP_DEFAULTS = {**STEP_DEFAULTS, "deadline_ms": "0", "timeout_ms": "0", "on_timeout": "expire",
                      "wait_correlate": ""}


def read_execution(client: Client, execution_id: str) -> dict[str, str]:
    """HGETALL of one execution with the fields stored only off their default filled in;
    NotFound when it does not exist."""
    key = client.keys.execution(executions.execution_partition(client.keys, execution_id), execution_id)
    fields = client.run(Command(("HGETALL", key), key))
    if not fields:
        raise NotFound(f"no execution {execution_id}")
    if "wait_event" in fields:
        return {**WAIT_STEP_DEFAULTS, **fields}
    if "flow" in fields:
        return {**SUBMIT_DEFAULTS, **STEP_DEFAULTS, **fields}
    return with_submit_defaults(fields)


def with_submit_defaults(fields: dict[str, str]) -> dict[str, str]:
    """A standalone execution's hash with the fields submit left unstored at their default;
    one submitted ready got no ``ready_ms``: it became ready when it was created."""
    full = {**SUBMIT_DEFAULTS, **fields}
    if "ready_ms" not in full and "due_ms" not in full and "created_ms" in full:
        full["ready_ms"] = full["created_ms"]
    return full


# The longest one block of ``Handle.result`` before it reads the state and asks for the done
# marker again (a marker or a watch lost to a failover costs at most this long).
RECHECK_S = 5.0


class Handle:
    """A submitted execution."""

    def __init__(self, client: Client, execution_id: str, created: bool = True) -> None:
        self.client = client
        self.id = execution_id
        self.created = created

    def __repr__(self) -> str:
        return f"Handle({self.id!r})"

    def info(self) -> dict[str, str]:
        return read_execution(self.client, self.id)

    def state(self) -> ExecutionState:
        return ExecutionState(self.info()["state"])

    def cancel(self, reason: str = "canceled") -> str:
        """Cancel (``exec_cancel``); returns the state it was in."""
        checks.reason(reason)
        try:
            canceled = self.client.run(executions.cancel(self.client.keys, self.id, reason))
        except NotFound:
            raise NotFound(f"no execution {self.id}") from None  # (the reply names its key)
        if canceled.dispatch:
            dispatch(self.client, [self.id])
        return str(canceled.previous)

    def retry(self) -> str:
        """Run a failed, canceled or expired execution again (``exec_retry``) with fresh attempts and
        no deadline (an expired one's has passed); returns its old state."""
        try:
            retried = self.client.run(executions.retry(self.client.keys, self.id))
        except NotFound:
            raise NotFound(f"no execution {self.id}") from None  # (the reply names its key)
        partition = executions.execution_partition(self.client.keys, self.id)
        self.client.run_many(hint_commands(self.client.keys, [(partition, retried.lane)]))
        return str(retried.previous)

    def result(self, timeout: float | None = None) -> Any:
        """Block until terminal; return the result or raise TaskFailed / TaskCanceled.

        ``timeout`` in seconds (finite, at most 1e7); None waits for ever.
        """
        timeout = checks.timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.client.keys.done(executions.execution_partition(self.client.keys, self.id), self.id)
        while True:
            # From here on its terminal transition pushes the done marker. Asked again before
            # every block: a watch a failover lost is made again within RECHECK_S. The state it
            # replies saves a read; the whole execution is read once, when it is terminal.
            try:
                state = ExecutionState(self.client.run(executions.watch(self.client.keys, self.id)))
            except NotFound:
                raise NotFound(f"no execution {self.id}") from None  # (as info() says it)
            if state.terminal:
                info = self.info()
                state = ExecutionState(info["state"])
                if state.terminal:  # (else it was retried in between: wait again)
                    return _outcome(self.id, state, info)
            wait_s = RECHECK_S if deadline is None else deadline - time.monotonic()
            if deadline is not None and wait_s <= 0:
                raise ResultTimeout(f"execution {self.id} is still {state.value} after {timeout}s")
            block_s = round(min(max(wait_s, 0.001), RECHECK_S), 3)
            self.client.router.blocking(done, "BLMOVE", done, done, "RIGHT", "RIGHT", block_s,
                                        block_s=block_s)


def _outcome(execution_id: str, state: ExecutionState, info: dict[str, str]) -> Any:
    if state is ExecutionState.SUCCEEDED:
        return decode(info.get("result"))
    if state is ExecutionState.CANCELED:
        raise TaskCanceled(execution_id)
    raise TaskFailed(execution_id, info.get("error_kind", state.value), info.get("error_msg", ""),
                     state.value)
