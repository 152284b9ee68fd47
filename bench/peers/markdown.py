"""REPORT.md from a compare report: one row per measure, one column per system, ratios to
flowslot, the cascade states node by node, the issue's targets, and how it was run."""

from __future__ import annotations

from typing import Any

from bench.peers import PEERS
from bench.peers.base import (
    CASCADE,
    CASCADE_ROOT,
    CHAIN,
    FANOUT,
    LEAF_FAILS,
    LEAF_TREE,
    ROOT_FAILS,
    ROOT_TREE,
    S1,
    Cell,
    expected_states,
)

REF = "flowslot"  # every ratio is relative to flowslot on the same standalone server
# (label, scenario, key, "higher"/"lower" is better); key None = the counters row.
ROWS: tuple[tuple[str, str, str | None, str], ...] = (
    ("submit-claim-complete: jobs/s", S1, "jobs_per_s", "higher"),
    ("↳ commands · round trips per job", S1, None, ""),
    ("↳ CPU µs per job: server · workers · submitter", S1, "cpu", ""),
    ("chain, 10 steps: p50 ms at concurrency 1", CHAIN, "p50_ms_c1", "lower"),
    ("chain: p99 ms at concurrency 1", CHAIN, "p99_ms_c1", "lower"),
    ("chain: flows/s at concurrency 16", CHAIN, "flows_per_s", "higher"),
    ("↳ commands · round trips per flow (c=1)", CHAIN, None, ""),
    ("fanout 1→100→1: median wall ms", FANOUT, "median_ms", "lower"),
    ("↳ commands · round trips per flow", FANOUT, None, ""),
    ("cascade (one leaf fails): ms until all terminal", CASCADE, "terminal_ms", "lower"),
    ("cascade-root (root fails): ms until all terminal", CASCADE_ROOT, "terminal_ms", "lower"),
)


def _columns(report: dict[str, Any]) -> list[str]:
    systems = report["systems"]
    first = [s for s in ("flowslot", "flowslot (cluster)", "baseline") if s in systems]
    return first + [p for p in PEERS if p in systems]


def _title(report: dict[str, Any], system: str) -> str:
    versions = report.get("peers", {}).get(system, {}).get("versions", {})
    version = next(iter(versions.values()), None) if versions else None
    if system == "baseline":
        return "raw Redis baseline"
    return f"{system} {version}" if version else system


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 10 \
        else f"{value:.2f}"


def _status(cell: Cell) -> str:
    why = str(cell.get("why", "")).strip().splitlines()
    short = why[0][:90] if why else ""
    return f"{cell['status']}" + (f": {short}" if cell["status"] not in ("no primitive",
                                                                        "not measured") else "")


def _terminal(cell: Cell) -> str:
    if cell.get("pending"):
        text = f"pending after {cell.get('waited_s', '?')} s: {', '.join(cell['pending'])}"
    else:
        text = f"{_num(cell['terminal_ms'])} ms"
    for name, variant in cell.get("variants", {}).items():
        text += f"; {name}: " + (f"{_num(variant['terminal_ms'])} ms" if not variant["pending"]
                                 else f"pending {', '.join(variant['pending'])}")
    return text


def _flags(cell: Cell, scenario: str, key: str, ref: Cell | None) -> str:
    """Caveats a reader must see next to the figure: timeouts, wrong or unfinished flows,
    a smaller sample than flowslot's."""
    flags, c1 = [], key.endswith("_c1")
    if cell.get("timed_out"):
        flags.append("timed out")
    bad = cell.get("unfinished_or_wrong_c1" if c1 else "unfinished_or_wrong")
    if bad:
        flags.append(f"{bad} of {cell.get('flows_c1' if c1 else 'flows')} unfinished or wrong")
    elif cell.get("all_correct") is False and scenario != CHAIN:
        flags.append("wrong results")
    if ref and scenario == S1 and cell.get("tasks") != ref.get("tasks"):
        flags.append(f"{cell.get('tasks'):,} jobs")
    size = "flows_c1" if c1 else "flows"
    if ref and scenario == CHAIN and cell.get(size) != ref.get(size):
        flags.append(f"{cell.get(size)} flows")
    if ref and scenario == FANOUT and cell.get("runs") != ref.get("runs"):
        flags.append(f"median of {cell.get('runs')}")
    return f" ⚠ {'; '.join(flags)}" if flags else ""


def cell_text(cell: Cell | None, scenario: str, key: str | None, ref: Cell | None) -> str:
    if cell is None:
        return "-"
    if "status" in cell:
        return _status(cell)
    if key is None:
        cmds, rts = cell.get("commands_per_job"), cell.get("round_trips_per_job")
        return f"{_num(cmds) if cmds is not None else '?'} · {_num(rts) if rts is not None else '?'}"
    if key == "terminal_ms":
        return _terminal(cell)
    if key == "cpu":
        return " · ".join("?" if cell.get(k) is None else _num(cell[k]) for k in (
            "server_cpu_us_per_job", "worker_cpu_us_per_job", "submitter_cpu_us_per_job"))
    value = cell.get(key)
    if value is None:
        return "-"
    text = _num(value)
    if ref and "status" not in ref and ref.get(key):
        text += f" ({value / ref[key]:.2f}×)"
    return text + _flags(cell, scenario, key, ref)


