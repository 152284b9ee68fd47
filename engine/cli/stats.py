"""``flowslot lanes`` and ``flowslot partitions``: queue depth and partition layout."""

from __future__ import annotations

from collections import Counter

import click

from engine.cli.options import connection_options, emit_json, json_option, open_client, table

SHOWN_STATES = ("ready", "delayed", "leased", "blocked", "waiting")


@click.command()
@json_option
@connection_options
def lanes(as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Ready / delayed / leased executions per lane (from the counters the transitions keep)."""
    from engine.inspect import lane_counts

    counts = lane_counts(open_client(url, namespace, partitions))
    if as_json:
        emit_json(counts)
        return
    rows = [[lane, *(states.get(s, 0) for s in SHOWN_STATES)] for lane, states in counts.items()]
    click.echo(table(rows, ["lane", *SHOWN_STATES]))


@click.command()
@click.option("--all", "show_all", is_flag=True, help="One row per partition instead of per node.")
@json_option
@connection_options
def partitions(show_all: bool, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Partitions per node, their owning daemon, and their backlog (ready + delayed)."""
    from engine.inspect import partitions_view

    view = partitions_view(open_client(url, namespace, partitions))
    if as_json:
        emit_json([vars(v) for v in view])
        return
    if show_all:
        rows = [[v.partition, v.node, v.owner or "-", v.backlog] for v in view]
        click.echo(table(rows, ["partition", "node", "owner", "backlog"]))
        return
    per_node = Counter(v.node for v in view)
    backlog: Counter[str] = Counter()
    owners: dict[str, set[str]] = {}
    for v in view:
        backlog[v.node] += v.backlog
        owners.setdefault(v.node, set()).add(v.owner or "-")
    rows = [[node, n, backlog[node], ", ".join(sorted(owners[node]))] for node, n in sorted(per_node.items())]
    click.echo(table(rows, ["node", "partitions", "backlog", "owners"]))
