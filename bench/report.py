"""Results as an aligned table (default) or one JSON object (``--json``)."""

from __future__ import annotations

import json
from typing import Any

from engine.cli.options import table

COLUMNS = (("ops/s", "ops_per_s"), ("ops/s range", "ops_range"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
           ("cmds/job", "commands_per_job"), ("fcalls/job", "fcalls_per_job"),
           ("cpu us/job: server", "server_cpu_us_per_job"), ("workers", "worker_cpu_us_per_job"),
           ("submitter", "submitter_cpu_us_per_job"), ("wall s", "wall_s"),
           ("completed", "completed"))
TOP_COMMANDS = 8


def systems(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The measured systems of a result: every sub-dict with ``ops_per_s``."""
    return {k: v for k, v in result.items() if isinstance(v, dict) and "ops_per_s" in v}


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# Top-level keys every result has (printed in the header), not figures of the scenario.
FRAME_KEYS = {"scenario", "tasks", "workers", "concurrency", "payload_bytes", "machine", "server", "git",
              "notes", "ratio", "ratios"}


def _sizes(result: dict[str, Any]) -> str:
    """The header's sizes, leaving out what a scenario does not use (no "None tasks")."""
    parts = []
    if result.get("tasks") is not None:
        parts.append(f"{result['tasks']} tasks")
    if result.get("workers") is not None:
        parts.append(f"{result['workers']} worker processes x {result.get('concurrency')} threads")
    if result.get("payload_bytes") is not None:
        parts.append(f"payload {result['payload_bytes']} B")
    return f"{result['scenario']}: " + ", ".join(parts) if parts else str(result["scenario"])


def _figures(result: dict[str, Any]) -> list[str]:
    """A scenario without per-system rows (waits, wants, reconcile-cost...): its own figures."""
    return [f"{key}: {json.dumps(value, default=str)}" for key, value in result.items()
            if key not in FRAME_KEYS and not (isinstance(value, dict) and "ops_per_s" in value)]


def to_table(result: dict[str, Any]) -> str:
    machine, server = result.get("machine", {}), result.get("server", {})
    where = "embedded" if server.get("embedded") else server.get("url")
    lines = [
        _sizes(result),
        (f"server: {server.get('name')} {server.get('version')}, " + (
            f"cluster of {server.get('primaries')} primaries" if server.get("mode") == "cluster"
            else "standalone") + f" ({where})"),
        (f"machine: {machine.get('cpu_model')}, {machine.get('cpu_count')} cpus, "
         f"{machine.get('memory_gb')} GB, load {machine.get('load_avg_1m')}, "
         f"Python {machine.get('python')}; git {result.get('git')}"),
        "",
    ]
    found = systems(result)
    rows = [[name, *(_cell(data.get(key)) for _, key in COLUMNS)] for name, data in found.items()]
    if rows:
        lines.append(table(rows, ["", *(title for title, _ in COLUMNS)]))
    else:
        lines += _figures(result)
    if "ratio" in result:
        lines.append(f"\nratio flowslot/baseline: {result['ratio']:.3f}")
    if "ratios" in result:
        lines.append("\nratio flowslot/baseline (median, min-max over the repeats): " + "; ".join(
            f"{w} worker(s) {r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})"
            for w, r in result["ratios"].items()))
    for name, data in found.items():
        top = list(data.get("by_command", {}).items())[:TOP_COMMANDS]
        if top:
            lines.append(f"{name} commands per job: " + ", ".join(f"{c} {n:g}" for c, n in top))
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)