def _results_table(report: dict[str, Any]) -> list[str]:
    columns, systems = _columns(report), report["systems"]
    lines = ["| measure | " + " | ".join(_title(report, c) for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for label, scenario, key, better in ROWS:
        if scenario not in report["scenarios"]:
            continue
        ref = systems.get(REF, {}).get(scenario)
        cells = [cell_text(systems[c].get(scenario), scenario, key, ref) for c in columns]
        suffix = f" ({better} is better)" if better else ""
        lines.append(f"| {label}{suffix} | " + " | ".join(cells) + " |")
    return lines


def _states_table(report: dict[str, Any], scenario: str, tree: dict[str, tuple[str, ...]],
                  failing: str) -> list[str]:
    expected = expected_states(tree, failing)
    columns: list[tuple[str, Cell]] = []
    for system, cells in report["systems"].items():
        cell = cells.get(scenario)
        if cell and "states" in cell:
            columns.append((system, cell))
            for name, variant in cell.get("variants", {}).items():
                columns.append((f"{system} ({name})", variant))
    if not columns:
        return []
    lines = ["| node | needs | expected | " + " | ".join(c for c, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for node, needs in tree.items():
        row = []
        for _, cell in columns:
            state, raw = cell["states"].get(node, "?"), cell.get("raw_states", {}).get(node)
            row.append(state if state != "pending" else f"**pending** ({raw})")
        lines.append(f"| {node} | {', '.join(needs) or '-'} | {expected[node]} | "
                     + " | ".join(row) + " |")
    return lines


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that this comparison can check, each met / missed / unknown."""
    systems = report["systems"]

    def get(system: str, scenario: str, key: str) -> float | None:
        cell = systems.get(system, {}).get(scenario, {})
        value = cell.get(key) if "status" not in cell else None
        return float(value) if isinstance(value, (int, float)) else None

    out: list[dict[str, Any]] = []

    def add(text: str, mine: float | None, other: float | None, met: bool | None) -> None:
        out.append({"target": text, "flowslot": mine, "other": other, "met": met})

    s1 = get(REF, S1, "jobs_per_s")
    peers = {p: get(p, S1, "jobs_per_s") for p in PEERS}
    fastest = max(((v, p) for p, v in peers.items() if v), default=(None, None))
    add(f"submit-claim-complete ≥ 2× the fastest peer ({fastest[1]})", s1, fastest[0],
        None if not (s1 and fastest[0]) else s1 >= 2 * fastest[0])
    base = get("baseline", S1, "jobs_per_s")
    add("submit-claim-complete ≥ 0.5× the raw baseline", s1, base,
        None if not (s1 and base) else s1 >= 0.5 * base)
    flows, celery = get(REF, CHAIN, "flows_per_s"), get("celery", CHAIN, "flows_per_s")
    add("chain ≥ 100 flows/s", flows, 100.0, None if flows is None else flows >= 100)
    add("chain ≥ 3× Celery's throughput", flows, celery,
        None if not (flows and celery) else flows >= 3 * celery)
    p50, bull = get(REF, CHAIN, "p50_ms_c1"), get("bullmq", CHAIN, "p50_ms_c1")
    add("chain p50 ≤ 20 ms at concurrency 1", p50, 20.0, None if p50 is None else p50 <= 20)
    add("chain p50 at concurrency 1 below BullMQ-py's", p50, bull,
        None if not (p50 and bull) else p50 < bull)
    fan = get(REF, FANOUT, "median_ms")
    for peer in ("bullmq", "celery"):
        other = get(peer, FANOUT, "median_ms")
        add(f"fanout faster than {peer}'s", fan, other, None if not (fan and other) else fan < other)
    ratio = get(REF, FANOUT, "ratio_to_independent")
    add("fanout ≤ 1.2× the wall time of as many independent tasks (issue 12; issue 5 asked 1.5×)", ratio, 1.2,
        None if ratio is None else ratio <= 1.2)
    for scenario, tree, failing in ((CASCADE, LEAF_TREE, LEAF_FAILS),
                                    (CASCADE_ROOT, ROOT_TREE, ROOT_FAILS)):
        cell = systems.get(REF, {}).get(scenario)
        if cell is not None:
            met = cell.get("states") == expected_states(tree, failing) if "states" in cell else None
            add(f"{scenario}: every node's final state as expected", cell.get("terminal_ms"),
                None, met)
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else _num(value) if isinstance(value, (int, float)) else str(value)


def render(report: dict[str, Any]) -> str:
    from bench.peers.report_text import cpu_section, header, notes

    lines = header(report)
    lines += ["", "## Results", "",
              ("Each cell: the figure, then (in brackets) its ratio to flowslot on the same "
              "standalone server. Throughput: a ratio below 1 is slower than flowslot; "
              "times: a ratio above 1 is slower."), ""]
    lines += _results_table(report)
    for scenario, tree, failing, title in (
            (CASCADE, LEAF_TREE, LEAF_FAILS, "cascade: a 3-level tree, leaf l0 fails"),
            (CASCADE_ROOT, ROOT_TREE, ROOT_FAILS, "cascade-root: root fails, 2 → 4 below it")):
        table = _states_table(report, scenario, tree, failing) if scenario in report[
            "scenarios"] else []
        if table:
            lines += ["", f"## Final states — {title}", ""] + table
    lines += ["", "## Targets of issues 5 and 12 (flowslot on the standalone server)", "",
              "| target | flowslot | compared with | verdict |", "|---|---|---|---|"]
    for t in report.get("targets", []):
        verdict = {True: "met", False: "**MISSED**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {_fmt(t['flowslot'])} | {_fmt(t['other'])} | {verdict} |")
    lines += cpu_section(report)
    lines += notes(report)
    return "\n".join(lines) + "\n"
