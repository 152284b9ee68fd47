"""The ``flowslot`` command line: one click group; each package owns its commands.

Dependencies run one way (``keys`` <- ``engine`` <- ``reconciler`` / ``bench``),
so this group, which lives in ``engine``, names no package above it. It finds
commands in three places; a name already taken keeps its first owner:

1. ``BUILTIN``: engine's own commands (``worker``, ``cluster``, ``exec``, ...).
2. When running from a source tree (a ``pyproject.toml`` of the ``flowslot``
   project beside the packages, read on Python 3.11 and later): the
   ``[project.entry-points."flowslot.commands"]`` table of that file. It
   declares ``daemon``, ``reconcile`` and ``demo`` (``reconciler/cli/``) and
   ``bench`` (``bench/cli.py``). Reading the file itself means a checkout
   whose installed metadata predates a change to that table, or that was
   never installed, still finds every command; the installed ``flowslot``
   distribution's own entries are then ignored, as the file is newer.
3. The ``flowslot.commands`` entry points of every installed distribution
   (flowslot's own when not running from a source tree, and any other
   distribution's), the way Flask and pytest find their plugins.

Listing names imports nothing. A command's module is imported only when that
command runs (or ``flowslot --help`` prints its one-line summary), so
``flowslot worker`` imports neither ``reconciler`` nor ``bench``.
"""

from __future__ import annotations

import functools
import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from engine.cli.options import global_options

if sys.version_info >= (3, 11):
    import tomllib

GROUP = "flowslot.commands"
DISTRIBUTION = "flowslot"

BUILTIN: dict[str, str] = {
    "cluster": "engine.cli.cluster:cluster",
    "worker": "engine.cli.worker:worker",
    "functions": "engine.cli.functions:functions",
    "exec": "engine.cli.executions:exec_group",
    "flow": "engine.cli.flows:flow_group",
    "event": "engine.cli.events:event",
    "waits": "engine.cli.events:waits",
    "signal": "engine.cli.signals:signal",
    "secrets": "engine.cli.signals:secrets",
    "lanes": "engine.cli.stats:lanes",
    "partitions": "engine.cli.stats:partitions",
    "serve": "engine.cli.serve:serve",
    "wants": "engine.cli.wants:wants_group",
    "slices": "engine.cli.wants:slices_group",
}

SOURCE_TREE = Path(__file__).resolve().parents[2]


def declared_in_source_tree(root: Path) -> dict[str, str] | None:
    """The ``flowslot.commands`` table of ``root/pyproject.toml``, or None when there is none to read.

    None when the file is missing, belongs to another project, or Python is
    older than 3.11 (no ``tomllib``; the installed metadata is used instead).
    """
    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    project = _read_toml(path).get("project", {})
    if project.get("name") != DISTRIBUTION:
        return None
    table: dict[str, str] = project.get("entry-points", {}).get(GROUP, {})
    return dict(table)


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; empty before Python 3.11, which has no ``tomllib``."""
    if sys.version_info >= (3, 11):
        with path.open("rb") as f:
            return tomllib.load(f)
    return {}


def installed_entry_points(skip_own: bool) -> dict[str, str]:
    """``name -> module:attribute`` of every installed distribution's ``flowslot.commands`` entry."""
    found: dict[str, str] = {}
    for point in entry_points(group=GROUP):
        if skip_own and point.dist is not None and point.dist.name == DISTRIBUTION:
            continue
        found.setdefault(point.name, f"{point.module}:{point.attr}")
    return found


def command_table(source_tree: dict[str, str] | None, installed: dict[str, str]) -> dict[str, str]:
    """Every command name and where it lives: built-ins, then the source tree's table, then installed."""
    table = dict(BUILTIN)
    for found in (source_tree or {}, installed):
        for name, target in found.items():
            table.setdefault(name, target)
    return table


@functools.cache
def commands() -> dict[str, str]:
    """The command table of this process (read once)."""
    source_tree = declared_in_source_tree(SOURCE_TREE)
    return command_table(source_tree, installed_entry_points(skip_own=source_tree is not None))


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(commands())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = commands().get(name)
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
