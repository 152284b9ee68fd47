"""The renewer: keeps the worker's leases alive and tells handlers when they lost theirs.

Every third of the lease it extends every running lease in one pipelined
round (``exec_renew``). The reply is also the only way a running handler
learns that its execution was canceled (``CANCELED``) or that its lease is
gone (``STALE_LEASE`` and the other refusals: the lease expired, say while the
process was paused, and the execution was retried or claimed elsewhere): the
renewer cancels the handler's context, which a cooperative handler checks.
A module of its own so that mapping can be tested against the Lua library.
"""

from __future__ import annotations

import threading

from engine import executions
from engine.client import Client
from engine.errors import Canceled, TransitionRejected
from engine.held import HeldLeases


class Renewer:
    """Extends the running leases of ``held`` every ``lease_ms / 3``."""

    def __init__(self, client: Client, held: HeldLeases, lease_ms: int) -> None:
        self.client = client
        self.held = held
        self.lease_ms = lease_ms

    def run(self, stopped: threading.Event) -> None:
        """Renew until ``stopped`` is set."""
        interval_s = self.lease_ms / 3000
        while not stopped.wait(interval_s):
            self.renew()

    def renew(self) -> None:
        """One round: renew every running lease; cancel the context of each one refused."""
        held = self.held.running()
        if not held:
            return
        keys = self.client.keys
        calls = [executions.renew(keys, h.claimed.execution_id, h.claimed.token, self.lease_ms) for h in held]
        for h, reply in zip(held, self.client.run_many(calls), strict=True):
            if isinstance(reply, Canceled):
                h.context._cancel("canceled")
            elif isinstance(reply, TransitionRejected):
                h.context._cancel(f"lease lost: {reply}")
