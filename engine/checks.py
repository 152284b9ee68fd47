"""Checks on values that cross the public API, run before anything is sent.

A value the server could not receive (a lone surrogate, ``None`` where text
belongs) or would store uselessly (an empty task name, a 2 MB flow name) is
refused here with a ContractError naming the argument, so it never reaches
the wire, where redis-py would raise its own errors, nor the keyspace.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from engine.errors import ContractError
from keys import InvalidName, check_lane

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


MAX_DELAY_S = 1e10  # lua/20_executions.lua accepts delay_ms and deadline_in_ms up to 1e13
MIN_DEADLINE_S = 0.001  # deadlines are kept in whole milliseconds; less would round to "none"
MAX_TIMEOUT_S = 1e7  # result()/wait() timeouts: about 115 days; None waits for ever


def number(value: Any, what: str, *, minimum: float, maximum: float) -> float:
    """A finite int or float in [minimum, maximum] (never a bool, NaN or infinity)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ContractError(f"{what} must be a number, got {type(value).__name__}")
    # Compare ints as ints: a huge int would overflow a float conversion.
    if (isinstance(value, float) and not math.isfinite(value)) or not minimum <= value <= maximum:
        raise ContractError(f"{what} must be a finite number in {minimum:g}..{maximum:g}, got {value!r}")
    return value


def seconds_to_ms(value: Any, what: str, *, minimum: float = 0.0) -> int:
    """Optional seconds (None: not set, 0 ms) as whole milliseconds."""
    if value is None:
        return 0
    return int(number(value, f"{what} (seconds)", minimum=minimum, maximum=MAX_DELAY_S) * 1000)


def timeout(value: Any) -> float | None:
    """A wait's timeout in seconds; None waits for ever."""
    if value is None:
        return None
    return number(value, "timeout (seconds; None waits for ever)", minimum=0.0, maximum=MAX_TIMEOUT_S)


def integer(value: Any, what: str, *, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ContractError(f"{what} must be an integer in {minimum}..{maximum}, got {value!r}")
    return value


def priority(value: Any) -> int:
    return integer(value, "priority (higher runs first)", minimum=0, maximum=255)


def lane(value: Any) -> str:
    try:
        return check_lane(value)
    except InvalidName as e:
        raise ContractError(str(e)) from e


def lanes(value: Any) -> list[str]:
    """A non-empty list of lanes (a single string is refused: it would be read letter by letter)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ContractError(f"lanes must be a list of lane names, got {value!r}")
    out = [lane(item) for item in value]
    if not out:
        raise ContractError("lanes must name at least one lane")
    return out


def arguments(value: Any, what: str) -> Sequence[Any]:
    """Positional arguments: a tuple or list."""
    if not isinstance(value, (tuple, list)):
        raise ContractError(f"{what} must be a tuple or list of arguments, got {type(value).__name__}")
    return value


def keyword_arguments(value: Any) -> dict[str, Any]:
    """Keyword arguments: None or a dict with string keys."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContractError(f"kwargs must be a dict of keyword arguments, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ContractError(f"kwargs keys must be strings, got {key!r}")
    return value


def dependencies(value: Any, what: str) -> list[Any]:
    """``after`` / ``after_any``: a list (or other iterable) of steps or step ids, never one string."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ContractError(f"{what} must be a list of steps or step ids, got {value!r}")
    return list(value)
