"""Signals: an outside party completes one wait step of a flow, or a handler's named wait,
with a signed token.

A token names one wait step (namespace, flow id, step id), or one wait name of
one execution (a handler's ``current_task().wait_for(name)``), and may carry
an expiry. It is ``v1.<key id>.<body>.<mac>``: ``body`` is the base64url of
the JSON list ``[namespace, flow_id, step, expires_ms]`` for a flow's wait
step, or ``[namespace, "", name, expires_ms, execution_id]`` for an
execution's wait (``expires_ms`` server time, 0: never), and ``mac`` the
base64url HMAC-SHA256 of ``v1.<key id>.<body>`` with that key's secret
(``engine/signing.py``). Everything in it is URL-safe. The body is encoded,
not encrypted: a holder can read which flow and step it names, but cannot
make a token for another step without the secret.

``signal`` checks the shape, namespace, key id and HMAC here, before anything
is sent to the flow's partition, and refuses a bad token with ``BadToken``;
``wait_signal`` (lua/65_signals.lua) then checks the token's times against
the server's clock and resumes the step atomically. A signal to a step that
is not waiting is refused (InvalidState, NotFound), except a repeat of the
signal that resumed it (same payload), which answers as the first did.
An execution's wait takes its signal with ``exec_signal``, which stores it
(outcome ``stored``) until the handler waits for it, or makes a handler
suspended on it ready to run again (``resumed``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from engine import checks, events, executions, metrics, replies, signing
from engine.calls import FCall
from engine.client import Client
from engine.codec import DEFAULT_MAX_PAYLOAD_BYTES, encode
from engine.dispatcher import dispatch
from engine.errors import ContractError, TransitionRejected
from engine.flowcalls import flow_key, flow_partition
from engine.hints import hint_commands
from engine.router import Command
from keys import partition_of

VERSION = "v1"
MAX_TOKEN_CHARS = 1024
KEY_ID = re.compile(r"[0-9a-f]{8}")
B64URL = re.compile(r"[A-Za-z0-9_-]+")
MAX_EXPIRES_IN_S = 10 * 365 * 24 * 3600.0
# A wait declared without an event waits for a signal only: its event name is
# reserved, and its "correlation" is the empty string, which no canonical
# correlation can be (those are JSON objects), so no delivered event matches it.
SIGNAL_EVENT = events.SIGNAL_EVENT
SIGNAL_ONLY = events.Correlation("")


class BadToken(ContractError):
    """A signal token that is malformed, forged, altered, expired, of another namespace,
    or signed with a key that is retired or unknown; nothing was written."""


@dataclass(frozen=True)
class Claim:
    """What a verified token names."""

    flow_id: str  # "" for an execution's wait
    step: str  # the wait step, or the execution's wait name
    expires_ms: int  # 0: never
    key_until_ms: int  # end of its key's grace (0: the key is current)
    execution_id: str = ""  # set for an execution's wait


@dataclass(frozen=True)
class Signaled:
    """What ``signal`` did: ``resumed``, or ``duplicate`` (this signal had resumed it before);
    for an execution's wait also ``stored`` (kept until its handler waits for it)."""

    outcome: str
    execution_id: str


def signal_wait_spec(timeout_s: float | None, on_timeout: str) -> dict[str, Any]:
    """The ``wait`` spec of a step that waits for a signal only."""
    return events.wait_spec(SIGNAL_EVENT, SIGNAL_ONLY, timeout_s, on_timeout)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, signed: str) -> str:
    return _b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


def issue(client: Client, flow_id: str, step: str, *, expires_in_s: float | None = None) -> str:
    """A token for wait step ``step`` of flow ``flow_id`` (ContractError if it is not one)."""
    checks.step_id(step)
    partition = flow_partition(client.keys, flow_id)
    steps = client.keys.flow_steps(partition, flow_id)
    eid = client.run(Command(("HGET", steps, step), steps))
    if not eid:
        raise ContractError(f"flow {flow_id} has no step {step!r}")
    key = client.keys.execution(partition, eid)
    if not client.run(Command(("HGET", key, "wait_event"), key)):
        raise ContractError(f"step {step!r} of flow {flow_id} is not a wait step: only wait steps take signals")
    return sign(client, flow_id, step, _expires_ms(client, expires_in_s))


def issue_for_execution(client: Client, execution_id: str, name: str, *,
                        expires_in_s: float | None = None) -> str:
    """A token for wait ``name`` of execution ``execution_id`` (its handler's ``wait_for``)."""
    checks.step_id(name)
    return sign(client, "", name, _expires_ms(client, expires_in_s), execution_id)


def _expires_ms(client: Client, expires_in_s: float | None) -> int:
    if expires_in_s is None:
        return 0
    seconds = checks.number(expires_in_s, "expires_in_s", minimum=0.001, maximum=MAX_EXPIRES_IN_S)
    return signing.server_ms(client) + int(seconds * 1000)


