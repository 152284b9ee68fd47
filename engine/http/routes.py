"""The endpoints: each checks the key (when the route needs one), reads the body, and calls the
App in a worker thread (the engine's calls block on the network; the event loop must not)."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from engine import metrics, signals
from engine.app import App
from engine.cli.health import health_report
from engine.handle import Handle
from engine.http.auth import authorize
from engine.http.body import read_object
from engine.http.errors import HttpError

ENVELOPE_BYTES = 64 * 1024  # room for correlate and event_id around the payload
JSON_FIELDS = ("payload", "result")  # execution fields stored as JSON


class Api:
    """The routes of one App; ``keys`` empty means events and reads are open (``no_auth``)."""

    def __init__(self, app: App, keys: tuple[bytes, ...]) -> None:
        self.app = app
        self.keys = keys
        # The payload's own limit is checked by the engine (413 too); this bounds the read.
        self.body_limit = app.max_payload_bytes + ENVELOPE_BYTES

    async def event(self, request: Request) -> JSONResponse:
        """``POST /v1/events/{name}`` → ``App.deliver``: ``{"outcome", "resumed": [step ids]}``."""
        try:
            authorize(request, self.keys)
            body = await read_object(request, self.body_limit, ("correlate", "payload", "event_id"))
            if "correlate" not in body:
                raise HttpError(400, "correlate is required: a JSON object of names to strings")
        except HttpError:  # refused here; a refusal by the engine is counted by deliver()
            metrics.DELIVERIES.labels(metrics.REFUSED).inc()
            raise
        delivery = await run_in_threadpool(self.app.deliver, request.path_params["name"], body["correlate"],
                                           body.get("payload"), event_id=body.get("event_id"))
        return JSONResponse({"outcome": delivery.outcome, "resumed": delivery.resumed})

    async def signal(self, request: Request) -> JSONResponse:
        """``POST /v1/signals/{token}`` → ``signals.signal`` (what ``App.signal`` calls), which
        says whether this call resumed the step or repeated the signal that did:
        ``{"outcome": "resumed" | "stored" | "duplicate", "execution_id"}`` (``stored``: a handler's
        wait, signalled before it waits). The token is the only credential."""
        try:
            body = await read_object(request, self.body_limit, ("payload",), empty_ok=True)
        except HttpError:  # refused here; a refusal by the engine is counted by signal()
            metrics.SIGNALS.labels(metrics.REFUSED).inc()
            raise
        signaled = await run_in_threadpool(lambda: signals.signal(
            self.app.client, request.path_params["token"], body.get("payload"),
            max_payload_bytes=self.app.max_payload_bytes))
        return JSONResponse({"outcome": signaled.outcome, "execution_id": signaled.execution_id})

    async def flow(self, request: Request) -> JSONResponse:
        """``GET /v1/flows/{id}`` → ``FlowRun.describe()``: the flow, its steps, its timeline."""
        authorize(request, self.keys)
        flow_id = request.path_params["id"]
        described = await run_in_threadpool(lambda: self.app.run(flow_id).describe())
        return JSONResponse(described)

    async def execution(self, request: Request) -> JSONResponse:
        """``GET /v1/executions/{id}`` → the stored fields, ``payload`` and ``result`` decoded."""
        authorize(request, self.keys)
        execution_id = request.path_params["id"]
        info = await run_in_threadpool(lambda: Handle(self.app.client, execution_id, created=False).info())
        return JSONResponse(decoded(info))

    async def health(self, request: Request) -> JSONResponse:
        """``GET /healthz`` (no key): 200 when every primary runs this library version, else 503."""
        report = await run_in_threadpool(lambda: health_report(self.app.client))
        return JSONResponse(report, status_code=200 if report.get("ok") else 503)


def decoded(info: dict[str, str]) -> dict[str, Any]:
    """The fields as stored (strings), with the JSON ones decoded where they parse."""
    out: dict[str, Any] = dict(info)
    for name in JSON_FIELDS:
        if out.get(name):
            try:
                out[name] = json.loads(out[name])
            except ValueError:
                pass  # not JSON (written by something else): shown as stored
    return out
