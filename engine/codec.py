"""JSON encoding of payloads and results, with a size limit checked before any write."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.errors import NotSerializable, PayloadTooLarge

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


def encode(value: Any, *, limit_bytes: int, what: str,
           default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON for ``value``; refuse non-JSON values and oversized results.

    ``default`` encodes objects JSON does not know (it raises TypeError for the rest).
    """
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=default)
    except (TypeError, ValueError) as e:
        raise NotSerializable(f"{what} is not JSON-serializable: {e}") from e
    except RecursionError as e:
        raise NotSerializable(f"{what} is not JSON-serializable: nested too deeply") from e
    size = len(text.encode())
    if size > limit_bytes:
        raise PayloadTooLarge(f"{what} is {size} bytes, over the limit of {limit_bytes} bytes")
    return text


def decode(text: str | None) -> Any:
    """Inverse of ``encode``; an empty or missing value decodes to None."""
    if not text:
        return None
    return json.loads(text)
