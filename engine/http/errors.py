"""Every error the HTTP API returns is JSON: ``{"error": {"code": ..., "message": ...}}``.

Engine exceptions map to one status each, so a webhook sender can tell a bad
request (4xx: do not retry) from a cluster that is briefly away (503: retry).
"""

from __future__ import annotations

from collections.abc import Mapping

import redis
from starlette.responses import JSONResponse

from engine.errors import (
    BadArguments,
    ClusterUnavailable,
    ContractError,
    EngineError,
    InternalError,
    NotFound,
    PayloadTooLarge,
    TransitionRejected,
)
from engine.signals import BadToken

STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
                500: "internal", 503: "cluster_unavailable"}


class HttpError(Exception):
    """A refusal of the HTTP layer itself (auth, body, content type), before the engine is called."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, message: str, code: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code or STATUS_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def engine_status(e: Exception) -> tuple[int, str]:
    """The status and error code of an exception the engine raised.

    400 bad input (``ContractError``), 403 a signal token that is not valid
    (``BadToken``: the token is the credential), 413 a payload over the limit, 404 no
    such flow or execution, 409 a refused transition (the code is the engine's
    own word: ``invalid_state``, ...), 503 the cluster did not answer, 500 the rest.
    """
    if isinstance(e, PayloadTooLarge):
        return 413, "payload_too_large"
    if isinstance(e, BadToken):
        return 403, "bad_token"
    if isinstance(e, ContractError):
        return 400, "bad_request"
    if isinstance(e, NotFound):
        return 404, "not_found"
    if isinstance(e, (BadArguments, InternalError)):
        return 500, "internal"
    if isinstance(e, TransitionRejected):
        return 409, e.code.lower()
    if isinstance(e, (ClusterUnavailable, redis.ConnectionError, redis.TimeoutError)):
        return 503, "cluster_unavailable"
    return 500, "internal"


def from_engine(e: EngineError | redis.RedisError) -> JSONResponse:
    status, code = engine_status(e)
    return error_response(status, str(e) or type(e).__name__, code)
