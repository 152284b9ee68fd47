"""``flowslot exec show|cancel``: one execution."""

from __future__ import annotations

import click

from engine.cli.options import connection_options, emit_json, iso_utc, json_option, open_client
from engine.errors import EngineError
from engine.handle import Handle, read_execution
from keys import MalformedId

TIMESTAMPS = frozenset({"created_ms", "ready_ms", "started_ms", "finished_ms", "due_ms", "deadline_ms",
                        "lease_expiry_ms"})


@click.group("exec")
def exec_group() -> None:
    """Inspect or act on one execution."""


@exec_group.command("show")
@click.argument("execution_id")
@json_option
@connection_options
def show(execution_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Every field of one execution."""
    client = open_client(url, namespace, partitions)
    try:
        info = read_execution(client, execution_id)
    except (EngineError, MalformedId) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json(info)
        return
    shown = readable(info)
    width = max(len(k) for k in shown)
    for key in sorted(shown):
        click.echo(f"{key.ljust(width)}  {shown[key]}")


def readable(info: dict[str, str]) -> dict[str, str]:
    """Timestamps (``created_ms``...) as ISO-8601 UTC under their name without ``_ms``;
    durations (``backoff_ms``...) and everything else as stored."""
    return {(key[:-3] if key in TIMESTAMPS else key): (iso_utc(value) if key in TIMESTAMPS else value)
            for key, value in info.items()}


@exec_group.command("cancel")
@click.argument("execution_id")
@click.option("--reason", default="canceled by operator", show_default=True)
@json_option
@connection_options
def cancel(execution_id: str, reason: str, as_json: bool, url: str | None, namespace: str,
           partitions: int) -> None:
    """Cancel one execution (a leased one is told at its next lease renewal)."""
    client = open_client(url, namespace, partitions)
    try:
        previous = Handle(client, execution_id).cancel(reason)
    except (EngineError, MalformedId) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"id": execution_id, "previous_state": previous, "state": "canceled"})
    else:
        click.echo(f"{execution_id}: {previous} -> canceled")


@exec_group.command("retry")
@click.argument("execution_id")
@json_option
@connection_options
def retry(execution_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Run a failed, canceled or expired standalone execution again (fresh attempts, no deadline)."""
    client = open_client(url, namespace, partitions)
    try:
        previous = Handle(client, execution_id).retry()
    except (EngineError, MalformedId) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"id": execution_id, "previous_state": previous, "state": "ready"})
    else:
        click.echo(f"{execution_id}: {previous} -> ready")
