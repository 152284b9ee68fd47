"""The running handler's view of its execution: id, attempt, cancellation, signals.

Handlers reach it with ``engine.current_task()`` (a context variable, so it
works in worker threads and in asyncio tasks alike). Cancellation is
cooperative: the renewer sets ``canceled`` when the cluster says the
execution was canceled or the lease was lost; long handlers should check it.
An ``async def`` handler is also cancelled through its asyncio task.

``wait_for(name)`` suspends a handler until a signal of that name comes
(``app.signal(current_task().token(name), payload)``): the attempt ends, no
worker thread waits, and the handler runs again from the top once the signal
came; ``wait_for`` then returns its payload. See ``TaskContext.wait_for``.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from engine import checks, signals
from engine.codec import decode
from engine.errors import ContractError, EngineError
from engine.flowcalls import flow_partition
from engine.flows import add_dynamic_step
from engine.refs import Ref
from engine.router import Command
from keys import partition_of

MAX_WAIT_TIMEOUT_S = 10 * 365 * 24 * 3600.0
# Guards every context's cancellation flag and its Event. The Event is made only when a handler
# waits for cancellation (``wait_canceled``): most never do, and an Event per execution was a
# Condition and two locks built on the claim loop's thread for each.
_EVENT_LOCK = threading.Lock()


class CancelRequested(EngineError):
    """Raised by ``TaskContext.check()`` once the execution was canceled."""


class Suspend(BaseException):  # noqa: N818 - control flow, not an error
    """Raised by ``wait_for`` to end the attempt; the worker records the suspension
    (``exec_suspend``). A BaseException, like asyncio's CancelledError, so that a handler's
    ``except Exception`` does not swallow it."""

    def __init__(self, name: str, timeout_ms: int) -> None:
        super().__init__(f"waiting for signal {name!r}")
        self.name = name
        self.timeout_ms = timeout_ms


class TaskContext:
    def __init__(self, execution_id: str, attempt: int, deadline_ms: int, worker: Any,
                 flow_id: str = "", step_id: str = "") -> None:
        self.execution_id = execution_id
        self.attempt = attempt
        self.deadline_ms = deadline_ms
        self.worker = worker
        self.flow_id = flow_id
        self.step_id = step_id
        self.cancel_reason = ""
        self._is_canceled = False
        self._canceled: threading.Event | None = None  # made by wait_canceled, the first to need it
        self._task: asyncio.Task[Any] | None = None
        self._signals: dict[str, Any] | None = None

    @property
    def canceled(self) -> bool:
        return self._is_canceled

    def check(self) -> None:
        """Raise CancelRequested if the execution was canceled (a cooperative checkpoint)."""
        if self.canceled:
            raise CancelRequested(f"execution {self.execution_id}: {self.cancel_reason}")

    def wait_canceled(self, timeout_s: float | None = None) -> bool:
        """Sleep until canceled or ``timeout_s``; True when canceled."""
        with _EVENT_LOCK:
            if self._canceled is None:
                self._canceled = threading.Event()
                if self._is_canceled:
                    self._canceled.set()
            event = self._canceled
        return event.wait(timeout_s)

    # -- dynamic steps ---------------------------------------------------
    def ref(self, step: str) -> Any:
        """Required data from another step of this flow, for ``add_step`` arguments."""
        return Ref(None, step, "ref")

    def ref_or_default(self, step: str, default: Any) -> Any:
        """Optional data from another step of this flow, or ``default`` if it does not succeed."""
        return Ref(None, step, "ref_or_default", default)

    def add_step(self, step_id: str, task: Any, *args: Any, kwargs: dict[str, Any] | None = None,
                 after: tuple[str, ...] = (), after_any: tuple[str, ...] = (), **options: Any) -> None:
        """Add a step to this handler's flow; it runs after this step (``flow_submit``).

        Re-adding the same step id with the same task (a redelivery) is a no-op;
        refused with InvalidState once the flow is canceled.
        """
        if not self.flow_id:
            raise ContractError(f"execution {self.execution_id} is not a flow step")
        add_dynamic_step(self.worker.app, self.flow_id, self.execution_id, self.step_id, step_id,
                         task, args, kwargs, after, after_any, options)

    # -- signals ---------------------------------------------------------
    def token(self, name: str, *, expires_in_s: float | None = None) -> str:
        """A signed token to hand to whoever answers with ``app.signal(token, payload)``.

        In a flow step, when the flow has a wait step ``name``, the token is for that wait
        step (as ``FlowRun.token``). Otherwise it is for this execution's own wait ``name``:
        the signal reaches ``wait_for(name)``.
        """
        client = self.worker.app.client
        if self.flow_id and _is_wait_step(client, self.flow_id, name):
            return signals.issue(client, self.flow_id, name, expires_in_s=expires_in_s)
        return signals.issue_for_execution(client, self.execution_id, name, expires_in_s=expires_in_s)

    @property
    def signals(self) -> dict[str, Any]:
        """The payloads of the signals delivered to this execution so far, by wait name (read
        once per attempt)."""
        if self._signals is None:
            keys = self.worker.app.client.keys
            key = keys.signals(partition_of(self.execution_id, keys.partitions), self.execution_id)
            raw = self.worker.app.client.run(Command(("HGETALL", key), key)) or {}
            self._signals = {_text(k): decode(_text(v)) for k, v in raw.items()}
        return self._signals

    def wait_for(self, name: str, timeout_s: float | None = None) -> Any:
        """The payload of signal ``name`` to this execution; suspends the handler until it comes.

        Replay model: when the signal has not come yet, ``wait_for`` ends this attempt (the
        code after it does not run), the worker records the execution as ``waiting`` and its
        thread is free; the attempt does not count. When the signal comes, the execution is
        ready again and the handler runs again from the top, and this time ``wait_for``
        returns the stored payload at once. So the code before ``wait_for`` runs once more
        per wait: it must be safe to repeat. A signal that came before the wait is kept and
        returned at once. With ``timeout_s``, a wait with no signal in time becomes
        ``expired``. Signal with ``app.signal(current_task().token(name), payload)``.
        """
        checks.step_id(name)
        timeout_ms = 0
        if timeout_s is not None:
            seconds = checks.number(timeout_s, "timeout_s", minimum=0.001, maximum=MAX_WAIT_TIMEOUT_S)
            timeout_ms = max(1, int(seconds * 1000))
        if name in self.signals:
            return self.signals[name]
        raise Suspend(name, timeout_ms)

    def _cancel(self, reason: str) -> None:
        with _EVENT_LOCK:
            if self._is_canceled:
                return
            self.cancel_reason = reason
            self._is_canceled = True
            event = self._canceled
        if event is not None:
            event.set()
        task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_wait_step(client: Any, flow_id: str, step: str) -> bool:
    """Whether the flow has a wait step of that id (so ``token`` names it)."""
    partition = flow_partition(client.keys, flow_id)
    steps = client.keys.flow_steps(partition, flow_id)
    eid = client.run(Command(("HGET", steps, step), steps))
    if not eid:
        return False
    key = client.keys.execution(partition, _text(eid))
    return bool(client.run(Command(("HGET", key, "wait_event"), key)))


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("flowslot_task")


def current_task() -> TaskContext:
    """The context of the execution this handler runs for."""
    try:
        return _current.get()
    except LookupError as e:
        raise EngineError("current_task() called outside a flowslot handler") from e
