"""Checks on values that cross the public API, run before anything is sent.

A value the server could not receive (a lone surrogate, ``None`` where text
belongs) or would store uselessly (an empty task name, a 2 MB flow name) is
refused here with a ContractError naming the argument, so it never reaches
the wire, where redis-py would raise its own errors, nor the keyspace.
"""

from __future__ import annotations

from typing import Any

from engine.errors import ContractError

MAX_TASK_NAME_BYTES = 256  # lua/20_executions.lua refuses longer task names too
MAX_FLOW_NAME_CHARS = 200
MAX_STEP_ID_CHARS = 200  # lua/40_flows.lua: step ids of 1..200 bytes
MAX_REASON_BYTES = 4096
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 100
MAX_LABEL_VALUE_CHARS = 1000


def text(value: Any, what: str, *, max_chars: int | None = None, max_bytes: int | None = None,
         allow_empty: bool = False) -> str:
    """A string that is valid UTF-8 and within its limits; ContractError naming ``what`` otherwise."""
    if not isinstance(value, str):
        raise ContractError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ContractError(f"{what} must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise ContractError(f"{what} is {len(value)} characters long, over the limit of {max_chars}")
    try:
        size = len(value.encode())
    except UnicodeEncodeError as e:
        raise ContractError(f"{what} is not valid text: {e.reason} at position {e.start}") from e
    if max_bytes is not None and size > max_bytes:
        raise ContractError(f"{what} is {size} bytes in UTF-8, over the limit of {max_bytes}")
    return value


def task_name(value: Any) -> str:
    return text(value, "task name", max_bytes=MAX_TASK_NAME_BYTES)


def flow_name(value: Any) -> str:
    return text(value, "flow name", max_chars=MAX_FLOW_NAME_CHARS)


def step_id(value: Any) -> str:
    return text(value, "step id", max_chars=MAX_STEP_ID_CHARS, max_bytes=MAX_STEP_ID_CHARS)


def reason(value: Any) -> str:
    return text(value, "cancel reason", max_bytes=MAX_REASON_BYTES, allow_empty=True)


def labels(value: Any) -> dict[str, str]:
    """Flow labels: a dict of at most MAX_LABELS short string keys and string values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContractError(f"flow labels must be a dict of str to str, got {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise ContractError(f"a flow has at most {MAX_LABELS} labels, got {len(value)}")
    for key, item in value.items():
        text(key, "a label name", max_chars=MAX_LABEL_KEY_CHARS)
        text(item, f"label {key!r}", max_chars=MAX_LABEL_VALUE_CHARS, allow_empty=True)
    return dict(value)
