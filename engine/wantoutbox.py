"""The outbox message kinds of wants (lua/15_wants.lua): how each is applied, and what follows.

Each kind's target call replies like every want call (``replies.WantReply``);
once it is applied and acknowledged, ``_then`` hints what it made ready,
flushes the messages it sent in turn, and dispatches the builds it ended.
Imported by every process that flushes outboxes (the App, the CLI, the
reconciler), so the handlers are registered wherever a message is applied.
"""

from __future__ import annotations

import json
from typing import Any

from engine import outbox, replies
from engine.calls import FCall
from engine.client import Client
from engine.dispatcher import dispatch
from engine.wants import create_call, follow
from keys import KeySpace


def _then(client: Client, to: int, reply: Any) -> None:
    if isinstance(reply, replies.WantReply):
        follow(client, [(to, reply)], lambda ids: dispatch(client, ids))


@outbox.handler("want_create", then=_then)
def _create_message(ks: KeySpace, to: int, msg_id: str, body: dict[str, Any]) -> FCall:
    return create_call(ks, body["want"], body, msg_id)


@outbox.handler("want_request", then=_then)
def _request_message(ks: KeySpace, to: int, msg_id: str, body: dict[str, Any]) -> FCall:
    return FCall("want_request", (ks.slice(to, body["slice"]),), (msg_id, json.dumps(body)),
                 parse=replies.want_request)


@outbox.handler("want_news", then=_then)
def _news_message(ks: KeySpace, to: int, msg_id: str, body: dict[str, Any]) -> FCall:
    return FCall("want_news", (ks.want(to, body["want"]),), (msg_id, json.dumps(body)),
                 parse=replies.want_news)


@outbox.handler("build_news", then=_then)
def _build_message(ks: KeySpace, to: int, msg_id: str, body: dict[str, Any]) -> FCall:
    return FCall("build_news", (ks.execution(to, body["exec"]),), (msg_id, json.dumps(body)),
                 parse=replies.build_news)
