"""``flowslot worker MODULE:APP``: run the tasks of an App."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click
import redis

from engine.app import App
from engine.cli.options import connection_options, given
from engine.errors import ContractError, EngineError
from engine.logs import setup_logging


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


def apply_deployment(ctx: click.Context, app: App, url: str | None, namespace: str,
                     partitions: int) -> None:
    """Point the App at the deployment the flags name; the App's own choices win over defaults.

    A flag given explicitly (command line or environment) that contradicts a
    namespace or partition count the App set itself is refused: the worker
    would otherwise serve work whose handlers it does not have.
    """
    if given(ctx, "url"):
        app.url = url
    for name, flag_value, app_explicit in (("namespace", namespace, app.namespace_explicit),
                                           ("partitions", partitions, app.partitions_explicit)):
        current = getattr(app, name)
        if not given(ctx, name) or flag_value == current:
            continue
        if app_explicit:
            raise click.ClickException(
                f"--{name} {flag_value} contradicts the App's own {name}={current!r}; "
                f"drop the flag or change the App")
        setattr(app, name, flag_value)


def connect(app: App) -> None:
    """Connect before any thread starts, so a first-run mistake (no server recorded, nothing
    listening, a wrong URL, another partition count) is one ``Error:`` line, not a traceback."""
    try:
        app.client  # noqa: B018 - the property connects, checks the config and loads the library
    except EngineError as e:
        raise click.ClickException(str(e)) from e
    except (ValueError, redis.RedisError) as e:
        raise click.ClickException(f"cannot connect to {app.url or 'the configured server'}: {e}") from e


@click.command()
@click.argument("target")
@click.option("--lanes", default="default", show_default=True, help="Comma-separated lanes to serve.")
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--lease-ms", default=30_000, show_default=True, type=click.IntRange(100, 86_400_000))
@click.option("--grace-s", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="On SIGTERM, how long running handlers may finish before their leases are released.")
@click.option("--metrics-port", envvar="FLOWSLOT_WORKER_METRICS_PORT", default=0, show_default=True,
              type=click.IntRange(0, 65535), help="Serve /metrics and /healthz on this port (0: off).")
@click.option("--log-json", is_flag=True, envvar="FLOWSLOT_LOG_JSON", help="Log one JSON object per line.")
@connection_options
@click.pass_context
def worker(ctx: click.Context, target: str, lanes: str, concurrency: int, lease_ms: int, grace_s: float,
           metrics_port: int, log_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Run the tasks registered on TARGET (``module:app``) until SIGTERM.

    The App's own url, namespace and partitions are used unless a flag (or
    its environment variable) names them.
    """
    from engine.worker import Worker

    setup_logging(log_json)
    app = load_app(target)
    apply_deployment(ctx, app, url, namespace, partitions)
    connect(app)
    lane_list = [lane.strip() for lane in lanes.split(",") if lane.strip()]
    try:
        runner = Worker(app, lane_list, concurrency=concurrency, lease_ms=lease_ms, grace_s=grace_s)
    except ContractError as e:  # a bad lane
        raise click.BadParameter(str(e), param_hint="--lanes") from e
    if metrics_port:
        from engine.cli.health import health_report
        from engine.httpd import serve

        try:
            serve(metrics_port, lambda: health_report(app.client))
        except OSError as e:  # the port is taken
            raise click.ClickException(f"cannot serve metrics on port {metrics_port}: {e}") from e
    runner.run()
    if runner.running_handlers:
        # Their leases are handed back; a plain-function handler cannot be interrupted, and
        # the interpreter would wait for its thread at exit. The cluster holds the truth.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
