"""Reading a JSON request body within a size limit.

The limit is checked twice: against ``Content-Length`` before anything is
read, and against the bytes actually read (a chunked body has no length), so
an oversized body is refused without being held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from engine.http.errors import HttpError


def is_json(content_type: str) -> bool:
    """``application/json`` (any parameters) or an ``application/*+json`` type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The raw body; 413 past ``limit_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, f"Content-Length must be a number of bytes, got {declared!r}")
        if int(declared) > limit_bytes:
            raise HttpError(413, f"the body is {declared} bytes, over the limit of {limit_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise HttpError(413, f"the body is over the limit of {limit_bytes} bytes")
    return bytes(body)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (``array``, not ``list``)."""
    if isinstance(value, bool):
        return "boolean"
    names = {list: "array", str: "string", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, content_type: str) -> Any:
    """The decoded body: 415 when it is not declared JSON, 400 when it does not parse."""
    if not is_json(content_type):
        raise HttpError(415, f"the body must be application/json, got {content_type or 'no Content-Type'}")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HttpError(400, f"the body is not valid JSON: {e}") from e


async def read_object(request: Request, limit_bytes: int, allowed: Iterable[str], *,
                      empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object with no fields but ``allowed`` (an empty body is ``{}`` when
    ``empty_ok``); a misspelt field is refused rather than silently ignored."""
    body = await read_body(request, limit_bytes)
    if not body and empty_ok:
        return {}
    value = parse_json(body, request.headers.get("content-type", ""))
    if not isinstance(value, dict):
        raise HttpError(400, f"the body must be a JSON object, got {json_type(value)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return value