def sign(client: Client, flow_id: str, step: str, expires_ms: int = 0, execution_id: str = "") -> str:
    """The token itself, signed with the namespace's current key (created on first use)."""
    keys = signing.ensure(client)
    fields: list[Any] = [client.keys.namespace, flow_id, step, expires_ms]
    if execution_id:
        fields.append(execution_id)
    body = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    signed = f"{VERSION}.{keys.current}.{body}"
    return f"{signed}.{_mac(keys.secrets[keys.current], signed)}"


def _body(token: Any) -> tuple[str, str, list[Any]]:
    """(key id, signed part, decoded body) of a well-formed token; BadToken otherwise."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise BadToken(f"a signal token is a string of 1..{MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not KEY_ID.fullmatch(parts[1]):
        raise BadToken("not a flowslot signal token (expected v1.<key id>.<body>.<signature>)")
    try:
        body = json.loads(_unb64(parts[2]))
        _unb64(parts[3])
    except (ValueError, binascii.Error) as e:
        raise BadToken(f"the signal token is garbled: {e}") from e
    if (not isinstance(body, list) or len(body) not in (4, 5) or not all(isinstance(v, str) for v in body[:3])
            or not isinstance(body[3], int) or isinstance(body[3], bool)
            or (len(body) == 5 and (body[1] != "" or not isinstance(body[4], str) or not body[4]))):
        raise BadToken("the signal token's body is not [namespace, flow, step, expiry] "
                       "nor [namespace, \"\", name, expiry, execution]")
    return parts[1], ".".join(parts[:3]), body


def verify(client: Client, token: Any) -> Claim:
    """Check a token's shape, namespace, key and HMAC (its times are the server's to check)."""
    key_id, signed, body = _body(token)
    namespace, flow_id, step, expires_ms = body[:4]
    execution_id = body[4] if len(body) == 5 else ""
    if namespace != client.keys.namespace:
        raise BadToken(f"the signal token is for namespace {namespace!r}, not {client.keys.namespace!r}")
    keys = signing.load(client)
    secret = None if keys is None else keys.secrets.get(key_id)
    if keys is None or secret is None:
        raise BadToken(f"the signal token's key {key_id} is unknown here (never issued, or retired "
                       "and dropped)")
    if not hmac.compare_digest(_mac(secret, signed), str(token).rsplit(".", 1)[1]):
        raise BadToken("the signal token's signature does not match: it was forged or altered")
    try:
        if execution_id:
            executions.execution_partition(client.keys, execution_id)
        else:
            flow_partition(client.keys, flow_id)
        checks.step_id(step)
    except ContractError as e:  # signed by us, so only a key shared with another deployment gets here
        raise BadToken(f"the signal token names no step of this deployment: {e}") from e
    return Claim(flow_id, step, expires_ms, keys.retired_until_ms.get(key_id, 0), execution_id)


def signal_call(client: Client, claim: Claim, payload: str) -> FCall:
    return FCall("wait_signal", (flow_key(client.keys, claim.flow_id),),
                 (claim.step, payload, claim.expires_ms, claim.key_until_ms), parse=replies.wait_signal)


def signal(client: Client, token: Any, payload: Any = None, *,
           max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Signaled:
    """Resume the wait step the token names with ``payload`` as its result (``wait_signal``),
    then dispatch its children. Counted in ``flowslot_signals_total`` by outcome; a refused
    one (BadToken, InvalidState, NotFound, a bad payload) as ``refused``."""
    try:
        signaled = _signal(client, token, payload, max_payload_bytes)
    except (ContractError, TransitionRejected):
        metrics.SIGNALS.labels(metrics.REFUSED).inc()
        raise
    metrics.SIGNALS.labels(signaled.outcome).inc()
    return signaled


def _signal(client: Client, token: Any, payload: Any, max_payload_bytes: int) -> Signaled:
    claim = verify(client, token)
    body = encode(payload, limit_bytes=max_payload_bytes, what=f"payload of the signal to {claim.step}")
    if claim.execution_id:
        return _signal_execution(client, claim, body)
    reply = client.run(signal_call(client, claim, body))
    _refuse_stale(reply.outcome, f"step {claim.step!r} of flow {claim.flow_id}")
    if reply.dispatch:
        dispatch(client, [reply.execution_id])
    return Signaled(reply.outcome, reply.execution_id)


def _refuse_stale(outcome: str, what: str) -> None:
    """The server found the token expired, or its key past its grace: BadToken."""
    if outcome == "expired":
        raise BadToken(f"the signal token for {what} has expired")
    if outcome == "retired":
        raise BadToken(f"the signal token for {what} was signed with a key that was rotated out "
                       "and whose grace period is over")


def _signal_execution(client: Client, claim: Claim, payload: str) -> Signaled:
    """Deliver a signal to an execution's named wait (``exec_signal``); hint its lane when it
    became ready."""
    reply = client.run(executions.signal(client.keys, claim.execution_id, claim.step, payload,
                                         claim.expires_ms, claim.key_until_ms))
    _refuse_stale(reply.outcome, f"wait {claim.step!r} of execution {claim.execution_id}")
    if reply.hinted:
        partition = partition_of(claim.execution_id, client.keys.partitions)
        client.run_many(hint_commands(client.keys, [(partition, reply.lane)]))
    return Signaled(reply.outcome, claim.execution_id)
