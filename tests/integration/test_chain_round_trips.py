"""What a chain of steps costs on the way: the thread switches, round trips and reads that
the hot path leaves out (real server, in-process worker)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from engine import App
from engine import executions as X
from engine.states import FlowState
from engine.worker import Worker
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server


def reads(raw: redis.Redis) -> int:
    stats = raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in ("hget", "hmget"))


def chain(app: App, task: Any, steps: int) -> Any:
    flow = app.flow("chain")
    last = flow.step("s0", task, 0)
    for i in range(1, steps):
        last = flow.step(f"s{i}", task, last.ref())
    return flow


def test_a_chains_next_step_runs_on_the_handler_thread_that_recorded_the_previous_ones_success(
        server_url, namespace):
    app = App(server_url, namespace=namespace, partitions=TEST_PARTITIONS)
    threads: list[str] = []

    @app.task(name="t.where")
    def where(n: int) -> int:
        threads.append(threading.current_thread().name)
        return n + 1

    worker = Worker(app, concurrency=4, promote_interval_s=None)
    queued: list[str] = []  # what went through the handler threads' queue
    submit = worker._pool.submit

    def counted(fn: Any, definition: Any, held: Any) -> None:
        queued.append(held.claimed.step)
        submit(fn, definition, held)

    worker._pool.submit = counted  # type: ignore[method-assign]
    worker.start()
    try:
        run = chain(app, where, 4).submit()
        assert run.wait(timeout=30) is FlowState.SUCCEEDED
        assert run.result("s3", timeout=1) == 4
    finally:
        worker.stop_and_wait()
        app.close()
    assert queued == ["s0"]  # claimed by the claim loop; each later step came in its parent's reply
    assert len(threads) == 4 and len(set(threads)) == 1, threads


def test_waiting_for_a_submitted_flow_is_one_round_trip_that_blocks_then_reads_its_final_state(
        standalone_server, namespace):
    app = App(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    app.task(name="t.step")(lambda n: n + 1)
    run = chain(app, "t.step", 2).submit()
    rounds: list[list[str]] = []
    execute_many = app.client.router.execute_many

    def recorded(calls: Any) -> list[Any]:
        rounds.append([str(c.command()[0]) for c in calls])
        return execute_many(calls)

    app.client.router.execute_many = recorded  # type: ignore[method-assign]
    waited: list[FlowState] = []
    waiter = threading.Thread(target=lambda: waited.append(run.wait(timeout=30)))
    waiter.start()
    wait_until(lambda: rounds, what="the waiter's block")  # it blocks before the worker runs
    worker_app = App(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    worker_app.task(name="t.step")(lambda n: n + 1)
    worker = Worker(worker_app, concurrency=2, promote_interval_s=None).start()
    try:
        waiter.join(timeout=30)
    finally:
        worker.stop_and_wait()
        worker_app.close()
        app.close()
    assert waited == [FlowState.SUCCEEDED]
    # submit() returned the run, so the flow exists: no read before the block either
    assert rounds == [["BLMOVE", "HGET"]]


def test_submitting_a_chain_reads_nothing_back_per_step(standalone_server, namespace):
    app = App(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    app.task(name="t.step")(lambda n: n + 1)
    raw = redis.Redis.from_url(standalone_server.url)
    try:
        counted = []
        for steps in (5, 20):
            flow = chain(app, "t.step", steps)
            before = reads(raw)
            flow.submit()
            counted.append(reads(raw) - before)
    finally:
        raw.close()
        app.close()
    assert counted[0] == counted[1], counted


def calls(raw: redis.Redis, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_completed_step_hands_over_its_only_child_with_the_input_it_wrote_without_reading_it_back(
        standalone_server, namespace):
    app = App(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    app.task(name="t.step")(lambda n: n + 1)
    raw = redis.Redis.from_url(standalone_server.url)
    try:
        run = chain(app, "t.step", 2).submit()
        ks = app.client.keys
        first = app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed[0]
        assert first.step == "s0"
        before = calls(raw, "hgetall")
        reply = app.client.run(X.complete_step(ks, first.execution_id, first.token, "1", 150, 1, 30_000,
                                               "w", ["default"]))
        read = calls(raw, "hgetall") - before
    finally:
        raw.close()
        app.close()
    assert [c.step for c in reply.claimed] == ["s1"]
    assert dict(reply.claimed[0].inputs) == {"s0": "1"}
    assert read == 0


def test_a_chain_steps_completion_that_leases_the_next_step_reads_and_writes_each_hash_once(
        standalone_server, namespace):
    app = App(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    app.task(name="t.step")(lambda n: n + 1)
    raw = redis.Redis.from_url(standalone_server.url)
    counted = ("hmget", "hget", "hset", "hgetall")
    try:
        run = chain(app, "t.step", 3).submit()
        ks = app.client.keys
        first = app.client.run(X.claim(ks, run.partition, "default", 10, 30_000, "w")).claimed[0]
        before = {command: calls(raw, command) for command in counted}
        reply = app.client.run(X.complete_step(ks, first.execution_id, first.token, "1", 150, 1, 30_000,
                                               "w", ["default"]))
        used = {command: calls(raw, command) - before[command] for command in counted}
    finally:
        raw.close()
        app.close()
    assert [c.step for c in reply.claimed] == ["s1"]
    # reads: the step (lease check), the flow's state, the child's edge, the child's gate fields,
    # the child's lease fields; no outcome check of the flow (its child is not terminal)
    # writes: the step, the child's edge, its input, its state (ready, then leased: one write)
    assert used == {"hmget": 3, "hget": 2, "hset": 4, "hgetall": 0}
