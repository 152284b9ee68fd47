"""``connect(url)``: a router, the key space, a checked config and a loaded library.

Connecting does three things before any transition can run: learn the slot
map (cluster or standalone, detected), check the deployment's stored
partition count against ours (a mismatch is an error, never a silent
re-partition), and make sure every primary runs our library version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis import exceptions as rexc

from engine.errors import ConfigMismatch, ContractError, EngineError, LibraryError
from engine.library import VERSION_FUNCTION, library
from engine.router import Command, Routable, Router, run_command
from keys import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS, InvalidName, KeySpace

URL_ENV = "FLOWSLOT_URL"


def resolve_url(url: str | None) -> str:
    """An explicit URL, else ``$FLOWSLOT_URL``, else the embedded cluster's state file."""
    if url is not None and not isinstance(url, str):
        raise ContractError(f"url must be a string like redis://host:6379, got {type(url).__name__}")
    if url:
        return url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    from engine.localcluster import load_state

    state = load_state()
    if state and state.get("url"):
        return str(state["url"])
    raise ContractError(
        f"no server given: pass --url, set {URL_ENV}, or start one with `flowslot cluster up`"
    )


class Client:
    """The engine's handle on one deployment."""

    def __init__(self, url: str | None = None, *, namespace: str = DEFAULT_NAMESPACE,
                 partitions: int = DEFAULT_PARTITIONS, hint_lists: int = 0,
                 load_library: bool = True, redis_client: redis.Redis | None = None,
                 **client_kwargs: Any) -> None:
        try:
            self.keys = KeySpace(namespace=namespace, partitions=partitions, hint_lists=hint_lists)
        except InvalidName as e:
            raise ContractError(str(e)) from e
        if redis_client is not None:
            self.router = Router.single(redis_client)
            self.router.on_missing_library = self._load_on
        else:
            self.router = _router(resolve_url(url), self._load_on, client_kwargs)
        self.url = self.router.url
        self.check_config()
        if load_library:
            self.ensure_library()

    # -- setup -----------------------------------------------------------
    def check_config(self) -> None:
        """Record our partition count on first use; refuse to run against another."""
        key = self.keys.config()
        stored = self.run(Command(("HSETNX", key, "partitions", self.keys.partitions), key))
        if stored == 0:
            found = self.run(Command(("HGET", key, "partitions"), key))
            if int(found) != self.keys.partitions:
                raise ConfigMismatch(
                    f"namespace {self.keys.namespace!r} was deployed with {found} partitions, "
                    f"this client uses {self.keys.partitions}; partitions are fixed per deployment"
                )

    def library_status(self) -> dict[str, str | None]:
        """Node → loaded library version (None when missing)."""
        out: dict[str, str | None] = {}
        for node in self.router.primaries():
            try:
                out[node] = run_command(self.router.client(node), "FCALL_RO", VERSION_FUNCTION, 0)
            except rexc.ResponseError:
                out[node] = None
        return out

    def ensure_library(self, force: bool = False, timeout_s: float = 10.0) -> dict[str, str]:
        """Load the library wherever it is missing or stale; node → 'ok' | 'loaded'."""
        want = library().version
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                result = {}
                for node, found in self.library_status().items():
                    if force or found != want:
                        self._load_on(self.router.client(node))
                        result[node] = "loaded"
                    else:
                        result[node] = "ok"
                return result
            except (rexc.ReadOnlyError, rexc.ConnectionError, rexc.ResponseError) as e:
                # A fresh cluster answers READONLY until every node agrees on the topology.
                if time.monotonic() > deadline:
                    raise LibraryError(f"could not load the function library: {e}") from e
                time.sleep(0.1)
                self.router.refresh()

    @staticmethod
    def _load_on(client: redis.Redis) -> None:
        run_command(client, "FUNCTION", "LOAD", "REPLACE", library().source)

    # -- calls -----------------------------------------------------------
    def run(self, call: Routable) -> Any:
        return self.router.execute(call)

    def run_many(self, calls: Sequence[Routable]) -> list[Any]:
        return self.router.execute_many(calls)

    def close(self) -> None:
        self.router.close()


def _router(url: str, on_missing_library: Any, client_kwargs: dict[str, Any]) -> Router:
    """A Router on ``url``; a URL or option redis-py cannot use is a ContractError."""
    try:
        return Router(url, on_missing_library=on_missing_library, **client_kwargs)
    except EngineError:
        raise
    except (ValueError, TypeError) as e:
        raise ContractError(f"cannot connect to {url!r}: {e} (expected redis://host:port or "
                            "rediss://host:port)") from e


def connect(url: str | None = None, **kwargs: Any) -> Client:
    """Connect to a cluster or standalone server (``redis://`` or ``rediss://``)."""
    return Client(url, **kwargs)
