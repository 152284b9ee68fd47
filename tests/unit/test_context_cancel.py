"""A handler's cancellation: the flag, and the Event made only for a handler that waits on it."""

from __future__ import annotations

import threading

from engine.context import TaskContext


def _context() -> TaskContext:
    return TaskContext("e_0000_x", 1, 0, None)


def test_a_context_canceled_before_anyone_waited_answers_wait_canceled_at_once() -> None:
    context = _context()
    context._cancel("lease lost")
    assert context.canceled and context.cancel_reason == "lease lost"
    assert context.wait_canceled(0) is True


def test_a_handler_waiting_for_cancellation_wakes_when_it_comes() -> None:
    context = _context()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(context.wait_canceled(30)))
    waiter.start()
    while context._canceled is None:  # the waiter made its Event
        threading.Event().wait(0.001)
    context._cancel("canceled")
    waiter.join(30)
    assert woke == [True]


def test_a_context_not_canceled_times_out_waiting_and_keeps_its_first_reason() -> None:
    context = _context()
    assert context.wait_canceled(0.001) is False and not context.canceled
    context._cancel("canceled")
    context._cancel("worker shutting down")
    assert context.cancel_reason == "canceled" and context.wait_canceled(0)
