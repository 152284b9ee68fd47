"""What the server did per job, for any client: commands, scripts, round trips, CPU.

One ``INFO commandstats stats cpu`` before and after the timed part, on one
long-lived connection (so a snapshot costs exactly one command and one read).
``commands`` counts what the server executed, including the commands a Lua
script or function ran (the server counts those too); ``scripts`` counts the
EVAL/EVALSHA/FCALL calls themselves. ``round trips`` is the server's
``total_reads_processed``: one per batch of requests a client sent and then
waited on (a pipeline is one; a blocking pop that times out and is re-sent
counts again). The snapshot's own command and read, and those of a
completion poller (``own``), are taken off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

SELF = frozenset({"info", "hello", "client|setinfo"})  # snapshots and handshakes
SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
TOP_COMMANDS = 8


@dataclass
class Snapshot:
    calls: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    reads: int = 0


class ServerMeter:
    """Snapshots of one standalone server over one connection."""

    def __init__(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
        self.conn.ping()

    def snapshot(self) -> Snapshot:
        info: dict[str, Any] = self.conn.execute_command("INFO", "commandstats", "stats", "cpu")
        calls = {name[len("cmdstat_"):]: int(stat["calls"]) for name, stat in info.items()
                 if name.startswith("cmdstat_") and isinstance(stat, dict)}
        return Snapshot(calls, float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                        int(info["total_reads_processed"]))

    def close(self) -> None:
        self.conn.close()


def per_job(before: Snapshot, after: Snapshot, jobs: int,
            own: dict[str, int] | None = None) -> dict[str, Any]:
    """Per-job figures between two snapshots; ``own`` = command -> calls of our own poller."""
    own = own or {}
    calls = {n: after.calls.get(n, 0) - before.calls.get(n, 0) - own.get(n, 0)
             for n in after.calls if n not in SELF}
    calls = {n: c for n, c in calls.items() if c > 0}
    reads = after.reads - before.reads - 1 - sum(own.values())  # 1: the "after" INFO itself
    jobs = max(jobs, 1)
    return {
        "commands_per_job": round(sum(calls.values()) / jobs, 2),
        "scripts_per_job": round(sum(calls.get(n, 0) for n in SCRIPTS) / jobs, 2),
        "round_trips_per_job": round(max(reads, 0) / jobs, 2),
        "server_cpu_us_per_job": round((after.cpu_s - before.cpu_s) * 1e6 / jobs, 1),
        "by_command": {n: round(c / jobs, 3) for n, c in
                       sorted(calls.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]},
    }
