"""Scanners: each repairs one kind of straggler, bounded per partition per pass.

A scanner builds one FCALL per partition, the pass runs them pipelined per
node (one round trip per node per round), and a partition whose batch came
back full is asked again in the next round, up to ``max_rounds``. Each
scanner counts what it repaired; a healthy system repairs nearly nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import executions
from engine.calls import FCall
from engine.client import Client
from engine.dispatcher import dispatch
from engine.hints import hint_commands


@dataclass
class ScanResult:
    scanned_partitions: int = 0
    repaired: int = 0
    rounds: int = 0
    commands: int = 0


class Scanner:
    """Base: subclasses build the call for one partition and digest its reply."""

    name = "scanner"

    def __init__(self, batch: int = 200) -> None:
        self.batch = batch

    def call(self, client: Client, partition: int) -> FCall:
        raise NotImplementedError

    def digest(self, partition: int, reply: Any) -> tuple[int, list[tuple[int, str]], bool]:
        """(repaired count, (partition, lane) hints to push, batch was full)."""
        raise NotImplementedError

    def run(self, client: Client, partitions: Sequence[int], max_rounds: int = 10) -> ScanResult:
        result = ScanResult(scanned_partitions=len(partitions))
        todo = list(partitions)
        while todo and result.rounds < max_rounds:
            result.rounds += 1
            replies = client.run_many([self.call(client, p) for p in todo])
            result.commands += len(todo)
            hints: list[tuple[int, str]] = []
            again = []
            for p, reply in zip(todo, replies):
                if isinstance(reply, Exception):
                    raise reply
                repaired, new_hints, full = self.digest(p, reply)
                result.repaired += repaired
                hints.extend(new_hints)
                if full:
                    again.append(p)
            if hints:
                commands = hint_commands(client.keys, hints)
                client.run_many(commands)
                result.commands += len(commands)
            todo = again
        return result


class DelayedPromoter(Scanner):
    """Due delayed / backing-off executions → ready → hint (``exec_promote``)."""

    name = "delayed"

    def call(self, client: Client, partition: int) -> FCall:
        return executions.promote(client.keys, partition, self.batch)

    def digest(self, partition: int, reply: Any) -> tuple[int, list[tuple[int, str]], bool]:
        promoted, lanes = reply
        return promoted, [(partition, lane) for lane in lanes], promoted >= self.batch


class LeaseExpiry(Scanner):
    """Expired leases → attempt failed (``lease_lost``) → retry or fail (``exec_expire_leases``)."""

    name = "lease_expiry"

    def __init__(self, batch: int = 200) -> None:
        super().__init__(batch)
        self.to_dispatch: list[str] = []

    def run(self, client: Client, partitions: Sequence[int], max_rounds: int = 10) -> ScanResult:
        self.to_dispatch = []
        result = super().run(client, partitions, max_rounds)
        if self.to_dispatch:  # a flow step failed for good: resolve its children now
            dispatch(client, self.to_dispatch)
        return result

    def call(self, client: Client, partition: int) -> FCall:
        return executions.expire_leases(client.keys, partition, self.batch, random.random())

    def digest(self, partition: int, reply: Any) -> tuple[int, list[tuple[int, str]], bool]:
        # A lease_lost retry with zero back-off is ready at once and needs a hint;
        # one with back-off is delayed and the promoter hints it when due.
        hints = [(partition, lane) for _, state, lane, _ in reply if state == "ready"]
        self.to_dispatch.extend(eid for eid, _, _, needs in reply if needs)
        return len(reply), hints, len(reply) >= self.batch


def default_scanners() -> list[Scanner]:
    return [LeaseExpiry(), DelayedPromoter()]
