"""Options shared by every command, with ``FLOWSLOT_*`` environment defaults.

``--url``, ``--namespace``, ``--partitions`` and ``--json`` are accepted on the
group too (``flowslot --namespace a lanes``). Precedence: the command's own
flag, then the group's, then the environment, then the default.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable
from typing import Any

import click

from engine.client import Client
from engine.errors import EngineError
from keys import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS

CONNECTION = ("url", "namespace", "partitions")
COMMAND_LINE = click.core.ParameterSource.COMMANDLINE


def global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The shared options on the group itself; no environment here (the commands read it)."""
    fn = click.option("--json", "as_json", is_flag=True, default=False,
                      help="Print one JSON object (commands that print data).")(fn)
    fn = click.option("--partitions", type=int, default=None,
                      help="Partition count of the deployment (as on every command).")(fn)
    fn = click.option("--namespace", default=None, help="Key prefix of the deployment (as on every command).")(fn)
    fn = click.option("--url", default=None, help="URL of any node (as on every command).")(fn)
    return fn


def group_value(ctx: click.Context, name: str) -> Any:
    """What the top-level group was given for this option, or None."""
    root = ctx.find_root()
    return None if root is ctx else root.params.get(name)


def _with_group_values(fn: Callable[..., Any], names: tuple[str, ...]) -> Callable[..., Any]:
    """Fill each of ``names`` the command did not get on its own command line from the group."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        for name in names:
            if ctx.get_parameter_source(name) != COMMAND_LINE and group_value(ctx, name) is not None:
                kwargs[name] = group_value(ctx, name)
        return fn(*args, **kwargs)

    return command


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--url``, ``--namespace``, ``--partitions`` (env: FLOWSLOT_URL, _NAMESPACE, _PARTITIONS)."""
    fn = _with_group_values(fn, CONNECTION)
    fn = click.option("--partitions", envvar="FLOWSLOT_PARTITIONS", default=DEFAULT_PARTITIONS,
                      show_default=True, type=int, help="Partition count of the deployment.")(fn)
    fn = click.option("--namespace", envvar="FLOWSLOT_NAMESPACE", default=DEFAULT_NAMESPACE,
                      show_default=True, help="Key prefix of the deployment.")(fn)
    fn = click.option("--url", envvar="FLOWSLOT_URL", default=None,
                      help="redis:// or rediss:// URL of any node (default: the embedded cluster "
                           "started by `flowslot cluster up`).")(fn)
    return fn


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user chose this option (command line, group or environment), not its default."""
    source = ctx.get_parameter_source(name)
    return (source in (COMMAND_LINE, click.core.ParameterSource.ENVIRONMENT)
            or group_value(ctx, name) is not None)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = _with_group_values(fn, ("as_json",))
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


def json_option_value(text: str, option: str) -> Any:
    """A JSON option's value, or a usage error naming the option."""
    try:
        return json.loads(text)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint=option) from e


def open_client(url: str | None, namespace: str, partitions: int) -> Client:
    try:
        return Client(url, namespace=namespace, partitions=partitions)
    except (EngineError, ValueError) as e:
        raise click.ClickException(str(e)) from e


def iso_utc(epoch_ms: str | int | None) -> str:
    """Epoch milliseconds as ISO-8601 UTC (``2026-11-30T13:00:54.411Z``); ``-`` for 0 / none."""
    try:
        value = int(epoch_ms or 0)
    except ValueError:
        return str(epoch_ms)
    if value <= 0:
        return "-"
    moment = datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """Aligned plain-text table."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
