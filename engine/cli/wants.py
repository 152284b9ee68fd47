"""``flowslot wants list|show|cancel`` and ``flowslot slices show``: wants and data slices."""

from __future__ import annotations

import click

from engine import (
    wantinspect,
    wantoutbox,  # noqa: F401 - registers the want message kinds this process applies
    wants,
)
from engine.cli.options import connection_options, emit_json, iso_utc, json_option, open_client, table
from engine.dispatcher import dispatch
from engine.errors import EngineError
from engine.states import WantState


@click.group("wants")
def wants_group() -> None:
    """List, explain and cancel wants (app.want)."""


@wants_group.command("list")
@click.option("--state", type=click.Choice([s.value for s in WantState]), default=None,
              help="Only wants in this state.")
@click.option("--breached", is_flag=True, help="Only wants that missed their SLA.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@connection_options
def list_wants(state: str | None, breached: bool, limit: int, as_json: bool, url: str | None, namespace: str,
               partitions: int) -> None:
    """The newest wants, newest first (every partition)."""
    client = open_client(url, namespace, partitions)
    rows = wantinspect.list_wants(client, limit=limit, breached=breached, state=state)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no wants")
        return
    click.echo(table([[w["id"], w["state"], w["first_slice"] + (f" (+{int(w['total']) - 1})"
                                                                 if int(w["total"] or 1) > 1 else ""),
                       w["source"], iso_utc(w["created_ms"]), "yes" if w["breached_ms"] else ""]
                      for w in rows], ["want", "state", "slices", "source", "created", "sla missed"]))


@wants_group.command("show")
@click.argument("want_id")
@json_option
@connection_options
def show(want_id: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """A want: its slices, their states, the upstream wants their builds spawned, and why it is
    not done yet, in words."""
    client = open_client(url, namespace, partitions)
    try:
        if as_json:
            emit_json({**wants.want_record(client, want_id), "explain": wantinspect.explain(client, want_id)})
            return
        for line in wantinspect.explain(client, want_id):
            click.echo(line)
    except EngineError as e:
        raise click.ClickException(str(e)) from e


@wants_group.command("cancel")
@click.argument("want_id")
@click.option("--reason", default="canceled by operator", show_default=True)
@json_option
@connection_options
def cancel(want_id: str, reason: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Cancel a want that has not ended (its slices' builds go on for any other want)."""
    client = open_client(url, namespace, partitions)
    try:
        reply = client.run(wants.cancel_call(client.keys, want_id, reason))
        wants.follow(client, [(wants.want_partition(client.keys, want_id), reply)],
                     lambda ids: dispatch(client, ids))
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"id": want_id, "previous_state": reply.outcome, "state": "canceled"})
    else:
        click.echo(f"{want_id}: {reply.outcome} -> canceled")


@click.group("slices")
def slices_group() -> None:
    """Inspect data slices (what producers build)."""


@slices_group.command("show")
@click.argument("slice_name")
@json_option
@connection_options
def show_slice(slice_name: str, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """A slice's record: state, build, live since, why it failed, the wants waiting for it."""
    client = open_client(url, namespace, partitions)
    try:
        view = wantinspect.slice_view(client, slice_name)
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json(view)
        return
    click.echo(f"slice {slice_name}: {view['state']} (partition {view['partition']})")
    if view.get("build"):
        click.echo(f"  build {view['build']} ({view['task']}): {view['build_state'] or 'gone'}")
    if view["state"] == "live":
        click.echo(f"  live since {iso_utc(view.get('live_ms'))}")
    if view["state"] == "failed":
        click.echo(f"  failed: {view.get('root')} failed: {view.get('error')}")
    for dep, entry in sorted(view["missing"].items()):
        upstream, _, state = entry.partition("|")
        click.echo(f"  needs {dep}: {state} (upstream want {upstream})")
    if view["waiting_wants"]:
        click.echo(f"  {len(view['waiting_wants'])} want(s) waiting: {', '.join(view['waiting_wants'][:10])}")
