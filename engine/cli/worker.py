"""``flowslot worker MODULE:APP``: run the tasks of an App."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from engine.app import App
from engine.cli.options import connection_options


def load_app(target: str) -> App:
    """Import ``package.module:attribute`` (the current directory is importable)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:APP, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise click.ClickException(f"cannot import {module_name!r}: {e}") from e
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise click.ClickException(f"{target!r} is not a flowslot App")
    return app


@click.command()
@click.argument("target")
@click.option("--lanes", default="default", show_default=True, help="Comma-separated lanes to serve.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--lease-ms", default=30_000, show_default=True, type=click.IntRange(100, 86_400_000))
@click.option("--grace-s", default=30.0, show_default=True, type=float,
              help="On SIGTERM, how long running handlers may finish before their leases are released.")
@click.option("--metrics-port", envvar="FLOWSLOT_WORKER_METRICS_PORT", default=0, show_default=True, type=int,
              help="Serve /metrics and /healthz on this port (0: off).")
@connection_options
def worker(target: str, lanes: str, concurrency: int, lease_ms: int, grace_s: float, metrics_port: int,
           url: str | None, namespace: str, partitions: int) -> None:
    """Run the tasks registered on TARGET (``module:app``) until SIGTERM."""
    from engine.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = load_app(target)
    if url:
        app.url = url
    app.namespace, app.partitions = namespace, partitions
    lane_list = [lane.strip() for lane in lanes.split(",") if lane.strip()]
    runner = Worker(app, lane_list, concurrency=concurrency, lease_ms=lease_ms, grace_s=grace_s)
    if metrics_port:
        from engine.cli.daemon import health_report
        from engine.httpd import serve

        serve(metrics_port, lambda: health_report(app.client))
    runner.run()
