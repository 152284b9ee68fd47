"""Reading what the servers report: INFO, CLUSTER SLOTS / NODES, slot ranges, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.localcluster.common import CLUSTER_SLOTS, POLL_S, LocalClusterError, SlotView


def parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of INFO / CLUSTER INFO into a dict."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def normalize_slots(reply: list[Any]) -> SlotView:
    """CLUSTER SLOTS as sorted (start, end, primary port, replica ports) for comparison."""
    ranges = []
    for entry in reply:
        start, end, primary, *replicas = entry
        replica_ports = tuple(sorted(int(replica[1]) for replica in replicas))
        ranges.append((int(start), int(end), int(primary[1]), replica_ports))
    return tuple(sorted(ranges))


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES lines as dicts with node_id, port, flags and primary_id."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        nodes.append(
            {
                "node_id": fields[0],
                "port": int(address.rsplit(":", 1)[1]),
                "flags": set(fields[2].split(",")),
                "primary_id": fields[3],
            }
        )
    return nodes


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """Contiguous, even slot ranges, one per primary."""
    bounds = [i * CLUSTER_SLOTS // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


def poll_until(check: Callable[[], str | None], timeout_s: float, what: str) -> None:
    """Call ``check`` until it returns None (no problem left) or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise LocalClusterError(f"{what} not reached within {timeout_s} s: {problem}")
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- the cluster
