"""The workers' periodic promotion pass runs once per interval per namespace, whatever the
worker count, and a dead holder of the pass lock does not stop promotion (real server)."""

from __future__ import annotations

import threading

import pytest
import redis

from engine import executions as X
from engine.client import Client
from engine.promoter import DueTimers, Promoter
from engine.router import Command
from keys import new_id
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def calls(raw: redis.Redis, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def start(promoter: Promoter) -> tuple[threading.Thread, threading.Event]:
    stopped = threading.Event()
    thread = threading.Thread(target=promoter.run, args=(stopped,))
    thread.start()
    return thread, stopped


def stop(running: list[tuple[Promoter, threading.Thread, threading.Event]]) -> None:
    for promoter, thread, stopped in running:
        stopped.set()
        promoter.stop()
        thread.join(timeout=30)
    assert not any(thread.is_alive() for _, thread, _ in running)


def test_four_workers_run_one_promotion_pass_per_interval_between_them(standalone_server, namespace):
    client = Client(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    raw = redis.Redis.from_url(standalone_server.url)
    clock = FakeClock()  # every promoter's pass falls due when the test moves this clock
    running = []
    try:
        for _ in range(4):
            promoter = Promoter(client, interval_s=30, poll_s=0.01, timers=DueTimers(clock))
            running.append((promoter, *start(promoter)))
        fcalls, sets = calls(raw, "fcall"), calls(raw, "set")
        clock.now += 100  # all four passes due at once
        wait_until(lambda: calls(raw, "set") - sets >= 4, what="four requests for the pass lock")
        wait_until(lambda: calls(raw, "fcall") - fcalls >= TEST_PARTITIONS, what="the winner's pass")
        clock.now += 100  # due again, but the lock (21 s on the server's clock) is still held
        wait_until(lambda: calls(raw, "set") - sets >= 8, what="four more requests for the lock")
    finally:
        stop(running)
    assert calls(raw, "fcall") - fcalls == TEST_PARTITIONS  # one exec_promote per partition, once
    client.close()


def test_promotion_goes_on_when_the_holder_of_the_pass_lock_died(standalone_server, namespace):
    client = Client(standalone_server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    assert Promoter(client, interval_s=1.0).won_pass()  # took a 700 ms lock, then "died"
    eid = new_id("e", 3)
    client.run(X.submit(client.keys, X.SubmitSpec(eid, "t", "default", "{}", delay_ms=1), 3))
    survivor = Promoter(client, interval_s=0.1)
    assert not survivor.won_pass()
    thread, stopped = start(survivor)
    key = client.keys.execution(3, eid)
    try:
        wait_until(lambda: client.run(Command(("HGET", key, "state"), key)) == "ready",
                   what="the survivor's pass after the dead holder's lock expired")
    finally:
        stop([(survivor, thread, stopped)])
    client.close()
