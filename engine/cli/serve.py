"""``flowslot serve``: the HTTP API (``engine/http``) under uvicorn, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING

import click

from engine.app import App
from engine.cli.options import connection_options
from engine.cli.worker import connect
from engine.codec import DEFAULT_MAX_PAYLOAD_BYTES
from engine.errors import ContractError
from engine.logs import setup_logging

if TYPE_CHECKING:
    from starlette.applications import Starlette

KEYS_ENV = "FLOWSLOT_API_KEYS"


def listen(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so a taken port is one ``Error:`` line and port 0 can be used."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # from here connections queue until uvicorn takes them
    except OSError as e:
        sock.close()  # a port in use must not leave the socket to the garbage collector
        raise click.ClickException(f"cannot listen on {host}:{port}: {e}") from e
    sock.set_inheritable(True)
    return sock


def run(asgi: Starlette, sock: socket.socket) -> None:
    """Serve until SIGTERM / SIGINT: uvicorn stops taking requests and finishes the open ones.

    uvicorn re-raises the signal it caught once it has stopped; our handlers
    take that one too, so a stop asked for is an exit status of 0.
    """
    import uvicorn

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    config = uvicorn.Config(asgi, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=30)
    uvicorn.Server(config).run(sockets=[sock])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--api-key", "api_key", multiple=True,
              help=f"A bearer key events and reads accept (repeatable). Prefer ${KEYS_ENV} "
                   "(comma-separated): a flag is visible to every user of `ps`.")
@click.option("--no-auth", is_flag=True, help="Serve events and reads without a key (behind a proxy that checks).")
@click.option("--max-payload-bytes", default=DEFAULT_MAX_PAYLOAD_BYTES, show_default=True,
              type=click.IntRange(1), help="Largest event or signal payload (larger: 413).")
@click.option("--metrics-port", envvar="FLOWSLOT_SERVE_METRICS_PORT", default=0, show_default=True,
              type=click.IntRange(0, 65535),
              help="Serve /metrics (deliveries and signals by outcome) and /healthz on this port (0: off).")
@click.option("--metrics-host", envvar="FLOWSLOT_SERVE_METRICS_HOST", default="127.0.0.1", show_default=True,
              help="Address the metrics endpoint binds.")
@click.option("--log-json", is_flag=True, envvar="FLOWSLOT_LOG_JSON", help="Log one JSON object per line.")
@connection_options
def serve(host: str, port: int, api_key: tuple[str, ...], no_auth: bool, max_payload_bytes: int,
          metrics_port: int, metrics_host: str, log_json: bool, url: str | None, namespace: str,
          partitions: int) -> None:
    """Serve the HTTP API: POST /v1/events/NAME, POST /v1/signals/TOKEN, GET /v1/flows/ID,
    GET /v1/executions/ID, GET /healthz (needs the `http` extra)."""
    try:
        from engine.http import create_app
        from engine.http.auth import keys_from_env
    except ImportError as e:
        raise click.ClickException(f"flowslot serve needs the http extra: pip install 'flowslot[http]' ({e})") \
            from e
    keys = list(api_key) or keys_from_env(os.environ.get(KEYS_ENV))
    if not keys and not no_auth:
        raise click.ClickException(f"no API key: pass --api-key KEY or set {KEYS_ENV}, or pass --no-auth "
                                   "to serve events and reads to anyone who can reach the port")
    if keys and no_auth:
        raise click.ClickException(f"--no-auth and API keys (--api-key or {KEYS_ENV}) exclude each other")
    setup_logging(log_json)
    try:
        app = App(url, namespace=namespace, partitions=partitions, max_payload_bytes=max_payload_bytes)
        asgi = create_app(app, api_keys=keys, no_auth=no_auth)
    except ContractError as e:
        raise click.ClickException(str(e)) from e
    connect(app)
    sock = listen(host, port)
    if metrics_port:
        from engine.cli.health import health_report
        from engine.httpd import serve as serve_metrics

        try:
            serve_metrics(metrics_port, lambda: health_report(app.client), metrics_host)
        except OSError as e:
            raise click.ClickException(f"cannot serve metrics on {metrics_host}:{metrics_port}: {e}") from e
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"flowslot serve: listening on http://{shown_host}:{sock.getsockname()[1]} "
               f"(namespace {namespace}, {'no auth' if no_auth else 'bearer keys'})")
    run(asgi, sock)
