"""Constants and the error type shared by the local-cluster modules."""

from __future__ import annotations

from engine.errors import EngineError

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000
POLL_S = 0.05
# Ports come from below the kernel's ephemeral range (32768+), bus ports
# included, so an outgoing connection cannot take one between check and bind.
PORT_RANGE = (15000, 22767)
MIN_VERSIONS: dict[str, tuple[int, ...]] = {"valkey": (7, 2, 0), "redis": (7, 0, 0)}
SERVER_NAMES = ("valkey-server", "redis-server")
MIGRATE_BATCH = 100

SlotView = tuple[tuple[int, int, int, tuple[int, ...]], ...]


class LocalClusterError(EngineError):
    """The local cluster could not be found, started, formed or stopped."""
