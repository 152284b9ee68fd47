"""``flowslot functions load|status``: the Lua library on every primary."""

from __future__ import annotations

import click
from redis import exceptions as rexc

from engine.cli.options import connection_options, emit_json, json_option, open_client, table
from engine.client import resolve_url
from engine.errors import EngineError
from engine.library import VERSION_FUNCTION, library
from engine.router import Router, run_command


@click.group()
def functions() -> None:
    """Inspect or (re)load the Lua function library."""


@functions.command("status")
@json_option
@connection_options
def status(as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Library version per primary; mismatches are marked. Only reads: nothing is loaded."""
    want = library().version
    found = read_versions(url)
    if as_json:
        emit_json({"expected": want, "nodes": found})
    else:
        rows = [[node, v or "missing", "ok" if v == want else "MISMATCH"] for node, v in found.items()]
        click.echo(table(rows, ["node", "version", "status"]))
    if any(v != want for v in found.values()):
        raise SystemExit(1)


def read_versions(url: str | None) -> dict[str, str | None]:
    """Node -> loaded library version (None when missing), through a bare router.

    Not through a Client: connecting one records the partition count and loads
    the library wherever it is missing, which would hide exactly what a status
    command is asked to show.
    """
    try:
        router = Router(resolve_url(url))
    except (EngineError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    try:
        found: dict[str, str | None] = {}
        for node in router.primaries():
            try:
                found[node] = run_command(router.client(node), "FCALL_RO", VERSION_FUNCTION, 0)
            except rexc.ResponseError:  # no such function: the library is not loaded there
                found[node] = None
            except rexc.RedisError as e:
                raise click.ClickException(f"node {node} did not answer: {e}") from e
        return found
    finally:
        router.close()


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
