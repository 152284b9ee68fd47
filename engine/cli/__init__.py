"""The ``flowslot`` command line: one click group, one module per noun."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="flowslot")
def main() -> None:
    """flowslot: durable execution inside a Redis Cluster."""


def _register() -> None:
    from engine.cli import cluster

    main.add_command(cluster.cluster)


_register()
