"""The wake queue: each (partition, lane) queued once, served oldest first, released by stop."""

from __future__ import annotations

import threading

from engine.wakeups import WakeQueue


def drain(queue: WakeQueue) -> list[tuple[int, str]]:
    out = []
    while len(queue):
        target = queue.next()
        assert target is not None
        out.append(target)
    return out


def test_a_target_asked_for_twice_is_queued_once():
    queue = WakeQueue()
    queue.wake(3, "default")
    queue.wake(3, "default")
    queue.wake(3, "images")
    assert drain(queue) == [(3, "default"), (3, "images")]


def test_targets_are_served_oldest_first():
    queue = WakeQueue()
    for partition in (7, 2, 9, 2, 7, 0):
        queue.wake(partition, "default")
    assert drain(queue) == [(7, "default"), (2, "default"), (9, "default"), (0, "default")]


def test_a_served_target_can_be_queued_again():
    queue = WakeQueue()
    queue.wake(1, "a")
    assert queue.next() == (1, "a")
    queue.wake(1, "a")
    assert queue.next() == (1, "a")


def test_a_waiting_consumer_gets_the_target_woken_from_another_thread():
    queue = WakeQueue(poll_s=60)
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.next()))
    consumer.start()
    queue.wake(4, "default")
    consumer.join(timeout=30)
    assert got == [(4, "default")]


def test_stop_releases_a_waiting_consumer_with_none():
    queue = WakeQueue(poll_s=60)  # without stop's notify the consumer would sleep a minute
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.next()))
    consumer.start()
    queue.stop()
    consumer.join(timeout=30)
    assert got == [None]


def test_a_stopped_queue_serves_nothing_more():
    queue = WakeQueue()
    queue.wake(1, "a")
    queue.stop()
    assert queue.next() is None


def test_next_with_a_timeout_returns_none_when_nothing_came_and_the_target_when_one_did():
    q = WakeQueue(poll_s=60)
    assert q.next(timeout=0.01) is None
    q.wake(3, "default")
    assert q.next(timeout=0.01) == (3, "default")
