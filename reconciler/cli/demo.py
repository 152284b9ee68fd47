"""``flowslot demo``: an embedded cluster, a reconciler daemon and workers, one realistic flow."""

from __future__ import annotations

import json
import sys
import time

import click

from engine import App
from engine.cli.cluster import server_option
from engine.cli.flows import paint, tree_lines
from engine.demo_app import REGIONS
from engine.demo_app import app as demo_tasks
from engine.flowrun import FlowRun
from engine.localcluster import LocalCluster, LocalClusterError
from engine.worker import Worker
from reconciler import Ownership, Reconciler


@click.command()
@click.option("--primaries", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--images", default=40, show_default=True, type=click.IntRange(0, 100_000),
              help="Standalone thumbnail tasks submitted next to the flow.")
@server_option
def demo(primaries: int, images: int, server: str | None) -> None:
    """Start an embedded cluster (the packaged Valkey unless --server), a daemon and workers;
    run a sample flow and show it."""
    started = time.monotonic()
    click.echo(f"starting an embedded {primaries}-primary cluster ...")
    try:
        cluster = LocalCluster(primaries=primaries, server=server).start()
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e
    app = App(cluster.url)  # a fresh App each run: a client never outlives its cluster
    app.tasks.update(demo_tasks.tasks)
    workers: list[Worker] = []
    reconciler = None
    try:
        client = app.client
        click.echo(f"cluster up at {cluster.url} in {time.monotonic() - started:.1f}s, running "
                   f"{cluster.binary}; functions loaded on {len(client.router.primaries())} primaries")
        workers = [Worker(app, ["default", "images"], concurrency=8, lease_ms=5000).start() for _ in range(2)]
        reconciler = Reconciler(client, ownership=Ownership(client, ttl_s=5), interval_s=0.2).start()
        click.echo("2 workers and a reconciler daemon running in this process\n")

        flow = app.flow("daily-sales-report", labels={"team": "bi"})
        orders = flow.step("fetch_orders", "demo.fetch_orders", "2026-11-24")
        scores = [flow.step(f"score_{r}", "demo.score_region", r, orders.ref()) for r in REGIONS]
        geo = flow.step("geo_enrich", "demo.geo_enrich", orders.ref(), optional=True)
        summary = flow.step("summarize", "demo.summarize", [s.ref() for s in scores], geo.ref_or_default({}))
        flow.step("notify", "demo.notify", "#sales", after_any=[summary])
        run = flow.submit()
        thumbs = app.submit_many("demo.thumbnail", [(f"img/{i}.png", 320) for i in range(images)])
        click.echo(f"submitted flow {run.id} ({len(flow.steps)} steps: fetch -> {len(REGIONS)} scores "
                   f"+ optional geo -> summarize -> notify) and {len(thumbs)} thumbnail tasks")
        _follow(run)
        for handle in thumbs:
            handle.result(timeout=30)
        _show(run)
        repairs = ", ".join(f"{k}={v}" for k, v in reconciler.totals.items() if v)
        click.echo(f"\n{len(thumbs)} thumbnails done; the daemon repaired {repairs or 'nothing (healthy)'}")
    finally:
        for worker in workers:
            worker.stop_and_wait()
        if reconciler is not None:
            reconciler.stop()
        app.close()
        cluster.stop()
    click.echo(f"everything stopped cleanly; {time.monotonic() - started:.1f}s in all")


def _follow(run: FlowRun) -> None:
    """Live progress until the flow is terminal (a display refresh, not a waiter)."""
    tty = sys.stdout.isatty()
    last = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = run.status()
        counts = ", ".join(f"{paint(k)} {v}" for k, v in sorted(status["counts"].items()))
        line = f"  [{status['state']}] {status['terminal']}/{status['total']} steps done: {counts}"
        if line != last:
            click.echo(("\r" + line.ljust(100)) if tty else line, nl=not tty)
            last = line
        if status["state"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.1)
    if tty:
        click.echo()


def _show(run: FlowRun) -> None:
    described = run.describe(timeline_limit=1)
    click.echo(f"\nflow {run.id}: {paint(described['flow']['state'])}")
    for line in tree_lines(described["steps"]):
        click.echo("  " + line)
    attempts = {s["step"]: s["attempts"] for s in described["steps"]}
    click.echo(f"\nfetch_orders took {attempts['fetch_orders']} attempts (the first timed out); "
               f"geo_enrich failed but is optional, so summarize got its default")
    click.echo("summarize result: " + json.dumps(run.result("summarize", timeout=5)))
    click.echo("notify: " + str(run.result("notify", timeout=5)))
