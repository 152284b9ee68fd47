"""Partition ownership between several daemons: leases held in the cluster.

Each daemon heartbeats into one ``daemons`` set, derives its fair share
(P // n, one more for the first P % n), renews the partitions it holds, claims free ones
up to its share, and gives back any above it. A dead daemon's leases expire
after ``ttl_s`` and the others take its partitions on their next round; a
new daemon's share makes the others shed partitions for it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from engine import replies
from engine.calls import FCall
from engine.client import Client


@dataclass
class Ownership:
    client: Client
    daemon_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}")
    ttl_s: float = 10.0
    owned: set[int] = field(default_factory=set)
    live: list[str] = field(default_factory=list)

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    def _claim(self, partition: int) -> FCall:
        return FCall("own_claim", (self.client.keys.owner(partition),), (self.daemon_id, self.ttl_ms),
                     parse=replies.own_claim)

    def _release(self, partition: int) -> FCall:
        return FCall("own_release", (self.client.keys.owner(partition),), (self.daemon_id,),
                     parse=replies.own_release)

    def heartbeat(self, leaving: bool = False) -> list[str]:
        key = self.client.keys.daemons()
        # Sorted by id: the set orders by expiry, which would put ourselves last every time.
        self.live = sorted(self.client.run(FCall("own_heartbeat", (key,),
                                                 (self.daemon_id, self.ttl_ms, int(leaving)),
                                                 parse=replies.own_heartbeat)))
        return self.live

    def share(self) -> int:
        """P // n partitions each, and one more for the first P % n live daemons (sorted ids)."""
        n = max(len(self.live), 1)
        index = self.live.index(self.daemon_id) if self.daemon_id in self.live else n - 1
        partitions = self.client.keys.partitions
        return partitions // n + (1 if index < partitions % n else 0)

    def rebalance(self) -> set[int]:
        """One round: heartbeat, renew, claim up to our share, shed the excess."""
        self.heartbeat()
        want = self.share()
        renewed = self.client.run_many([self._claim(p) for p in sorted(self.owned)])
        self.owned = {p for p, ok in zip(sorted(self.owned), renewed, strict=False) if ok is True}
        if len(self.owned) > want:
            extra = sorted(self.owned)[want:]
            self.client.run_many([self._release(p) for p in extra])
            self.owned -= set(extra)
        elif len(self.owned) < want:
            # Start at our own offset among the live daemons, so daemons rarely race for
            # the same free partitions.
            partitions = self.client.keys.partitions
            start = (self.live.index(self.daemon_id) * want) % partitions if self.daemon_id in self.live else 0
            candidates = [(start + i) % partitions for i in range(partitions)]
            candidates = [p for p in candidates if p not in self.owned]
            replies = self.client.run_many([self._claim(p) for p in candidates])
            for p, ok in zip(candidates, replies, strict=False):
                if ok is True and len(self.owned) < want:
                    self.owned.add(p)
                elif ok is True:
                    self.client.run(self._release(p))
        return self.owned

    def release_all(self) -> None:
        if self.owned:
            self.client.run_many([self._release(p) for p in sorted(self.owned)])
        self.owned = set()
        self.heartbeat(leaving=True)
