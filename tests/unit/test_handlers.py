"""Handler threads: at most ``size`` threads, each reused, a task per thread at a time, batches
run back to back on one thread and spread when due, and a stop."""

from __future__ import annotations

import threading

from engine.handlers import HandlerThreads


def test_size_tasks_run_at_once_each_on_its_own_thread():
    pool = HandlerThreads(3, "t")
    gate, started, names = threading.Event(), threading.Semaphore(0), set()

    def task() -> None:
        names.add(threading.current_thread().name)
        started.release()
        gate.wait(10)

    for _ in range(3):
        pool.submit(task)
    for _ in range(3):
        assert started.acquire(timeout=10)  # all three run together: none waits behind another
    gate.set()
    pool.shutdown(wait=True)
    assert names == {"t-0", "t-1", "t-2"}


def test_an_idle_thread_takes_the_next_task_instead_of_a_new_thread():
    pool = HandlerThreads(8, "t")
    done = threading.Semaphore(0)
    names: list[str] = []
    for _ in range(20):
        pool.submit(lambda: (names.append(threading.current_thread().name), done.release()))
        assert done.acquire(timeout=10)
    pool.shutdown(wait=True)
    assert set(names) == {"t-0"}


def test_a_failing_task_leaves_its_thread_running_the_next_one():
    pool = HandlerThreads(1, "t")
    ran = threading.Event()
    pool.submit(lambda: 1 / 0)
    pool.submit(ran.set)
    assert ran.wait(10)
    pool.shutdown(wait=True)


def test_shutdown_with_cancel_drops_queued_tasks_and_refuses_new_ones():
    pool = HandlerThreads(1, "t")
    gate, ran = threading.Event(), []
    pool.submit(gate.wait, 10)
    pool.submit(ran.append, "queued")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    pool.shutdown(wait=True)
    assert ran == []
    try:
        pool.submit(ran.append, "late")
    except RuntimeError:
        pass
    else:
        raise AssertionError("a shut-down pool took a task")


def test_a_batch_runs_its_tasks_in_order_back_to_back_on_one_thread():
    pool = HandlerThreads(8, "t", spread_after_s=60)
    done = threading.Semaphore(0)
    ran: list[tuple[int, str]] = []

    def task(n: int) -> None:
        ran.append((n, threading.current_thread().name))
        done.release()

    pool.submit_batch(task, [(n,) for n in range(10)])
    for _ in range(10):
        assert done.acquire(timeout=10)
    pool.shutdown(wait=True)
    assert [n for n, _ in ran] == list(range(10))
    assert {name for _, name in ran} == {"t-0"}


def test_the_tasks_a_blocked_batch_has_not_started_go_to_other_threads_once_due():
    pool = HandlerThreads(4, "t", spread_after_s=0.01)
    gate, first_started, others = threading.Event(), threading.Event(), threading.Semaphore(0)
    names: set[str] = set()

    def task(n: int) -> None:
        if n == 0:
            first_started.set()
            gate.wait(10)
            return
        names.add(threading.current_thread().name)
        others.release()

    pool.submit_batch(task, [(n,) for n in range(4)])
    assert first_started.wait(10)
    due = pool.spread_due()
    while due is not None:  # not due yet: wait as the claim loop would
        threading.Event().wait(due)
        due = pool.spread_due()
    for _ in range(3):
        assert others.acquire(timeout=10)  # while the first task still blocks
    assert not gate.is_set() and names and "t-0" not in names
    gate.set()
    pool.shutdown(wait=True)


def test_spread_due_says_how_long_until_the_next_batch_is_due_and_none_without_batches():
    pool = HandlerThreads(2, "t", spread_after_s=60)
    assert pool.spread_due() is None
    gate = threading.Event()
    pool.submit_batch(lambda n: gate.wait(10), [(1,), (2,)])
    due = pool.spread_due()
    assert due is not None and 50 < due <= 60
    gate.set()
    pool.shutdown(wait=True)
    assert pool.spread_due() is None


def test_a_failing_task_of_a_batch_leaves_the_batch_running_the_next_ones():
    pool = HandlerThreads(1, "t", spread_after_s=60)
    ran: list[int] = []

    def task(n: int) -> None:
        if n == 1:
            raise ValueError("boom")
        ran.append(n)

    pool.submit_batch(task, [(0,), (1,), (2,)])
    pool.shutdown(wait=True)
    assert ran == [0, 2]


def test_shutdown_with_cancel_drops_the_tasks_a_batch_has_not_started():
    pool = HandlerThreads(1, "t", spread_after_s=60)
    gate, started, ran = threading.Event(), threading.Event(), []

    def task(n: int) -> None:
        if n == 0:
            started.set()
            gate.wait(10)
        ran.append(n)

    pool.submit_batch(task, [(0,), (1,), (2,)])
    assert started.wait(10)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    pool.shutdown(wait=True)
    assert ran == [0]


def test_a_batch_task_knows_whether_more_of_its_batch_follows_it_on_its_thread():
    pool = HandlerThreads(2, "t", spread_after_s=60)
    in_batch: list[bool] = []
    pool.submit_batch(lambda n: in_batch.append(pool.batch_continues()), [(0,), (1,), (2,)])
    pool.shutdown(wait=True)
    assert in_batch == [True, True, False]
    alone: list[bool] = []
    pool = HandlerThreads(2, "t")
    pool.submit(lambda: alone.append(pool.batch_continues()))
    pool.shutdown(wait=True)
    assert alone == [False] and not pool.batch_continues()
