"""Handler threads: at most ``size`` threads, each reused, a task per thread at a time, and a stop."""

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
