"""``flowslot functions load|status``: the Lua library on every primary."""

from __future__ import annotations

import click

from engine.cli.options import connection_options, emit_json, json_option, open_client, table
from engine.library import library


@click.group()
def functions() -> None:
    """Inspect or (re)load the Lua function library."""


@functions.command("status")
@json_option
@connection_options
def status(as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Library version per primary; mismatches are marked."""
    client = open_client(url, namespace, partitions)
    want = library().version
    found = client.library_status()
    if as_json:
        emit_json({"expected": want, "nodes": found})
    else:
        rows = [[node, v or "missing", "ok" if v == want else "MISMATCH"] for node, v in found.items()]
        click.echo(table(rows, ["node", "version", "status"]))
    if any(v != want for v in found.values()):
        raise SystemExit(1)


@functions.command("load")
@json_option
@connection_options
def load(as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Load (REPLACE) the library on every primary."""
    client = open_client(url, namespace, partitions)
    result = client.ensure_library(force=True)
    if as_json:
        emit_json({"version": library().version, "nodes": result})
    else:
        click.echo(table([[n, s] for n, s in result.items()], ["node", "result"]))
