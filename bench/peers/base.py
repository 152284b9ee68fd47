"""What every peer run shares: sizes, scenario names, the cascade trees, outcome cells.

A peer's answer for one scenario is a dict. Measured cells carry figures;
the others carry a ``status`` a reader can act on: ``no primitive`` (the peer
cannot express the scenario), ``not measured`` (it could, but it is a
throughput-only peer here), ``failed to install`` / ``failed to start`` /
``error`` (with the error text). Nothing is silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

S1, CHAIN, FANOUT, CASCADE, CASCADE_ROOT = (
    "submit-claim-complete", "chain", "fanout", "cascade", "cascade-root")
SCENARIOS = (S1, CHAIN, FANOUT, CASCADE, CASCADE_ROOT)

NO_PRIMITIVE, NOT_MEASURED = "no primitive", "not measured"
FAILED_INSTALL, FAILED_START, ERROR = "failed to install", "failed to start", "error"

Cell = dict[str, Any]

# The cascade trees, as node -> the nodes whose results it takes. Node names
# are the same for every system, so the report can set final states side by side.
# "cascade" (the issue's): a 3-level in-tree where one leaf fails; data flows up.
LEAF_TREE: dict[str, tuple[str, ...]] = {
    "l0": (), "l1": (), "l2": (), "l3": (), "m0": ("l0", "l1"), "m1": ("l2", "l3"),
    "top": ("m0", "m1"),
}
LEAF_FAILS = "l0"
# "cascade-root": flowslot's own cascade scenario at shape 2,4: the root fails
# and every descendant takes its parent's result.
ROOT_TREE: dict[str, tuple[str, ...]] = {
    "root": (), "c0": ("root",), "c1": ("root",), "g0": ("c0",), "g1": ("c0",),
    "g2": ("c1",), "g3": ("c1",),
}
ROOT_FAILS = "root"
ROOT_SHAPE = (2, 4)  # children per level below the root, as flowslot's --shape


def expected_states(tree: dict[str, tuple[str, ...]], failing: str) -> dict[str, str]:
    """What a DAG engine should end with: the failing node failed, everything that
    (transitively) needs it skipped, everything else succeeded."""
    out: dict[str, str] = {}
    for node, needs in tree.items():  # parents come before children in the literals above
        if node == failing:
            out[node] = "failed"
        elif any(out[n] != "succeeded" for n in needs):
            out[node] = "skipped"
        else:
            out[node] = "succeeded"
    return out


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; the same numbers for every system."""

    tasks: int = 10_000
    workers: int = 4
    concurrency: int = 16
    payload_bytes: int = 100
    chain_steps: int = 10
    chain_flows_c1: int = 100
    chain_flows: int = 300
    chain_concurrency: int = 16
    chain_workers: int = 2
    fanout_width: int = 100
    fanout_repeats: int = 5
    cascade_wait_s: float = 10.0
    timeout_s: float = 120.0
    # A peer whose default worker forks a process per job gets fewer tasks (see rq_peer).
    slow_tasks: int = 2_000

    def pad(self) -> str:
        return "x" * self.payload_bytes

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> Sizes:
        return Sizes(**json.loads(text))


def status(kind: str, why: str) -> Cell:
    return {"status": kind, "why": why}


def measured(cell: Cell) -> bool:
    return "status" not in cell


def guarded(fn: Callable[[], Cell]) -> Cell:
    """Run one scenario; an exception becomes an ``error`` cell instead of ending the run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
        return error_cell(e)


def error_cell(e: BaseException) -> Cell:
    return status(ERROR, f"{type(e).__name__}: {e}"[:2000])
