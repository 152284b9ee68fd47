"""steady: a fixed arrival rate for a fixed time, while worker processes are SIGKILLed.

Worker processes (``flowslot worker``) run a task that sleeps ``--work-ms``;
one of them is killed every ``--kill-every-s`` and replaced at once; the
reconciler runs in this process as the daemon would. Reports completed/s,
end-to-end latency (server clock: created → finished), retries caused by lost
leases, and what the reconciler repaired: the cost of robustness.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import click

from bench.metrics import percentile
from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching
from engine.app import App
from engine.router import Command
from reconciler import Reconciler

NAME = "steady"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(target: Target, namespace: str, params: Params, lease_ms: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "bench.scenarios.steady_app:app", "--url", target.url,
         "--namespace", namespace, "--partitions", str(params.partitions), "--concurrency",
         str(params.concurrency), "--lease-ms", str(lease_ms), "--grace-s", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _states(app: App, ids: list[str]) -> list[list[str | None]]:
    ks = app.client.keys
    calls = []
    for eid in ids:
        key = ks.execution(int(eid.split("_")[1], 16), eid)
        calls.append(Command(("HMGET", key, "state", "created_ms", "finished_ms", "attempts", "error_kind"), key))
    return app.client.run_many(calls)


def run(params: Params, target: Target, progress: Progress) -> Result:
    rate = float(params.extra.get("rate") or 200)
    duration_s = float(params.extra.get("duration_s") or 20)
    kill_every_s = float(params.extra.get("kill_every_s") or 3)
    work_ms = int(params.extra.get("work_ms") or 5)
    lease_ms = 2000
    namespace = f"bench-{os.urandom(4).hex()}"
    app = App(target.url, namespace=namespace, partitions=params.partitions)
    app.task(name="bench.steady")(lambda work_ms: work_ms)
    reconciler = Reconciler(app.client, interval_s=0.5).start()
    workers = [_spawn(target, namespace, params, lease_ms) for _ in range(params.workers)]
    ids: list[str] = []
    kills = 0
    try:
        time.sleep(1.5)  # let the workers connect
        started = time.monotonic()
        next_kill = started + kill_every_s
        tick_s = 0.05
        while (now := time.monotonic()) < started + duration_s:
            due = int((now - started) * rate) - len(ids)
            if due > 0:
                ids += [h.id for h in app.submit_many("bench.steady", [(work_ms,)] * due)]
            if now >= next_kill:
                victim = random.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(timeout=10)
                workers[victim] = _spawn(target, namespace, params, lease_ms)
                kills += 1
                next_kill += kill_every_s
            time.sleep(tick_s)
        progress(f"submitted {len(ids)} at {rate}/s for {duration_s}s with {kills} worker kills; draining ...")
        deadline = time.monotonic() + 60
        rows = _states(app, ids)
        while any(r[0] not in ("succeeded", "failed") for r in rows) and time.monotonic() < deadline:
            time.sleep(0.5)
            rows = _states(app, ids)
        drained_s = time.monotonic() - started
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                w.kill()
        reconciler.stop()
        totals = dict(reconciler.totals)
    done = [r for r in rows if r[0] == "succeeded"]
    latencies = [int(r[2]) - int(r[1]) for r in done]
    result = {
        "scenario": NAME, "rate_per_s": rate, "duration_s": duration_s, "submitted": len(ids),
        "completed": len(done), "failed": sum(1 for r in rows if r[0] == "failed"),
        "unfinished": sum(1 for r in rows if r[0] not in ("succeeded", "failed")),
        "completed_per_s": round(len(done) / drained_s, 1), "worker_kills": kills,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "lease_lost_retries": sum(1 for r in rows if r[4] == "lease_lost"),
        "extra_attempts": sum(int(r[3] or 1) - 1 for r in rows),
        "reconciler_repairs": totals, "work_ms": work_ms, "workers": params.workers,
    }
    app.close()
    if not target.embedded:
        delete_matching(target, f"{namespace}:*")
    return result


SCENARIO = Scenario(
    name=NAME,
    summary="Fixed arrival rate with worker processes SIGKILLed and restarted; the cost of robustness.",
    run=run,
    options=(
        click.Option(["--rate"], default=200.0, show_default=True, help="Submissions per second."),
        click.Option(["--duration-s"], default=20.0, show_default=True),
        click.Option(["--kill-every-s"], default=3.0, show_default=True),
        click.Option(["--work-ms"], default=5, show_default=True, help="Each task sleeps this long."),
    ),
)
