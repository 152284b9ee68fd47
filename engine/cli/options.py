"""Options shared by every command, with ``FLOWSLOT_*`` environment defaults."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from engine.client import Client
from engine.errors import EngineError
from keys import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--url``, ``--namespace``, ``--partitions`` (env: FLOWSLOT_URL, _NAMESPACE, _PARTITIONS)."""
    fn = click.option("--partitions", envvar="FLOWSLOT_PARTITIONS", default=DEFAULT_PARTITIONS,
                      show_default=True, type=int, help="Partition count of the deployment.")(fn)
    fn = click.option("--namespace", envvar="FLOWSLOT_NAMESPACE", default=DEFAULT_NAMESPACE,
                      show_default=True, help="Key prefix of the deployment.")(fn)
    fn = click.option("--url", envvar="FLOWSLOT_URL", default=None,
                      help="redis:// or rediss:// URL of any node (default: the embedded cluster "
                           "started by `flowslot cluster up`).")(fn)
    return fn


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user chose this option (command line or environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def open_client(url: str | None, namespace: str, partitions: int) -> Client:
    try:
        return Client(url, namespace=namespace, partitions=partitions)
    except (EngineError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """Aligned plain-text table."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
