"""Flow operations that take several calls: seal, cancel, resume, retry.

Each runs its FCALL until the server says it is done. Every one of these
functions is idempotent and records itself in the partition's ``flow_ops``
index until its last call, so when a process dies half-way the reconciler's
``flow_ops`` scanner calls the same function again (``finish_op``) and the
operation completes: nothing stays half-sealed, half-canceled or
half-resumed.
"""

from __future__ import annotations

from engine import flowcalls, outbox
from engine.client import Client
from engine.dispatcher import announce
from engine.errors import ContractError
from engine.hints import hint_commands

CONTROL_BATCH = 100  # steps per cancel / resume call (~30 us per canceled step)
RETRY_BATCH = 200  # steps per flow_retry call (its edges phase reads 4 edges per unit)
SEAL_BATCH = 200  # roots released per flow_seal call
OPS = ("seal", "cancel", "resume", "retry")


def seal(client: Client, flow_id: str) -> None:
    """Release every root held by a batched submit (``flow_seal`` until none is left)."""
    ready: list[tuple[str, str]] = []
    roots_left = 1
    while roots_left:
        sealed = client.run(flowcalls.seal(client.keys, flow_id, SEAL_BATCH))
        ready += sealed.ready
        roots_left = sealed.roots_left
    announce(client, ready, [])
    _flush(client, flow_id)


def cancel(client: Client, flow_id: str, reason: str = "flow canceled") -> str:
    """Cancel the flow and every unfinished step; returns the state it was in."""
    first = client.run(flowcalls.cancel(client.keys, flow_id, CONTROL_BATCH, reason))
    remaining = first.remaining
    while remaining:
        remaining = client.run(flowcalls.cancel(client.keys, flow_id, CONTROL_BATCH, reason)).remaining
    _flush(client, flow_id)
    return str(first.previous)


def resume(client: Client, flow_id: str) -> str:
    """Run the flow again and hint every step it held; returns the new state."""
    lanes: set[str] = set()
    remaining = 1
    state = ""
    while remaining:
        resumed = client.run(flowcalls.resume(client.keys, flow_id, CONTROL_BATCH))
        state, remaining = resumed.state, resumed.remaining
        lanes.update(resumed.lanes)
    if lanes:
        partition = flowcalls.flow_partition(client.keys, flow_id)
        client.run_many(hint_commands(client.keys, [(partition, lane) for lane in lanes]))
    return str(state)


def retry(client: Client, flow_id: str) -> None:
    """Re-run the failed, skipped, expired and canceled steps (``flow_retry`` in phases)."""
    ready: list[tuple[str, str]] = []
    skipped: list[str] = []
    done = False
    while not done:
        retried = client.run(flowcalls.retry(client.keys, flow_id, RETRY_BATCH))
        done = retried.done
        ready += retried.ready
        skipped += retried.skipped
    announce(client, ready, skipped)
    _flush(client, flow_id)


def _flush(client: Client, flow_id: str) -> None:
    """Apply at once the outbox messages the operation recorded: remote waits that started
    (registered in their correlation's partition) or ended (unregistered)."""
    outbox.flush_now(client, flowcalls.flow_partition(client.keys, flow_id))


def finish_op(client: Client, member: str) -> None:
    """Complete a recorded operation (``"<op>:<flow id>"`` from the ``flow_ops`` index)."""
    op, _, flow_id = member.partition(":")
    if op == "seal":
        seal(client, flow_id)
    elif op == "cancel":
        cancel(client, flow_id)
    elif op == "resume":
        resume(client, flow_id)
    elif op == "retry":
        retry(client, flow_id)
    else:
        raise ContractError(f"unknown flow operation {member!r}")
