"""``flowslot flow ...``: list, show, tree, timeline, cancel, pause, resume, retry."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from engine.cli.options import connection_options, emit_json, json_option, open_client, table
from engine.errors import EngineError
from engine.states import FlowState

STATE_COLOURS = {"succeeded": "green", "failed": "red", "skipped": "yellow", "canceled": "magenta",
                 "expired": "red", "leased": "cyan", "running": "cyan", "ready": "blue",
                 "paused": "yellow", "pausing": "yellow"}


def paint(state: str) -> str:
    """Colour a state name, only on a terminal."""
    if sys.stdout.isatty() and state in STATE_COLOURS:
        return click.style(state, fg=STATE_COLOURS[state])
    return state


def _run(url: str | None, namespace: str, partitions: int, flow_id: str) -> Any:
    from engine.app import App

    client = open_client(url, namespace, partitions)
    app = App(client=client, namespace=namespace, partitions=partitions)
    try:
        return app.run(flow_id)
    except (EngineError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def _guard(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except (EngineError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


@click.group("flow")
def flow_group() -> None:
    """Inspect and control flows."""


@flow_group.command("list")
@click.option("--state", type=click.Choice([s.value for s in FlowState]), default=None,
              help="Only flows in this state.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Only flows with this label.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@connection_options
def list_cmd(state: str | None, labels: tuple[str, ...], limit: int, as_json: bool, url: str | None,
             namespace: str, partitions: int) -> None:
    """The newest flows, newest first."""
    from engine.inspect import list_flows

    wanted = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--label takes KEY=VALUE, got {item!r}")
        wanted[key] = value
    flows = list_flows(open_client(url, namespace, partitions), state=state, labels=wanted, limit=limit)
    if as_json:
        emit_json(flows)
        return
    rows = [[f["id"], f["name"], paint(f["state"]), f"{f['terminal']}/{f['steps']}",
             ",".join(f"{k}={v}" for k, v in f["labels"].items())] for f in flows]
    click.echo(table(rows, ["flow", "name", "state", "done", "labels"]))


@flow_group.command("show")
@click.argument("flow_id")
@json_option
@connection_options
def show(flow_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """The flow and every step: state, attempts, timings, error, blockers."""
    run = _run(url, namespace, partitions, flow_id)
    described = _guard(lambda: run.describe(timeline_limit=1))
    if as_json:
        emit_json({"flow": described["flow"], "steps": described["steps"]})
        return
    f = described["flow"]
    click.echo(f"flow {f['id']} ({f['name']}): {paint(f['state'])}, {f['terminal']}/{f['total']} steps done")
    rows = []
    for s in described["steps"]:
        note = "; ".join(s["blockers"]) or (f"{s['error']['kind']}: {s['error']['message'].splitlines()[0]}"
                                             if s["error"] else "")
        rows.append([s["step"], paint(s["state"]), s["attempts"], _ms(s["queued_ms"]), _ms(s["running_ms"]),
                     note[:80]])
    click.echo(table(rows, ["step", "state", "attempts", "queued", "running", "blockers / error"]))


def tree_lines(steps: list[dict[str, Any]]) -> list[str]:
    """The DAG drawn as a tree: each step under its first upstream (in the order the steps were
    created, not the order the server lists the edges in), other upstreams noted."""
    by_id = {s["step"]: s for s in steps}
    rank = {s["step"]: n for n, s in enumerate(steps)}
    children: dict[str, list[str]] = {s["step"]: [] for s in steps}
    roots, extra = [], {}
    for s in steps:
        ups = sorted((u for u in s["edges"] if u in by_id), key=rank.__getitem__)
        if ups:
            children[ups[0]].append(s["step"])
            extra[s["step"]] = ups[1:]
        else:
            roots.append(s["step"])
    lines: list[str] = []

    def draw(step: str, prefix: str, last: bool, top: bool) -> None:
        s = by_id[step]
        label = f"{step}  {paint(s['state'])}"
        if s.get("optional"):
            label += "  (optional)"
        if extra.get(step):
            label += f"  (also after {', '.join(extra[step])})"
        lines.append(label if top else f"{prefix}{'└─ ' if last else '├─ '}{label}")
        below = prefix if top else prefix + ("   " if last else "│  ")
        kids = children[step]
        for n, child in enumerate(kids):
            draw(child, below, n == len(kids) - 1, False)

    for root in roots:
        draw(root, "", True, True)
    return lines


@flow_group.command("tree")
@click.argument("flow_id")
@json_option
@connection_options
def tree(flow_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """The DAG drawn in the terminal with each step's state."""
    run = _run(url, namespace, partitions, flow_id)
    described = _guard(lambda: run.describe(timeline_limit=1))
    if as_json:
        emit_json({s["step"]: {"state": s["state"], "upstream": s["edges"]} for s in described["steps"]})
        return
    click.echo(f"{described['flow']['name']} [{paint(described['flow']['state'])}]")
    for line in tree_lines(described["steps"]):
        click.echo(line)


@flow_group.command("timeline")
@click.argument("flow_id")
@json_option
@connection_options
def timeline(flow_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """The flow's events in order, from its partition's event stream."""
    run = _run(url, namespace, partitions, flow_id)
    events = _guard(run.timeline)
    if as_json:
        emit_json(events)
        return
    steps = _guard(lambda: {s["id"]: s["step"] for s in run.describe(timeline_limit=1)["steps"]})
    start = events[0]["at_ms"] if events else 0
    rows = [[f"+{e['at_ms'] - start} ms", steps.get(e.get("id", ""), "(flow)"),
             f"{e['from'] or '-'} -> {paint(e['to'])}", e.get("detail", "")[:60]] for e in events]
    click.echo(table(rows, ["at", "step", "transition", "detail"]))


def _control(verb: str) -> Callable[..., None]:
    @json_option
    @connection_options
    @click.argument("flow_id")
    def command(flow_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
        run = _run(url, namespace, partitions, flow_id)
        started = time.monotonic()
        result = _guard(getattr(run, verb))
        state = run.state().value
        if as_json:
            emit_json({"id": flow_id, "result": result, "state": state,
                       "elapsed_s": round(time.monotonic() - started, 3)})
        else:
            click.echo(f"{flow_id}: {verb} -> {paint(state)}")

    command.__doc__ = {"cancel": "Cancel the flow and every unfinished step (idempotent).",
                       "pause": "Hold ready steps; running steps finish (idempotent).",
                       "resume": "Release held steps (idempotent).",
                       "retry": "Re-run the failed, skipped, expired and canceled steps of a finished flow "
                                "(fresh attempts, no deadline)."}[verb]
    return command


for _verb in ("cancel", "pause", "resume", "retry"):
    flow_group.command(_verb)(_control(_verb))
