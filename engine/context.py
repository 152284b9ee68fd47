"""The running handler's view of its execution: id, attempt, cancellation.

Handlers reach it with ``engine.current_task()`` (a context variable, so it
works in worker threads and in asyncio tasks alike). Cancellation is
cooperative: the renewer sets ``canceled`` when the cluster says the
execution was canceled or the lease was lost; long handlers should check it.
An ``async def`` handler is also cancelled through its asyncio task.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from engine import signals
from engine.errors import ContractError, EngineError
from engine.flows import add_dynamic_step
from engine.refs import Ref


class CancelRequested(EngineError):
    """Raised by ``TaskContext.check()`` once the execution was canceled."""


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
        self._canceled = threading.Event()
        self._task: asyncio.Task[Any] | None = None

    @property
    def canceled(self) -> bool:
        return self._canceled.is_set()

    def check(self) -> None:
        """Raise CancelRequested if the execution was canceled (a cooperative checkpoint)."""
        if self.canceled:
            raise CancelRequested(f"execution {self.execution_id}: {self.cancel_reason}")

    def wait_canceled(self, timeout_s: float | None = None) -> bool:
        """Sleep until canceled or ``timeout_s``; True when canceled."""
        return self._canceled.wait(timeout_s)

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
    def token(self, step: str, *, expires_in_s: float | None = None) -> str:
        """A signed token for wait step ``step`` of this handler's flow (as ``FlowRun.token``),
        to hand to whoever completes it with ``app.signal(token, payload)``."""
        if not self.flow_id:
            raise ContractError(f"execution {self.execution_id} is not a flow step")
        return signals.issue(self.worker.app.client, self.flow_id, step, expires_in_s=expires_in_s)

    def _cancel(self, reason: str) -> None:
        if self._canceled.is_set():
            return
        self.cancel_reason = reason
        self._canceled.set()
        task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("flowslot_task")


def current_task() -> TaskContext:
    """The context of the execution this handler runs for."""
    try:
        return _current.get()
    except LookupError as e:
        raise EngineError("current_task() called outside a flowslot handler") from e
