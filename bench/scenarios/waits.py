"""waits: memory per waiting step, and deliveries per second with 10,000 flows waiting.

Each flow is one wait step on its own correlation (an order id), so it waits
as soon as it is submitted. Memory: ``MEMORY USAGE`` of every key one wait
owns (its execution hash, its flow's hash / steps / order list, its waits
set) plus its share of the partition's shared indexes (``waiting``, the
counters, the event stream, the flows index); ``by_key`` gives each key's
share. Throughput: ``deliver()`` from N client threads, one event per flow,
each resuming one step (one FCALL and no dispatch: a wait with no children).
Targets: at most 1.5 KiB per waiting step, at least 2,000 deliveries/s.

Remote waits: ``REMOTE_FLOWS`` flows placed by an order id, each waiting on a
shipment id whose partition differs, so each delivery is ``event_deliver`` in
the shipment's partition plus the flush of its ``wait_resume`` message
(``outbox_due``, ``wait_resume`` in the flow's partition, ``outbox_ack``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from bench.params import Params
from bench.scenarios.base import Result, Scenario
from bench.server import Progress, Target, delete_matching
from engine.app import App
from engine.client import Client
from engine.events import correlation
from engine.router import Command

NAME = "waits"
FLOWS = 10_000
THREADS = (1, 4)
SAMPLE = 200  # flows whose keys are measured one by one
REMOTE_FLOWS = 2_000


def _usage(client: Client, key: str) -> int:
    return int(client.run(Command(("MEMORY", "USAGE", key, "SAMPLES", "0"), key)) or 0)


def _submit(app: App, flows: int, tag: str) -> list[str]:
    ids = []
    for i in range(flows):
        flow = app.flow("waits", correlate={"order_id": f"{tag}-{i}"})
        flow.wait("payment", "payment_received")
        ids.append(flow.submit().id)
    return ids


def _submit_remote(app: App, flows: int, tag: str) -> list[str]:
    """Flows placed by an order id, each waiting on a shipment id in another partition."""
    ids = []
    for i in range(flows):
        ship = correlation({"shipment": f"{tag}-{i}"})
        j = 0
        while correlation({"order_id": f"{tag}-{i}-{j}"}).partition(app.partitions) == ship.partition(app.partitions):
            j += 1
        flow = app.flow("waits-remote", correlate={"order_id": f"{tag}-{i}-{j}"})
        flow.wait("shipped", "shipped", {"shipment": f"{tag}-{i}"})
        ids.append(flow.submit().id)
    return ids


def _memory(app: App, flow_ids: list[str], tag: str) -> dict[str, Any]:
    client, ks = app.client, app.client.keys
    by_key: dict[str, int] = {}
    for i, fid in enumerate(flow_ids[:SAMPLE]):
        run = app.run(fid)
        p, eid = run.partition, run.step_execution("payment")
        corr = correlation({"order_id": f"{tag}-{i}"})
        for name, key in (("execution", ks.execution(p, eid)), ("flow", ks.flow(p, fid)),
                          ("flow_steps", ks.flow_steps(p, fid)), ("flow_order", ks.flow_order(p, fid)),
                          ("waits", ks.waits(p, corr.wait_key("payment_received")))):
            by_key[name] = by_key.get(name, 0) + _usage(client, key)
    sampled = min(SAMPLE, len(flow_ids))
    by_key = {name: total // sampled for name, total in by_key.items()}
    for name in ("waiting", "counts", "events", "flows"):  # shared by the partition's flows
        total = sum(_usage(client, getattr(ks, name)(p)) for p in range(ks.partitions))
        by_key[name] = total // len(flow_ids)
    own = sum(by_key[n] for n in ("execution", "flow", "flow_steps", "flow_order", "waits"))
    shared = sum(by_key[n] for n in ("waiting", "counts", "events", "flows"))
    return {"own_bytes": own, "shared_bytes": shared, "per_waiting_step_bytes": own + shared,
            "by_key": by_key}


def _deliver_all(app: App, tag: str, flows: int, threads: int, remote: bool = False) -> dict[str, float]:
    counts = [0] * threads
    event, name = ("shipped", "shipment") if remote else ("payment_received", "order_id")

    def deliver(n: int) -> None:
        for i in range(n, flows, threads):
            delivery = app.deliver(event, {name: f"{tag}-{i}"}, {"i": i})
            counts[n] += len(delivery.resumed)

    started = time.perf_counter()
    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started
    return {"threads": threads, "deliveries": flows, "resumed": sum(counts), "wall_s": round(wall, 3),
            "deliveries_per_s": round(flows / wall, 1)}


def run(params: Params, target: Target, progress: Progress) -> Result:
    namespace = f"bench-{os.urandom(4).hex()}"
    app = App(target.url, namespace=namespace, partitions=params.partitions)
    try:
        rounds = []
        memory: dict[str, Any] = {}
        for threads in THREADS:
            tag = f"o{threads}"
            started = time.perf_counter()
            flow_ids = _submit(app, FLOWS, tag)
            progress(f"{FLOWS} flows waiting in {time.perf_counter() - started:.1f}s")
            if not memory:
                memory = _memory(app, flow_ids, tag)
                progress(f"memory per waiting step: {memory}")
            rounds.append(_deliver_all(app, tag, FLOWS, threads))
            progress(f"deliveries: {rounds[-1]}")
            assert rounds[-1]["resumed"] == FLOWS, rounds[-1]
        remote = []
        for threads in THREADS:
            tag = f"r{threads}"
            started = time.perf_counter()
            _submit_remote(app, REMOTE_FLOWS, tag)
            progress(f"{REMOTE_FLOWS} flows waiting remotely in {time.perf_counter() - started:.1f}s")
            remote.append(_deliver_all(app, tag, REMOTE_FLOWS, threads, remote=True))
            progress(f"remote deliveries: {remote[-1]}")
            assert remote[-1]["resumed"] == REMOTE_FLOWS, remote[-1]
    finally:
        app.close()
        if not target.embedded:
            delete_matching(target, f"{namespace}:*")
    best = max(r["deliveries_per_s"] for r in rounds)
    return {"scenario": NAME, "memory": memory, "deliveries": rounds, "remote_deliveries": remote,
            "targets": {"bytes_per_waiting_step": 1536, "deliveries_per_s": 2000},
            "meets_targets": memory["per_waiting_step_bytes"] <= 1536 and best >= 2000}


SCENARIO = Scenario(NAME, "Memory per waiting step and deliveries/s with 10,000 flows waiting.", run)
