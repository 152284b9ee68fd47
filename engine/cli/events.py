"""``flowslot event`` (deliver an event from the shell) and ``flowslot waits`` (what waits)."""

from __future__ import annotations

from typing import Any

import click

from engine import events
from engine.cli.options import connection_options, emit_json, json_option, json_option_value, open_client, table
from engine.client import Client
from engine.errors import EngineError
from engine.flowrun import duration_text
from engine.replies import server_ms
from engine.router import Command


def _correlation(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--correlate")
        out[name] = value
    return out


@click.command()
@click.argument("name")
@click.option("--correlate", "pairs", multiple=True, required=True, metavar="NAME=VALUE",
              help="One correlation value (repeatable).")
@click.option("--payload", default="null", show_default=True, help="The event's payload, as JSON.")
@click.option("--event-id", default=None, help="Apply this event once, however often it is sent.")
@click.option("--buffer-ttl-s", default=events.DEFAULT_BUFFER_TTL_S, show_default=True, type=float,
              help="How long an event nobody waits for yet is kept for the first wait.")
@json_option
@connection_options
def event(name: str, pairs: tuple[str, ...], payload: str, event_id: str | None, buffer_ttl_s: float,
          as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Deliver event NAME: resume every step waiting for it with this correlation, or buffer it."""
    body = json_option_value(payload, "--payload")
    client = open_client(url, namespace, partitions)
    try:
        delivery = events.deliver(client, name, _correlation(pairs), body, event_id=event_id,
                                  buffer_ttl_s=buffer_ttl_s)
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        emit_json({"outcome": delivery.outcome, "resumed": delivery.resumed})
        return
    click.echo(f"{delivery.outcome}" + (f": {', '.join(delivery.resumed)}" if delivery.resumed else ""))


def _pairs(reply: list[Any]) -> list[tuple[str, Any]]:
    """ZRANGE ... WITHSCORES as (member, score): flat under RESP2, pairs under RESP3."""
    if reply and isinstance(reply[0], list):
        return [(member, score) for member, score in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


def waiting_steps(client: Client, event: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Waiting steps of every partition, oldest first (one pipelined round per read)."""
    ks = client.keys
    heads = client.run_many([Command(("ZRANGE", ks.waiting(p), 0, limit - 1, "WITHSCORES"), ks.waiting(p))
                             for p in range(ks.partitions)])
    found = [(p, eid, int(float(score))) for p, reply in enumerate(heads) for eid, score in _pairs(reply)]
    fields = ("flow", "step", "wait_event", "wait_correlate", "deadline_ms", "suspend_on", "task")
    details = client.run_many([Command(("HMGET", ks.execution(p, eid), *fields), ks.execution(p, eid))
                               for p, eid, _ in found])
    rows = []
    for (_, eid, since), values in zip(found, details, strict=True):
        row = dict(zip(fields, values, strict=True))
        row["wait_correlate"] = row["wait_correlate"] or ""  # not stored when empty (a signal-only wait)
        if row["suspend_on"]:  # a handler suspended in wait_for(name): it waits for that signal
            row["wait_event"], row["wait_correlate"] = f"signal {row['suspend_on']}", ""
            row["step"] = row["step"] or row["task"]
        if event is None or row["wait_event"] == event:
            rows.append({"id": eid, "waiting_since_ms": since, **row})
    rows.sort(key=lambda r: r["waiting_since_ms"])
    return rows[:limit]


@click.command()
@click.option("--event", "event_name", default=None, help="Only the steps waiting for this event.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@connection_options
def waits(event_name: str | None, limit: int, as_json: bool, url: str | None, namespace: str,
          partitions: int) -> None:
    """Steps waiting for an event, oldest first."""
    client = open_client(url, namespace, partitions)
    rows = waiting_steps(client, event_name, limit)
    if as_json:
        emit_json(rows)
        return
    now = server_ms(client.run(Command(("TIME",), client.keys.waiting(0))))  # the clock the times come from
    click.echo(table([[r["flow"] or "-", r["step"], r["wait_event"], r["wait_correlate"],
                       duration_text(now - r["waiting_since_ms"]),
                       duration_text(int(r["deadline_ms"]) - now) if r["deadline_ms"] not in (None, "0") else "-"]
                      for r in rows], ["flow", "step", "event", "correlation", "waiting", "times out in"]))
