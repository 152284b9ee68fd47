"""Cut a flow's encoded steps into ``flow_submit`` calls bounded by the work they carry.

A function call blocks its shard while it runs, so a call's size is measured
in the work the server does for it, not in steps: ``STEP_UNITS`` per step
(one per piece of appended edges), one per incoming edge, one per
``BYTES_PER_UNIT`` of payload. A step with more edges than fit in one call is
created with the first of them (and the totals it will have,
``edge_counts``) and receives the rest through ``append`` specs in the
following calls; the flow stays unsealed, so no step is claimable, until the
last call lands. The unit is about 10 µs of server time on the reference VM
(``flowslot bench bounded-calls``).
"""

from __future__ import annotations

from typing import Any

WORK_BUDGET = 500  # units per flow_submit call: about 5 ms of server time (bench bounded-calls)
STEP_UNITS = 4  # creating a step, and settling it in the last call, costs about four edges
MAX_DYNAMIC_EDGES = WORK_BUDGET - STEP_UNITS  # a step added by a handler is one call: it must fit
MAX_STEPS_PER_CALL = 500
BYTES_PER_UNIT = 2_048
REQUIRED_KINDS = ("ref", "after")


def step_cost(step: dict[str, Any]) -> int:
    """Work units of creating one step with all of its edges (or of appending edges)."""
    base = 1 if step.get("append") else STEP_UNITS
    return base + len(step["edges"]) + len(step.get("payload", "")) // BYTES_PER_UNIT


def plan_batches(steps: list[dict[str, Any]], budget: int = WORK_BUDGET,
                 max_steps: int = MAX_STEPS_PER_CALL) -> list[list[dict[str, Any]]]:
    """Steps (in topological order) → calls, each within ``budget`` units where possible.

    A single step whose own payload exceeds the budget still goes in one call
    (its payload cannot be split); its edges are always split.
    """
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 0

    def close() -> None:
        nonlocal current, used
        if current:
            batches.append(current)
        current, used = [], 0

    for step in steps:
        cost = step_cost(step)
        if current and (used + cost > budget or len(current) >= max_steps):
            close()
        if cost <= budget or len(step["edges"]) == 0:
            current.append(step)
            used += cost
            continue
        for piece in _split(step, budget):
            if current and used + step_cost(piece) > budget:
                close()
            current.append(piece)
            used += step_cost(piece)
    close()
    return batches


def _split(step: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """A step with too many edges: its creation with the first edges, then appends."""
    edges = step["edges"]
    head_room = max(budget - (STEP_UNITS + len(step["payload"]) // BYTES_PER_UNIT), 1)
    required = sum(1 for edge in edges if edge[1] in REQUIRED_KINDS)
    head = {**step, "edges": edges[:head_room], "edge_counts": [required, len(edges) - required]}
    pieces = [head]
    for start in range(head_room, len(edges), budget - 1):
        pieces.append({"step": step["step"], "append": 1, "edges": edges[start:start + budget - 1]})
    return pieces
