"""Bearer keys: events and reads need ``Authorization: Bearer <key>``; signals carry their own token.

Keys are compared with ``hmac.compare_digest`` against every configured key
(no early exit), so the time a refusal takes tells nothing about the keys.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from starlette.requests import Request

from engine.errors import ContractError
from engine.http.errors import HttpError

KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,4096}")  # visible ASCII but ',' (FLOWSLOT_API_KEYS splits on it)
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def api_keys(keys: Iterable[str]) -> tuple[bytes, ...]:
    """Check the configured keys; ContractError for one that could not be sent in a header."""
    checked = []
    for key in keys:
        if not isinstance(key, str) or not KEY.fullmatch(key):
            # The key itself is never echoed: it is a secret, even when malformed.
            raise ContractError("an API key must be 1..4096 visible ASCII characters other than ','")
        checked.append(key.encode("ascii"))
    return tuple(checked)


def keys_from_env(value: str | None) -> list[str]:
    """``FLOWSLOT_API_KEYS``: comma-separated keys, blanks around them ignored."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def authorize(request: Request, keys: tuple[bytes, ...]) -> None:
    """Raise a 401 HttpError unless the request carries one of ``keys`` (none configured: open)."""
    if not keys:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HttpError(401, "this route needs an API key: send Authorization: Bearer <key>", CHALLENGE)
    candidate = given.strip().encode("utf-8", "replace")
    accepted = False
    for key in keys:
        accepted |= hmac.compare_digest(candidate, key)
    if not accepted:
        raise HttpError(401, "the API key is not accepted", CHALLENGE)
