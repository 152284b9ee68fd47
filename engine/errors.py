"""One exception tree for flowslot, and the map from Lua error codes to it.

Every refusal a Lua function can return starts with an upper-case code word
(``STALE_LEASE lease 3 is not the current lease 4``); ``error_from_reply``
turns that reply into exactly one exception class, so callers catch meaning,
not strings.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error flowslot raises on purpose."""


class ContractError(EngineError, ValueError):
    """The caller passed something flowslot refuses: a bad id, lane, payload, policy."""


class PayloadTooLarge(ContractError):
    """A payload or result is larger than the configured limit."""


class NotSerializable(ContractError):
    """A value cannot be encoded as JSON."""


class ClusterUnavailable(EngineError):
    """No node answered, or the cluster has no usable slot map."""


class ConfigMismatch(EngineError):
    """The deployment's stored configuration (partition count) differs from ours."""


class LibraryError(EngineError):
    """The Lua function library could not be loaded or is the wrong version."""


class TransitionRejected(EngineError):
    """A Lua function refused a transition; nothing was written (but for ``InternalError``, a
    flowslot bug, which may come after writes: the index check repairs what they leave)."""

    code = "REJECTED"


class BadArguments(TransitionRejected):
    """The function received arguments it cannot use (a bug in a wrapper)."""

    code = "BAD_ARGS"


class NotFound(TransitionRejected):
    """The execution (or flow) does not exist."""

    code = "NOT_FOUND"


class InvalidState(TransitionRejected):
    """The entity is not in a state that allows this transition."""

    code = "INVALID_STATE"


class StaleLease(TransitionRejected):
    """The lease token is not the current one: another worker owns the execution now."""

    code = "STALE_LEASE"


class AlreadyExists(TransitionRejected):
    """An entity with this id exists and differs from the one being created."""

    code = "ALREADY_EXISTS"


class Canceled(TransitionRejected):
    """The execution was canceled while leased; its late result is not recorded."""

    code = "CANCELED"


class TaskFailed(EngineError):
    """A task's execution ended in ``failed`` (or ``expired``)."""

    def __init__(self, execution_id: str, kind: str, message: str, state: str = "failed"):
        super().__init__(f"execution {execution_id} {state}: {kind}: {message}")
        self.execution_id = execution_id
        self.kind = kind
        self.message = message
        self.state = state


class TaskCanceled(EngineError):
    """A task's execution was canceled."""

    def __init__(self, execution_id: str):
        super().__init__(f"execution {execution_id} was canceled")
        self.execution_id = execution_id


class ResultTimeout(EngineError, TimeoutError):
    """The execution did not reach a terminal state within the timeout."""


class InternalError(TransitionRejected):
    """A function attempted a transition its state table forbids: a bug in flowslot."""

    code = "BUG"


REJECTION_CLASSES: dict[str, type[TransitionRejected]] = {
    cls.code: cls
    for cls in (BadArguments, NotFound, InvalidState, StaleLease, AlreadyExists, Canceled,
                InternalError)
}


def error_from_reply(message: str) -> EngineError | None:
    """Map a Lua error reply to its exception, or None when it is not one of ours."""
    code, _, detail = message.partition(" ")
    cls = REJECTION_CLASSES.get(code)
    if cls is None:
        return None
    return cls(detail or code)


class StepFailed(TaskFailed):
    """A flow step ended in ``failed`` or ``expired``."""


class StepSkipped(EngineError):
    """A flow step was skipped because a required upstream step did not succeed."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"step {step} was skipped: {reason}")
        self.step = step
        self.reason = reason


class StepCanceled(TaskCanceled):
    """A flow step was canceled."""


class FlowCanceled(EngineError):
    """The flow was canceled before the requested step finished."""

    def __init__(self, flow_id: str):
        super().__init__(f"flow {flow_id} was canceled")
        self.flow_id = flow_id
