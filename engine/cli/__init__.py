"""The ``flowslot`` command line: one click group, one module per noun."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="flowslot")
def main() -> None:
    """flowslot: durable execution inside a Redis Cluster."""


def _register() -> None:
    from engine.cli import cluster, daemon, demo, executions, functions, worker

    main.add_command(cluster.cluster)
    main.add_command(worker.worker)
    main.add_command(daemon.daemon)
    main.add_command(daemon.reconcile)
    main.add_command(functions.functions)
    main.add_command(executions.exec_group)
    main.add_command(demo.demo)
    from bench.cli import bench  # noqa: E402

    main.add_command(bench)


_register()
