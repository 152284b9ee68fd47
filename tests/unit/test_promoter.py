"""The promoter: its timer heap fires due partitions in order; its calls promote and hint
(fakeredis with the real Lua library)."""

from __future__ import annotations

import threading
import time

from engine import executions as X
from engine.promoter import DueTimers, Promoter
from engine.router import Command
from keys import new_id
from tests.conftest import fake_client
from tests.waiting import wait_until

P = 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_timer_heap_fires_each_partition_when_it_is_due_and_in_due_order():
    clock = FakeClock()
    timers = DueTimers(clock)
    timers.schedule(5, 2000)
    timers.schedule(3, 0)
    timers.schedule(4, 1000)
    assert timers.wait_for_due(until=clock()) == {3}
    clock.now += 1.0
    assert timers.wait_for_due(until=clock()) == {4}
    clock.now += 5.0
    assert timers.wait_for_due(until=clock()) == {5}
    assert len(timers) == 0


def test_a_partition_scheduled_twice_fires_once_when_both_are_due():
    clock = FakeClock()
    timers = DueTimers(clock)
    timers.schedule(3, 0)
    timers.schedule(3, 0)
    assert timers.wait_for_due(until=clock()) == {3}
    assert len(timers) == 0


def test_nothing_fires_before_its_time():
    clock = FakeClock()
    timers = DueTimers(clock)
    timers.schedule(3, 500)
    assert timers.wait_for_due(until=clock()) == set()
    assert len(timers) == 1


def test_scheduling_wakes_a_waiting_promoter_and_stop_releases_it():
    timers = DueTimers(FakeClock())  # a clock that never moves: only a notify ends a wait
    got = []

    def wait_twice() -> None:
        got.append(timers.wait_for_due(until=float("inf"), poll_s=60))
        got.append(timers.wait_for_due(until=float("inf"), poll_s=60))

    waiter = threading.Thread(target=wait_twice)
    waiter.start()
    timers.schedule(7, 0)
    wait_until(lambda: len(got) == 1, what="the first wait to return")
    timers.stop()
    waiter.join(timeout=30)
    assert got == [{7}, set()]


def delayed(client, lane="default", partition=P):
    eid = new_id("e", partition)
    client.run(X.submit(client.keys, X.SubmitSpec(eid, "t", lane, "{}", delay_ms=1), partition))
    return eid


def state(client, eid, partition=P):
    key = client.keys.execution(partition, eid)
    return client.run(Command(("HGET", key, "state"), key))


def hinted(client, lane, partition=P):
    key = client.keys.hint(lane, client.keys.hint_index(partition))
    return [int(p) for p in client.run(Command(("LRANGE", key, 0, -1), key))]


def test_promote_makes_due_work_ready_and_hints_the_lanes_that_got_it(namespace):
    client = fake_client(namespace)
    eid = delayed(client, lane="images")
    time.sleep(0.01)  # the 1 ms delay passes
    Promoter(client).promote([P])
    assert state(client, eid) == "ready"
    assert hinted(client, "images") == [P]
    assert hinted(client, "default") == []


def test_a_partition_with_more_due_work_than_one_call_takes_is_scheduled_again_at_once(namespace):
    client = fake_client(namespace)
    ids = [delayed(client) for _ in range(3)]
    time.sleep(0.01)
    promoter = Promoter(client, batch=2)
    promoter.promote([P])
    assert sorted(state(client, eid) for eid in ids) == ["delayed", "ready", "ready"]
    assert promoter.timers.wait_for_due(until=promoter.timers.clock()) == {P}
    promoter.promote([P])
    assert [state(client, eid) for eid in ids] == ["ready"] * 3
    assert len(promoter.timers) == 0


def run_in_thread(promoter: Promoter) -> tuple[threading.Thread, threading.Event]:
    stopped = threading.Event()
    thread = threading.Thread(target=promoter.run, args=(stopped,))
    thread.start()
    return thread, stopped


def test_a_scheduled_partition_is_promoted_when_due_with_no_periodic_pass(namespace):
    client = fake_client(namespace)
    eid = delayed(client)
    time.sleep(0.01)
    promoter = Promoter(client, interval_s=None)
    thread, stopped = run_in_thread(promoter)
    try:
        promoter.schedule(P, 0)
        wait_until(lambda: state(client, eid) == "ready", what="the scheduled promotion")
    finally:
        stopped.set()
        promoter.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_the_periodic_pass_promotes_every_partition(namespace):
    client = fake_client(namespace)
    ids = [(delayed(client, partition=p), p) for p in (0, 9, 15)]
    promoter = Promoter(client, interval_s=0.05)
    thread, stopped = run_in_thread(promoter)
    try:
        wait_until(lambda: all(state(client, eid, p) == "ready" for eid, p in ids), what="the passes")
    finally:
        stopped.set()
        promoter.stop()
        thread.join(timeout=30)
    assert all(p in hinted(client, "default", p) for _, p in ids)
