"""The server a benchmark runs against: an embedded one we start, or a given URL.

An embedded server is stopped afterwards; on a given server the benchmark
writes under a fresh namespace and deletes its keys at the end (``cleanup``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis

from engine.client import Client
from engine.router import Command, Router
from keys import key_slot

Progress = Callable[[str], None]
CLEANUP_BATCH = 1000


@dataclass(frozen=True)
class Target:
    """Where to connect, and what kind of deployment it is."""

    url: str
    mode: str  # "cluster" or "standalone"
    embedded: bool
    primaries: tuple[str, ...]  # "host:port" of every primary

    def node_for_key(self, key: str) -> str:
        """The primary that owns ``key``'s slot."""
        router = Router(self.url)
        try:
            return router.node_for_slot(key_slot(key))
        finally:
            router.close()

    def node_client(self, node: str) -> redis.Redis:
        host, _, port = node.rpartition(":")
        return redis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=30)


def _describe(url: str, embedded: bool) -> Target:
    router = Router(url)  # topology only: writes nothing
    try:
        return Target(url, "cluster" if router.cluster else "standalone", embedded,
                      tuple(router.primaries()))
    finally:
        router.close()


@contextlib.contextmanager
def open_target(url: str | None, standalone: bool, progress: Progress,
                primaries: int = 3) -> Iterator[Target]:
    """Yield the given server, or start an embedded one and stop it on exit."""
    if url:
        yield _describe(url, embedded=False)
        return
    from engine.localcluster import LocalCluster

    kind = "standalone server" if standalone else f"{primaries}-primary cluster"
    progress(f"starting an embedded {kind} ...")
    with LocalCluster(primaries=primaries, standalone=standalone) as local:
        yield _describe(local.url, embedded=True)
        progress("stopping the embedded server ...")


def delete_matching(target: Target, pattern: str) -> int:
    """UNLINK every key matching ``pattern`` on every primary, one key per command.

    One key per UNLINK: a cluster refuses a multi-key command across slots (CROSSSLOT).
    """
    deleted = 0
    for node in target.primaries:
        client = target.node_client(node)
        try:
            batch: list[str] = []
            for key in client.scan_iter(match=pattern, count=CLEANUP_BATCH):
                batch.append(key)
                if len(batch) >= CLEANUP_BATCH:
                    deleted += _unlink(client, batch)
                    batch = []
            deleted += _unlink(client, batch)
        finally:
            client.close()
    return deleted


def _unlink(client: redis.Redis, keys: list[str]) -> int:
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(pipe.execute())


def read_hashes(client: Client, keys: list[str], fields: tuple[str, ...],
                batch: int = 2000) -> list[list[str | None]]:
    """HMGET ``fields`` of many hashes, pipelined per node in batches."""
    out: list[list[str | None]] = []
    for start in range(0, len(keys), batch):
        calls = [Command(("HMGET", key, *fields), key) for key in keys[start:start + batch]]
        for reply in client.run_many(calls):
            if isinstance(reply, Exception):
                raise reply
            out.append(list(reply))
    return out
