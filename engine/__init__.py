"""flowslot's engine: connect, register tasks, submit, run workers.

    from engine import App, Retry
    app = App("redis://127.0.0.1:7000")
    @app.task(retry=Retry(max_attempts=5))
    def resize(path: str, width: int) -> str: ...
    app.submit(resize, "a.png", 640, lane="images", priority=5).result(timeout=10)
"""

from engine.app import App, TaskDef
from engine.client import Client, connect
from engine.context import CancelRequested, TaskContext, current_task
from engine.errors import (
    AlreadyExists,
    BadArguments,
    Canceled,
    ClusterUnavailable,
    ConfigMismatch,
    ContractError,
    EngineError,
    FlowCanceled,
    InvalidState,
    LibraryError,
    NotFound,
    NotSerializable,
    PayloadTooLarge,
    ResultTimeout,
    StaleLease,
    StepCanceled,
    StepFailed,
    StepSkipped,
    TaskCanceled,
    TaskFailed,
    TransitionRejected,
)
from engine.flowrun import FlowRun
from engine.flows import FlowBuilder, Step
from engine.handle import Handle
from engine.policy import PermanentError, Retry
from engine.signals import BadToken
from engine.states import ExecutionState, FlowState, SliceState, WantState
from engine.wants import MissingDependencies

__all__ = [
    "AlreadyExists", "App", "BadArguments", "BadToken", "CancelRequested", "Canceled", "Client",
    "ClusterUnavailable", "ConfigMismatch", "ContractError", "EngineError", "ExecutionState",
    "FlowState", "Handle", "InvalidState", "LibraryError", "NotFound", "NotSerializable",
    "PayloadTooLarge", "PermanentError", "ResultTimeout", "Retry", "StaleLease", "TaskCanceled",
    "TaskContext", "TaskDef", "TaskFailed", "TransitionRejected", "connect", "current_task",
    "FlowBuilder", "FlowCanceled", "FlowRun", "Step", "StepCanceled", "StepFailed", "StepSkipped",
    "MissingDependencies", "SliceState", "WantState",
]
