"""Numbers taken around a run: percentiles, and the servers' own counters.

Server counters come from ``INFO commandstats cpu`` on every primary before
and after the timed part. Commands run inside a function (``redis.call``)
are counted by the server as commands too, so ``commands`` includes them;
``by_command`` shows which is which. The snapshots' own calls are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.server import Target

# The snapshots' own INFO, and the handshake of each snapshot's fresh connection.
SELF = frozenset({"info", "hello", "client|setinfo"})
FUNCTION_CALLS = frozenset({"fcall", "fcall_ro"})


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


@dataclass
class ServerCounters:
    """Totals over every primary."""

    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0

    def minus(self, before: ServerCounters) -> ServerCounters:
        names = set(self.calls) | set(before.calls)
        return ServerCounters(
            {n: self.calls.get(n, 0) - before.calls.get(n, 0) for n in names},
            {n: self.usec.get(n, 0) - before.usec.get(n, 0) for n in names},
            self.cpu_s - before.cpu_s,
        )


def read_counters(target: Target) -> ServerCounters:
    out = ServerCounters()
    for node in target.primaries:
        client = target.node_client(node)
        try:
            info = client.info("commandstats", "cpu")
        finally:
            client.close()
        out.cpu_s += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        for name, stat in info.items():
            if name.startswith("cmdstat_") and isinstance(stat, dict):
                command = name[len("cmdstat_"):]
                out.calls[command] = out.calls.get(command, 0) + int(stat["calls"])
                out.usec[command] = out.usec.get(command, 0) + int(stat["usec"])
    return out


def per_job(delta: ServerCounters, jobs: int, wall_s: float) -> dict[str, object]:
    """What the servers did for each job: commands, function calls, CPU."""
    calls = {n: c for n, c in delta.calls.items() if n not in SELF and c > 0}
    jobs = max(jobs, 1)
    fcall_usec = sum(delta.usec.get(n, 0) for n in FUNCTION_CALLS)
    return {
        "commands_per_job": round(sum(calls.values()) / jobs, 2),
        "fcalls_per_job": round(sum(calls.get(n, 0) for n in FUNCTION_CALLS) / jobs, 2),
        "fcall_us_per_job": round(fcall_usec / jobs, 1),
        "server_cpu_us_per_job": round(delta.cpu_s * 1e6 / jobs, 1),
        # Share of one core the servers (all primaries together) kept busy.
        "server_cpu_share": round(delta.cpu_s / wall_s, 3) if wall_s > 0 else None,
        "fcall_share_of_wall": round(fcall_usec / 1e6 / wall_s, 3) if wall_s > 0 else None,
        "by_command": {n: round(c / jobs, 3)
                       for n, c in sorted(calls.items(), key=lambda kv: -kv[1])},
    }


def client_cpu(submitter_s: float, workers_s: float | None, jobs: int) -> dict[str, float | None]:
    """CPU the submitting process and the worker processes spent per job (us)."""
    jobs = max(jobs, 1)
    return {
        "submitter_cpu_us_per_job": round(submitter_s * 1e6 / jobs, 1),
        "worker_cpu_us_per_job": None if workers_s is None else round(workers_s * 1e6 / jobs, 1),
    }
