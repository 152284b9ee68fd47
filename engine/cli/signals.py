"""``flowslot signal TOKEN`` (complete a wait from the shell) and ``flowslot secrets rotate``."""

from __future__ import annotations

import click

from engine import signals, signing
from engine.cli.options import connection_options, emit_json, iso_utc, json_option, json_option_value, open_client
from engine.errors import EngineError


@click.command()
@click.argument("token")
@click.option("--payload", default="null", show_default=True, help="The payload (a wait step's result), as JSON.")
@json_option
@connection_options
def signal(token: str, payload: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Complete the wait TOKEN names with --payload: a wait step's (run.token(step)), or a
    handler's wait_for (current_task().token(name))."""
    body = json_option_value(payload, "--payload")
    client = open_client(url, namespace, partitions)
    try:
        done = signals.signal(client, token, body)
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"outcome": done.outcome, "execution_id": done.execution_id})
        return
    click.echo(f"{done.outcome}: {done.execution_id}")


@click.group()
def secrets() -> None:
    """The namespace's signing keys for signal tokens."""


@secrets.command("rotate")
@click.option("--grace-s", default=signing.DEFAULT_GRACE_S, show_default=True, type=float,
              help="How long tokens signed with the previous key stay valid (0: refused at once).")
@json_option
@connection_options
def rotate(grace_s: float, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Sign new tokens with a new key; the previous key verifies for --grace-s more seconds."""
    client = open_client(url, namespace, partitions)
    try:
        done = signing.rotate(client, grace_s)
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"current": done.current, "previous": done.previous,
                   "previous_until_ms": done.previous_until_ms, "dropped": done.dropped})
        return
    click.echo(f"key {done.current} signs new tokens")
    if done.previous:
        click.echo(f"key {done.previous} verifies until {iso_utc(done.previous_until_ms)}")
    if done.dropped:
        click.echo(f"dropped {done.dropped} key(s) past their grace")
