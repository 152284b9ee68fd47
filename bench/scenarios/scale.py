"""scale: submit-claim-complete on embedded clusters of 1, 3 and 6 primaries.

Reports ops/s per size and how evenly the work spread: partitions per node
(from the slot map) and commands per node (``INFO commandstats`` deltas).
The harness starts its own clusters, so ``--url`` does not apply here.
"""

from __future__ import annotations

from collections import Counter

import click

from bench.metrics import read_counters
from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.scenarios.submit_claim_complete import run_flowslot
from bench.server import Progress, Target, open_target
from engine.router import Router
from keys import key_slot, partition_tags

NAME = "scale"


def _partitions_per_node(target: Target, partitions: int) -> dict[str, int]:
    router = Router(target.url)
    try:
        return dict(Counter(router.node_for_slot(key_slot("{" + tag + "}")) for tag in partition_tags(partitions)))
    finally:
        router.close()


def _commands_per_node(target: Target) -> dict[str, int]:
    out = {}
    for node in target.primaries:
        single = Target(target.url, target.mode, target.embedded, (node,))
        out[node] = sum(read_counters(single).calls.values())
    return out


def _spread(values: dict[str, int]) -> dict[str, object]:
    low, high = min(values.values()), max(values.values())
    mean = sum(values.values()) / len(values)
    return {"min": low, "max": high, "max_dev_pct": round(100 * max(high - mean, mean - low) / mean, 1)}


def run(params: Params, target: Target, progress: Progress) -> Result:
    sizes = [int(s) for s in str(params.extra.get("sizes") or "1,3,6").split(",")]
    results = []
    for primaries in sizes:
        with open_target(None, False, progress, primaries=primaries) as cluster:
            before = _commands_per_node(cluster)
            flowslot = run_flowslot(params, cluster, progress)
            after = _commands_per_node(cluster)
            commands = {n: after[n] - before[n] for n in after}
            partitions = _partitions_per_node(cluster, params.partitions)
            results.append({"primaries": primaries, "ops_per_s": flowslot["ops_per_s"],
                            "p50_ms": flowslot["p50_ms"], "p99_ms": flowslot["p99_ms"],
                            "partitions_per_node": _spread(partitions),
                            "commands_per_node": _spread(commands)})
    return {"scenario": NAME, "tasks": params.tasks, "workers": params.workers, "results": results,
            "notes": ["each size is a fresh embedded cluster on this one machine: more primaries "
                      "share the same 2 cores, so this shows balance and overhead, not scale-out"]}


SCENARIO = Scenario(
    name=NAME,
    summary="submit-claim-complete on 1, 3 and 6 primaries; partition and command balance per node.",
    run=run,
    options=(click.Option(["--sizes"], default="1,3,6", show_default=True,
                          help="Comma-separated primary counts."),),
)
