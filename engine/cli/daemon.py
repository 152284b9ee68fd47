"""``flowslot daemon`` and ``flowslot reconcile --once``: the reconciler's processes."""

from __future__ import annotations

import logging
import signal
import threading

import click

from engine.cli.options import connection_options, emit_json, json_option, open_client, table


@click.command()
@click.option("--interval-s", default=1.0, show_default=True, type=float)
@connection_options
def daemon(interval_s: float, url: str | None, namespace: str, partitions: int) -> None:
    """Run the reconciler's scanners every INTERVAL until SIGTERM."""
    from reconciler import Reconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    client = open_client(url, namespace, partitions)
    reconciler = Reconciler(client, interval_s=interval_s)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    reconciler.start()
    done.wait()
    reconciler.stop()


@click.command()
@click.option("--once", is_flag=True, required=True, help="Run exactly one pass.")
@json_option
@connection_options
def reconcile(once: bool, as_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Run one pass of every scanner and print what it repaired."""
    from reconciler import Reconciler

    results = Reconciler(open_client(url, namespace, partitions)).run_pass()
    if as_json:
        emit_json({name: vars(r) for name, r in results.items()})
        return
    rows = [[n, r.repaired, r.scanned_partitions, r.commands] for n, r in results.items()]
    click.echo(table(rows, ["scanner", "repaired", "partitions", "commands"]))
