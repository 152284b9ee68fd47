"""``flowslot daemon`` and ``flowslot reconcile --once``: the reconciler's processes."""

from __future__ import annotations

import logging
import signal
import time
from collections import defaultdict

import click

from engine import metrics
from engine.cli.health import health_report
from engine.cli.options import connection_options, emit_json, json_option, open_client, table
from engine.client import Client
from engine.httpd import serve
from engine.logs import setup_logging
from engine.router import Command
from engine.states import WantState
from reconciler import SCANNERS, FlowRetention, Ownership, Reconciler, Retention, Scanner, ScanResult

QUEUE_DEPTH_EVERY_S = 5.0  # how often the queue-depth gauges are read from the cluster
SIGNAL_POLL_S = 0.1  # how soon the main thread acts on a SIGTERM/SIGINT
MAX_INTERVAL_S = 86_400.0  # the longest --scanner interval


def build_scanners(intervals: tuple[str, ...], retention_s: float | None,
                   names: tuple[str, ...] = ()) -> list[Scanner]:
    """Default scanners, with ``NAME=SECONDS`` interval overrides and the retention."""
    chosen = names or tuple(SCANNERS)
    unknown = [n for n in chosen if n not in SCANNERS]
    if unknown:
        raise click.BadParameter(f"unknown scanner {unknown[0]!r}; known: {', '.join(SCANNERS)}")
    scanners: list[Scanner] = []
    for name in chosen:
        cls = SCANNERS[name]
        if retention_s is not None and issubclass(cls, (Retention, FlowRetention)):
            scanners.append(cls(retention_s=retention_s))
        else:
            scanners.append(cls())
    by_name = {s.name: s for s in scanners}
    for item in intervals:
        name, sep, value = item.partition("=")
        if not sep or name not in by_name:
            raise click.BadParameter(f"--scanner takes NAME=SECONDS with NAME one of {', '.join(by_name)}, "
                                     f"got {item!r}")
        try:
            seconds = float(value)
        except ValueError as e:
            raise click.BadParameter(f"--scanner {item!r}: {value!r} is not a number of seconds") from e
        if not 0 < seconds <= MAX_INTERVAL_S:  # (NaN fails this too)
            raise click.BadParameter(f"--scanner {item!r}: an interval is a number of seconds in "
                                     f"(0, {MAX_INTERVAL_S:g}]")
        by_name[name].interval_s = seconds
    return scanners


