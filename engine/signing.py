"""The namespace's signing keys for signal tokens, kept in the cluster.

One HASH per namespace (``KeySpace.secrets``): ``current`` names the key that
signs new tokens, ``secret:<id>`` holds each key's 32 random bytes (hex), and
``retired:<id>`` the time (server ms) until which a rotated-out key still
verifies. Every process of the deployment reads the same keys, so a token
signed by one verifies in any other. The first token creates the first key
(HSETNX: two racing processes agree on one); ``rotate`` (``secrets_rotate``)
makes a new key current and gives the previous one a grace period.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine import checks, replies
from engine.calls import FCall
from engine.client import Client
from engine.router import Command

SECRET_BYTES = 32
DEFAULT_GRACE_S = 24 * 3600.0
MAX_GRACE_S = 365 * 24 * 3600.0
MAX_KEYS = 1000  # fields secrets_rotate reads while dropping keys past their grace


@dataclass(frozen=True)
class SigningKeys:
    """A read of the secrets hash."""

    current: str
    secrets: dict[str, bytes]
    retired_until_ms: dict[str, int]  # key id -> end of its grace (server ms)


def _parse(raw: dict[str, str]) -> SigningKeys | None:
    current = raw.get("current")
    if not current:
        return None
    secrets = {f[7:]: bytes.fromhex(v) for f, v in raw.items() if f.startswith("secret:")}
    retired = {f[8:]: int(v) for f, v in raw.items() if f.startswith("retired:")}
    return SigningKeys(current, secrets, retired)


def load(client: Client) -> SigningKeys | None:
    """The keys as stored now (one HGETALL), or None before the first token was signed."""
    key = client.keys.secrets()
    return _parse(client.run(Command(("HGETALL", key), key)))


def ensure(client: Client) -> SigningKeys:
    """The keys, creating the first one if the namespace has none yet."""
    found = load(client)
    if found is not None:
        return found
    key, key_id = client.keys.secrets(), os.urandom(4).hex()
    client.run(Command(("HSETNX", key, f"secret:{key_id}", os.urandom(SECRET_BYTES).hex()), key))
    if not client.run(Command(("HSETNX", key, "current", key_id), key)):
        client.run(Command(("HDEL", key, f"secret:{key_id}"), key))  # another process was first
    created = load(client)
    assert created is not None  # "current" is set now, by us or by the process that was first
    return created


def server_ms(client: Client) -> int:
    """The server's clock (TIME on the secrets key's node): token times are server times."""
    seconds, micros = client.run(Command(("TIME",), client.keys.secrets()))
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass(frozen=True)
class Rotation:
    """What ``rotate`` did."""

    current: str  # the new key id
    previous: str  # the key it replaced ('' when there was none)
    previous_until_ms: int  # when tokens signed with ``previous`` stop verifying (0: none)
    dropped: int  # retired keys past their grace, removed


def rotate_call(client: Client, key_id: str, secret_hex: str, grace_ms: int) -> FCall:
    return FCall("secrets_rotate", (client.keys.secrets(),), (key_id, secret_hex, grace_ms, MAX_KEYS),
                 parse=replies.secrets_rotate)


def rotate(client: Client, grace_s: float = DEFAULT_GRACE_S) -> Rotation:
    """Make a new key current (``secrets_rotate``); tokens signed with the previous key
    verify ``grace_s`` more seconds (0: refused at once), then are refused."""
    grace_ms = int(checks.number(grace_s, "grace_s (seconds)", minimum=0, maximum=MAX_GRACE_S) * 1000)
    key_id = os.urandom(4).hex()
    reply = client.run(rotate_call(client, key_id, os.urandom(SECRET_BYTES).hex(), grace_ms))
    return Rotation(key_id, reply.previous, reply.previous_until_ms, reply.dropped)
