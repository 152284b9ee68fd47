"""The ``flowslot`` command line: one click group, one module per noun.

Commands are imported when used, so ``flowslot worker`` does not pay for
importing the benchmark harness or the demo.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from engine.cli.options import global_options

COMMANDS: dict[str, str] = {
    "cluster": "engine.cli.cluster:cluster",
    "worker": "engine.cli.worker:worker",
    "daemon": "engine.cli.daemon:daemon",
    "reconcile": "engine.cli.daemon:reconcile",
    "functions": "engine.cli.functions:functions",
    "exec": "engine.cli.executions:exec_group",
    "flow": "engine.cli.flows:flow_group",
    "lanes": "engine.cli.stats:lanes",
    "partitions": "engine.cli.stats:partitions",
    "demo": "engine.cli.demo:demo",
    "bench": "bench.cli:bench",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attr)
        return command  # type: ignore[no-any-return]


@click.group(cls=LazyGroup)
@click.version_option(package_name="flowslot")
@global_options
def main(url: str | None, namespace: str | None, partitions: int | None, as_json: bool) -> None:
    """flowslot: durable execution inside a Redis Cluster.

    --url, --namespace, --partitions and --json may come before the command
    or after it; after it, they win.
    """
