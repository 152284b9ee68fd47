"""``create_app``: the Starlette application, its routes, its JSON errors and its access log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.app import App
from engine.client import Client
from engine.errors import ContractError, EngineError
from engine.http.auth import api_keys
from engine.http.errors import HttpError, error_response, from_engine
from engine.http.routes import Api

LOG = logging.getLogger("flowslot.http")
SIGNAL_PATH = re.compile(r"^(.*/v1/signals/)[^/]+")


def create_app(target: App | Client, *, api_keys: Iterable[str] = (), no_auth: bool = False) -> Starlette:
    """The HTTP API over ``target`` (an App, or a Client wrapped in a default App).

    Events and reads need one of ``api_keys`` as a bearer key; with none, the
    call is refused unless ``no_auth=True`` says the routes are meant to be
    open (behind a proxy that authenticates, say). Signals and ``/healthz``
    need no key.
    """
    app = target if isinstance(target, App) else App(client=_client(target))
    keys = _keys(api_keys, no_auth)
    api = Api(app, keys)
    routes = [
        Route("/v1/events/{name}", api.event, methods=["POST"]),
        Route("/v1/signals/{token}", api.signal, methods=["POST"]),
        Route("/v1/flows/{id}", api.flow, methods=["GET"]),
        Route("/v1/executions/{id}", api.execution, methods=["GET"]),
        Route("/healthz", api.health, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {HttpError: _http_error, HTTPException: _starlette_error,
                                EngineError: _engine_error, redis.RedisError: _engine_error,
                                Exception: _unexpected}
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(AccessLog)])


def _client(target: Any) -> Client:
    if not isinstance(target, Client):
        raise ContractError(f"create_app needs an engine App or Client, got {type(target).__name__}")
    return target


def _keys(keys: Iterable[str], no_auth: bool) -> tuple[bytes, ...]:
    if isinstance(keys, str):
        raise ContractError("api_keys is a list of keys, not one string")
    checked = api_keys(keys)
    if checked and no_auth:
        raise ContractError("API keys and no_auth exclude each other: drop one")
    if not checked and not no_auth:
        raise ContractError("no API key configured: give api_keys (flowslot serve: --api-key or "
                            "FLOWSLOT_API_KEYS), or no_auth=True (--no-auth) to open events and reads "
                            "to anyone who can reach the port")
    return checked


async def _http_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, HttpError)
    return error_response(e.status, e.message, headers=e.headers)


async def _starlette_error(request: Request, e: Exception) -> Response:
    """Routing's own refusals (404 unknown route, 405 wrong method) in the same JSON shape."""
    assert isinstance(e, HTTPException)
    if e.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif e.status_code == 405:
        allowed = (e.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
    else:
        message = str(e.detail)
    return error_response(e.status_code, message, headers=e.headers)


async def _engine_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, (EngineError, redis.RedisError))
    response = from_engine(e)
    if response.status_code >= 500:
        LOG.warning("%s %s: %s: %s", request.method, _shown_path(request.url.path), type(e).__name__, e)
    return response


async def _unexpected(request: Request, e: Exception) -> Response:
    # Starlette logs the traceback as it re-raises; the caller gets JSON, never a stack.
    return error_response(500, f"internal error ({type(e).__name__}); see the server's log")


def _shown_path(path: str) -> str:
    """The path with a signal's token replaced: a token is a credential and stays out of logs."""
    return SIGNAL_PATH.sub(r"\1<token>", path)


class AccessLog:
    """One INFO line per request on ``flowslot.http`` (method, path without tokens, status, time);
    ``flowslot serve`` turns uvicorn's own access log off, as it would print signal tokens."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            LOG.info("%s %s %d %.1f ms", scope["method"], _shown_path(scope["path"]), status,
                     (time.perf_counter() - started) * 1000)