def refresh_queue_depth(client: Client, partitions: list[int]) -> None:
    """Queue depth from the per-lane counters the Lua transitions keep (one HGETALL a partition)."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    calls = [Command(("HGETALL", client.keys.counts(p)), client.keys.counts(p)) for p in partitions]
    for reply in client.run_many(calls):
        if isinstance(reply, dict):
            for field, value in reply.items():
                lane, _, state = field.rpartition(":")
                if state in ("ready", "delayed", "leased", "blocked", "waiting"):
                    totals[(lane, state)] += int(value)
    for (lane, state), value in totals.items():
        metrics.QUEUE_DEPTH.labels(lane, state).set(value)
    refresh_wants(client, partitions)


def refresh_wants(client: Client, partitions: list[int]) -> None:
    """Wants per state from the counters every want transition keeps (one HGETALL a partition)."""
    totals = {state.value: 0 for state in WantState}
    calls = [Command(("HGETALL", client.keys.want_counts(p)), client.keys.want_counts(p)) for p in partitions]
    for reply in client.run_many(calls):
        if isinstance(reply, dict):
            for state, value in reply.items():
                if state in totals:
                    totals[state] += int(value)
    for state, value in totals.items():
        metrics.WANTS.labels(state).set(value)


@click.command()
@click.option("--metrics-port", envvar="FLOWSLOT_METRICS_PORT", default=9464, show_default=True,
              type=click.IntRange(0, 65535), help="Port of /metrics and /healthz (0: no endpoint).")
@click.option("--metrics-host", envvar="FLOWSLOT_METRICS_HOST", default="127.0.0.1", show_default=True)
@click.option("--scanner", "intervals", multiple=True, metavar="NAME=SECONDS",
              help="Override one scanner's interval (repeatable).")
@click.option("--retention-s", envvar="FLOWSLOT_RETENTION_S", type=click.FloatRange(min=0), default=None,
              help="Delete terminal executions and flows this long after they finished [default: 7 days].")
@click.option("--lease-ttl-s", envvar="FLOWSLOT_LEASE_TTL_S", default=10.0, show_default=True,
              type=click.FloatRange(0.1, 86_400),
              help="Partition ownership lease; a dead daemon's partitions move on after this.")
@click.option("--log-json", is_flag=True, envvar="FLOWSLOT_LOG_JSON", help="Log one JSON object per line.")
@connection_options
def daemon(metrics_port: int, metrics_host: str, intervals: tuple[str, ...], retention_s: float | None,
           lease_ttl_s: float, log_json: bool, url: str | None, namespace: str, partitions: int) -> None:
    """Run the reconciler over this daemon's share of the partitions until SIGTERM.

    Several daemons share the partitions through leases held in the cluster.
    On SIGTERM the current round finishes, the partitions are given back, and
    the process exits 0.
    """
    setup_logging(log_json)
    log = logging.getLogger("flowslot.daemon")
    client = open_client(url, namespace, partitions)
    scanners = build_scanners(intervals, retention_s)
    ownership = Ownership(client, ttl_s=lease_ttl_s)

    def on_result(name: str, result: ScanResult) -> None:
        metrics.SCANNER_PASSES.labels(name).inc()
        metrics.SCANNER_REPAIRS.labels(name).inc(result.repaired)
        metrics.PARTITIONS_OWNED.set(len(ownership.owned))

    reconciler = Reconciler(client, scanners, ownership=ownership, on_result=on_result)
    try:
        server = serve(metrics_port, lambda: health_report(client), metrics_host) if metrics_port else None
    except OSError as e:  # the port is taken, or the host is not this machine's
        raise click.ClickException(f"cannot serve metrics on {metrics_host}:{metrics_port}: {e}") from e
    # The handler only appends (no lock): Event.set() in a signal handler can deadlock on
    # the lock the main thread holds inside Event.wait().
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    reconciler.start()
    log.info("daemon %s started: %d scanners, metrics on %s", ownership.daemon_id, len(scanners),
             f"{metrics_host}:{metrics_port}" if server else "off")
    next_refresh = time.monotonic() + QUEUE_DEPTH_EVERY_S
    while not signals:
        time.sleep(SIGNAL_POLL_S)
        if time.monotonic() < next_refresh:
            continue
        next_refresh = time.monotonic() + QUEUE_DEPTH_EVERY_S
        try:
            refresh_queue_depth(client, sorted(ownership.owned))
        except Exception as e:  # noqa: BLE001 - metrics must never stop the daemon
            log.warning("queue depth refresh failed: %s", e)
    reconciler.stop()
    if server is not None:
        server.shutdown()
    log.info("daemon %s stopped; partitions released", ownership.daemon_id)


@click.command()
@click.option("--once", is_flag=True, required=True, help="Run exactly one pass.")
@click.option("--scanner", "names", multiple=True, help="Only this scanner (repeatable).")
@json_option
@connection_options
def reconcile(once: bool, names: tuple[str, ...], as_json: bool, url: str | None, namespace: str,
              partitions: int) -> None:
    """Run one pass of every scanner (or the named ones) over all partitions; print what it repaired."""
    scanners = build_scanners((), None, names)
    started = time.monotonic()
    results = Reconciler(open_client(url, namespace, partitions), scanners).run_pass()
    if as_json:
        emit_json({"elapsed_s": round(time.monotonic() - started, 3),
                   "scanners": {n: {"repaired": r.repaired, "partitions": r.scanned_partitions,
                                    "commands": r.commands} for n, r in results.items()}})
        return
    rows = [[n, r.repaired, r.scanned_partitions, r.commands] for n, r in results.items()]
    click.echo(table(rows, ["scanner", "repaired", "partitions", "commands"]))
