"""``flowslot demo``: an embedded cluster, a worker and a reconciler, one process, no setup."""

from __future__ import annotations

import sys
import time
from collections import Counter

import click

from engine.cli.options import table


@click.command()
@click.option("--primaries", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--tasks", default=60, show_default=True, type=click.IntRange(4, 100_000))
def demo(primaries: int, tasks: int) -> None:
    """Start an embedded Valkey cluster, run a batch of tasks through workers, show what happened."""
    from engine.demo_app import app, fetch_price, score, thumbnail, validate
    from engine.localcluster import LocalCluster, LocalClusterError
    from engine.worker import Worker
    from reconciler import Reconciler

    say = lambda text: click.echo(text, err=False)  # noqa: E731
    started = time.monotonic()
    say(f"starting an embedded {primaries}-primary Valkey cluster ...")
    try:
        cluster = LocalCluster(primaries=primaries).start()
    except LocalClusterError as e:
        raise click.ClickException(str(e)) from e
    try:
        app.url = cluster.url
        say(f"cluster up at {cluster.url} ({time.monotonic() - started:.1f}s); loading functions ...")
        worker = Worker(app, ["default", "images"], concurrency=8, lease_ms=5000).start()
        reconciler = Reconciler(app.client, interval_s=0.2).start()
        handles = _submit(app, tasks, thumbnail, fetch_price, score, validate)
        say(f"submitted {len(handles)} executions over {app.client.keys.partitions} partitions")
        _follow(handles)
        _summarize(handles)
        worker.stop_and_wait()
        reconciler.stop()
        say(f"worker: {worker.stats.succeeded} succeeded, {worker.stats.failed} failed, "
            f"{worker.stats.retried} retried; done in {time.monotonic() - started:.1f}s")
    finally:
        app.close()
        cluster.stop()


def _submit(app, tasks, thumbnail, fetch_price, score, validate):  # type: ignore[no-untyped-def]
    n = max(tasks // 4, 1)
    handles = []
    handles += [("thumbnail", h) for h in app.submit_many(thumbnail, [(f"img/{i}.png", 320) for i in range(n)])]
    handles += [("fetch_price", h) for h in app.submit_many(fetch_price, [(f"sku-{i}",) for i in range(n)])]
    handles += [("score", h) for h in app.submit_many(score, [(f"review {i}",) for i in range(n)], priority=9)]
    handles += [("validate", app.submit(validate, "order-17"))]
    return handles


def _follow(handles) -> None:  # type: ignore[no-untyped-def]
    tty = sys.stdout.isatty()
    for done, (_, handle) in enumerate(handles, 1):
        try:
            handle.result(timeout=30)
        except Exception:  # noqa: BLE001 - the failures are part of the demo; shown below
            pass
        if tty:
            click.echo(f"\r  {done}/{len(handles)} terminal", nl=False)
    if tty:
        click.echo()


def _summarize(handles) -> None:  # type: ignore[no-untyped-def]
    by_task: dict[str, Counter[str]] = {}
    examples: dict[str, str] = {}
    for task, handle in handles:
        info = handle.info()
        by_task.setdefault(task, Counter())[info["state"]] += 1
        by_task[task]["attempts"] += int(info["attempts"])
        if task not in examples:
            shown = info.get("result") or f"{info.get('error_kind')}: {info.get('error_msg', '').splitlines()[0]}"
            examples[task] = shown[:60]
    rows = [[task, c["succeeded"], c["failed"], c["attempts"], examples[task]] for task, c in by_task.items()]
    click.echo(table(rows, ["task", "succeeded", "failed", "attempts", "example outcome"]))
