"""Route commands by hash slot to the owning node, pipelined per node.

redis-py's ``RedisCluster`` asks the server ``COMMAND GETKEYS`` for every
FCALL (ARCHITECTURE.md §5: 23x slower pipelined). We know each call's slot
from its first key, so we keep our own slot map and one set of connections per
node (``NodeConnections``). A batch is written to every node before any reply is read, so a batch
spanning three nodes costs one round trip, not three.

Recovery: ``MOVED`` refreshes the slot map and retries; ``ASK`` retries once
on the named node after ``ASKING`` for plain commands (one key each); a
dropped connection or ``CLUSTERDOWN``/``TRYAGAIN`` refreshes and retries with
back-off for up to ``retry_window_s`` (long enough to ride out a failover);
"function not found" reloads the library on that node once. A writing FCALL
never follows ``ASK``: while its slot is being migrated key by key it is
retried with back-off (like ``TRYAGAIN``) until the slot has one owner again,
so a function runs whole on the node holding all of its keys. Every flowslot
transition is atomic, so a call
that got ``MOVED`` never ran; a call cut off by a dropped connection may have
run, which is why every wrapper is safe to repeat (same id, same token).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from redis import exceptions as rexc
from redis.utils import SENTINEL

from engine.errors import ClusterUnavailable, ContractError, EngineError, error_from_reply
from engine.metrics import FCALL_LATENCY
from keys import SLOT_COUNT, key_slot

Node = str  # "host:port"
BLOCK_MARGIN_S = 5.0


class Routable(Protocol):
    @property
    def slot(self) -> int: ...

    def command(self) -> tuple[Any, ...]: ...

    def parse(self, reply: Any) -> Any: ...


@dataclass(frozen=True)
class Command:
    """A plain command addressed to the slot of ``key``."""

    args: tuple[Any, ...]
    key: str
    parse: Callable[[Any], Any] = field(default=lambda r: r, compare=False)
    read_timeout_s: Any = field(default=SENTINEL, compare=False)
    slot: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot", key_slot(self.key))

    def command(self) -> tuple[Any, ...]:
        return self.args


def run_command(client: redis.Redis, *args: Any) -> Any:
    """One command on one node; redis-py leaves execute_command untyped, so it is typed once here."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


_RETRYABLE_CONN = (rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError,
                   rexc.TryAgainError, rexc.BusyLoadingError)


# What redis-py raises while encoding an argument it cannot send (a lone
# surrogate, None, a bool, a list): nothing has been written yet.
_UNENCODABLE = (UnicodeError, rexc.DataError)


def _encoding_refusal(conn: Any, command: tuple[Any, ...]) -> ContractError | None:
    """A ContractError naming the first argument of ``command`` that cannot be encoded, if any."""
    try:
        conn.pack_command(*command)
        return None
    except _UNENCODABLE:
        pass
    for position, value in enumerate(command):
        try:
            conn.pack_command("ECHO", value)
        except _UNENCODABLE as e:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return ContractError(
                f"{' '.join(str(a) for a in command[:2])}: argument {position} ({shown}) cannot be "
                f"sent: {e} (arguments are str, int, float or bytes; strings must be valid UTF-8)")
    return ContractError(f"{' '.join(str(a) for a in command[:2])}: the arguments cannot be encoded")


def _is_missing_function(err: Exception) -> bool:
    text = str(err).lower()
    return isinstance(err, rexc.ResponseError) and "function not found" in text


def _is_readonly(err: Exception) -> bool:
    return isinstance(err, rexc.ReadOnlyError) or str(err).startswith("READONLY")


# A function refused before its first write because its slot is being migrated
# (lua/00_helpers.lua check_slot_stable), or the server refused it for keys in flux.
_SLOT_IN_FLUX = ("non local key", "undeclared keys were accessed during rehashing")


def _is_slot_in_flux(err: Exception) -> bool:
    if not isinstance(err, rexc.ResponseError):
        return False
    text = str(err)
    return any(marker in text for marker in _SLOT_IN_FLUX)


def _writes_many_keys(call: Routable) -> bool:
    """An FCALL that may write: it must run whole on one node, so it never follows ASK."""
    return getattr(call, "function", None) is not None and not getattr(call, "read_only", False)


def _with_driver_info(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection options with the client's name and version looked up once. redis-py with a
    ``redis.driver_info`` module looks its own version up in the package metadata (about 0.4 ms)
    for each connection made without a ``driver_info``, which ``from_url`` does not set."""
    if any(k in kwargs for k in ("driver_info", "lib_name", "lib_version")):
        return kwargs
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # an older redis-py: its default version is looked up once, at import
        return kwargs
    return {**kwargs, "driver_info": DriverInfo()}


IDLE_CHECK_S = 1.0  # a connection idle longer is polled before it is lent (the server may have closed it)
_FORKS = [0]  # forks this process came through: connections made before one belong to the parent
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))


class NodeConnections:
    """One node's connections, each lent to one round at a time (``take``, ``give``).

    redis-py's ``ConnectionPool`` polls every connection it lends for unread
    data and records metrics and events at every checkout and release; a worker
    borrows a connection for every round trip. Here a connection given back
    less than ``IDLE_CHECK_S`` ago is lent as it is: the router reads every
    reply it sent for, or disconnects the connection before giving it back (a
    broken round, any exception), so a connection given back has nothing left
    to read. One idle longer is polled first and reconnected when the server
    closed it or it has data to read. A forked child drops the parent's
    connections (without shutting down the parent's sockets) and makes its own.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._idle: list[tuple[Any, float]] = []  # (connection, given back at); list ops are atomic
        self._lent: set[Any] = set()
        self._lock = threading.Lock()
        self._generation = _FORKS[0]

    @property
    def lent(self) -> int:
        """Connections taken and not given back."""
        return len(self._lent)

    def take(self) -> Any:
        """A connected connection, reconnected if it was closed while idle; raises the
        connection error when the node cannot be reached (nothing is left taken)."""
        if self._generation != _FORKS[0]:
            self._after_fork()
        try:
            conn, since = self._idle.pop()
        except IndexError:
            conn = self._make()
        else:
            if time.monotonic() - since > IDLE_CHECK_S and _closed_or_dirty(conn):
                conn.disconnect()
        self._lent.add(conn)
        try:
            conn.connect()  # returns at once when connected
        except BaseException:
            self.give(conn)
            raise
        return conn

    def give(self, conn: Any) -> None:
        """Give back a connection with nothing left to read (or disconnected)."""
        self._lent.discard(conn)
        if self._generation == _FORKS[0]:
            self._idle.append((conn, time.monotonic()))

    def _after_fork(self) -> None:
        with self._lock:
            if self._generation == _FORKS[0]:
                return
            parents = [c for c, _ in self._idle] + list(self._lent)
            self._idle, self._lent, self._generation = [], set(), _FORKS[0]
        for conn in parents:
            conn.disconnect()  # redis-py closes, and does not shut down, a socket of another process

    def close(self) -> None:
        for conn in [c for c, _ in self._idle] + list(self._lent):
            conn.disconnect()
        self._idle.clear()


class PooledConnections:
    """``NodeConnections``' interface over a redis-py ``ConnectionPool`` (``Router.single``: the
    client is the caller's, and other routers may share its pool and its connection limit)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._lent: set[Any] = set()

    @property
    def lent(self) -> int:
        return len(self._lent)

    def take(self) -> Any:
        conn = self._pool.get_connection()
        self._lent.add(conn)
        return conn

    def give(self, conn: Any) -> None:
        self._lent.discard(conn)
        self._pool.release(conn)

    def close(self) -> None:
        """The caller's client keeps its pool."""


def _closed_or_dirty(conn: Any) -> bool:
    """Whether an idle connection has something to read: data, or the server closed it."""
    try:
        return bool(conn.can_read())
    except (rexc.ConnectionError, rexc.TimeoutError, OSError):
        return True


class Router:
    """Slot map + one set of connections per node; standalone servers own every slot."""

    def __init__(self, url: str, *, retry_window_s: float = 10.0,
                 on_missing_library: Callable[[redis.Redis], None] | None = None,
                 **client_kwargs: Any) -> None:
        self.url = url
        self.retry_window_s = retry_window_s
        self.on_missing_library = on_missing_library
        seed = redis.ConnectionPool.from_url(url, decode_responses=True, **client_kwargs)
        self._connection_class = seed.connection_class
        self._base_kwargs = _with_driver_info(dict(seed.connection_kwargs))
        self._base_kwargs.setdefault("socket_connect_timeout", 5.0)
        self._seed_node = f"{self._base_kwargs.get('host', 'localhost')}:{self._base_kwargs.get('port', 6379)}"
        self._clients: dict[Node, redis.Redis] = {}
        self._connections: dict[Node, NodeConnections | PooledConnections] = {}
        self._lock = threading.Lock()
        self._slots: list[Node] = []
        self.cluster = False
        self._static = False  # True for Router.single: the slot map never changes
        self.refresh()

    @classmethod
    def single(cls, client: redis.Redis) -> Router:
        """A router over one existing client (standalone; used with fakeredis in tests)."""
        self = cls.__new__(cls)
        self.url = "client://"
        self.retry_window_s = 2.0
        self.on_missing_library = None
        self._lock = threading.Lock()
        node = "single:0"
        self._clients = {node: client}
        self._connections = {node: PooledConnections(client.connection_pool)}
        self._seed_node = node
        self._slots = [node] * SLOT_COUNT
        self.cluster = False
        self._static = True
        return self

    # -- topology --------------------------------------------------------
    def client(self, node: Node) -> redis.Redis:
        """The client (connection pool) of one node, created on first use."""
        found = self._clients.get(node)
        if found is not None:
            return found
        with self._lock:
            if node not in self._clients:
                host, _, port = node.rpartition(":")
                kwargs = {**self._base_kwargs, "host": host, "port": int(port)}
                pool = redis.ConnectionPool(connection_class=self._connection_class, **kwargs)
                self._clients[node] = redis.Redis(connection_pool=pool)
            return self._clients[node]

    def connections(self, node: Node) -> NodeConnections | PooledConnections:
        """The connections the router's rounds borrow on one node (made with its client's
        connection class and options, outside the client's pool)."""
        found = self._connections.get(node)
        if found is not None:
            return found
        pool = self.client(node).connection_pool
        cls, kwargs = pool.connection_class, dict(pool.connection_kwargs)
        with self._lock:
            return self._connections.setdefault(node, NodeConnections(lambda: cls(**kwargs)))

    def refresh(self) -> None:
        """Re-read the slot map from any reachable node (seed first)."""
        if self._static:
            return
        errors = []
        for node in [self._seed_node, *self._clients]:
            try:
                self._load_slot_map(self.client(node))
                return
            except (rexc.RedisError, OSError) as e:
                errors.append(f"{node}: {e}")
        raise ClusterUnavailable("no node answered: " + "; ".join(errors))

    def _load_slot_map(self, client: redis.Redis) -> None:
        info = client.info("cluster")
        if not info.get("cluster_enabled"):
            self.cluster = False
            self._slots = [self._node_of(client)] * SLOT_COUNT
            return
        slots: list[Node | None] = [None] * SLOT_COUNT
        for entry in run_command(client, "CLUSTER SLOTS"):
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0] or client.connection_pool.connection_kwargs["host"]
            node = f"{host}:{int(primary[1])}"
            for slot in range(start, end + 1):
                slots[slot] = node
        missing = sum(1 for s in slots if s is None)
        if missing:
            raise ClusterUnavailable(f"{missing} slots have no primary (cluster not ready)")
        self.cluster = True
        self._slots = slots  # type: ignore[assignment]

    @staticmethod
    def _node_of(client: redis.Redis) -> Node:
        kw = client.connection_pool.connection_kwargs
        return f"{kw['host']}:{kw['port']}"

    def node_for_slot(self, slot: int) -> Node:
        return self._slots[slot]

    def client_for_key(self, key: str) -> redis.Redis:
        return self.client(self._slots[key_slot(key)])

    def primaries(self) -> list[Node]:
        """Every node that owns at least one slot, in slot order."""
        return list(dict.fromkeys(self._slots))

    # -- single calls ----------------------------------------------------
    def execute(self, call: Routable) -> Any:
        """Run one call on its node, following redirects; raise mapped errors."""
        result = self.execute_many([call])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def blocking(self, key: str, *args: Any, block_s: float,
                 parse: Callable[[Any], Any] = lambda r: r) -> Any:
        """A blocking command (BLMOVE, BLMPOP) that blocks up to ``block_s`` (0: forever).

        redis-py's default socket timeout (5 s) would cut a longer block short,
        so the read waits ``block_s`` plus a margin instead.
        """
        timeout = None if block_s == 0 else block_s + BLOCK_MARGIN_S
        return self.execute(Command(tuple(args), key, parse, read_timeout_s=timeout))

    # -- batches ---------------------------------------------------------
    def execute_many(self, calls: Sequence[Routable]) -> list[Any]:
        """Run calls pipelined per node; results (or exceptions) in call order."""
        started = time.perf_counter()
        try:
            return self._execute_many(calls)
        finally:
            elapsed = time.perf_counter() - started
            for function in {getattr(c, "function", None) for c in calls} - {None}:
                FCALL_LATENCY.labels(function).observe(elapsed)

    def _execute_many(self, calls: Sequence[Routable]) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        deadline = time.monotonic() + self.retry_window_s
        asking: dict[int, Node] = {}
        reloaded: set[int] = set()
        attempt = 0
        while pending:
            retry, refresh = self._send_round(calls, pending, results, asking, reloaded)
            if not retry:
                break
            if time.monotonic() > deadline:
                for i in retry:
                    results[i] = ClusterUnavailable(f"gave up after {self.retry_window_s}s: {results[i]}")
                break
            if refresh:
                time.sleep(min(0.05 * (2 ** attempt), 0.5))
                attempt += 1
                try:
                    self.refresh()
                except ClusterUnavailable:
                    pass
            pending = retry
        return [self._finish(calls[i], results[i]) for i in range(len(calls))]

    @staticmethod
    def _finish(call: Routable, result: Any) -> Any:
        if isinstance(result, rexc.ResponseError):
            mapped = error_from_reply(str(result))
            return mapped if mapped is not None else EngineError(f"{call.command()[:2]}: {result}")
        if isinstance(result, Exception):
            return result
        return call.parse(result)

    def _send_round(self, calls: Sequence[Routable], pending: list[int], results: list[Any],
                    asking: dict[int, Node], reloaded: set[int]) -> tuple[list[int], bool]:
        """One pipelined round over every node; returns (indices to retry, refresh first?).

        Every connection taken here is released on every path: a call whose
        arguments cannot be encoded is refused alone (ContractError) before
        anything is written, and any other exception (even KeyboardInterrupt)
        disconnects and releases the connections still held before it escapes.
        """
        by_node: dict[Node, list[int]] = {}
        for i in pending:
            node = asking.get(i) or self._slots[calls[i].slot if calls[i].slot >= 0 else 0]
            by_node.setdefault(node, []).append(i)
        sent: list[tuple[Node, Any, list[int]]] = []
        retry: list[int] = []
        refresh = False
        try:
            for node, idx in by_node.items():
                if not self._send_to(node, idx, calls, results, asking, sent):
                    retry.extend(i for i in idx if not isinstance(results[i], ContractError))
                    refresh = True
            while sent:
                node, conn, idx = sent.pop(0)
                r, f = self._read_replies(node, conn, idx, calls, results, asking, reloaded)
                retry.extend(r)
                refresh = refresh or f
        finally:
            for node, conn, _ in sent:  # left only when an exception escapes
                conn.disconnect()
                self.connections(node).give(conn)
        return retry, refresh

    def _send_to(self, node: Node, idx: list[int], calls: Sequence[Routable], results: list[Any],
                 asking: dict[int, Node], sent: list[tuple[Node, Any, list[int]]]) -> bool:
        """Write one node's calls on one pooled connection; False when the node must be retried."""
        pool = self.connections(node)
        try:
            conn: Any = pool.take()
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
            for i in idx:
                results[i] = e
            return False
        try:
            packed, idx = self._pack(conn, idx, calls, results, asking)
            if idx:
                conn.send_packed_command(packed)
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
            conn.disconnect()
            pool.give(conn)
            for i in idx:
                results[i] = e
            return False
        except BaseException:
            conn.disconnect()
            pool.give(conn)
            raise
        if idx:
            sent.append((node, conn, idx))
        else:
            pool.give(conn)  # every call was refused: nothing was written
        return True

    @staticmethod
    def _pack(conn: Any, idx: list[int], calls: Sequence[Routable], results: list[Any],
              asking: dict[int, Node]) -> tuple[Any, list[int]]:
        """RESP bytes for the calls that can be encoded; the others get a ContractError."""

        def commands(indices: list[int]) -> list[tuple[Any, ...]]:
            out: list[tuple[Any, ...]] = []
            for i in indices:
                if i in asking:
                    out.append(("ASKING",))
                out.append(calls[i].command())
            return out

        try:
            return conn.pack_commands(commands(idx)), idx
        except _UNENCODABLE:
            pass  # rare: find the calls at fault, send the rest
        good = []
        for i in idx:
            refusal = _encoding_refusal(conn, calls[i].command())
            if refusal is None:
                good.append(i)
            else:
                results[i] = refusal
        return conn.pack_commands(commands(good)), good

    def _read_replies(self, node: Node, conn: Any, idx: list[int], calls: Sequence[Routable],
                      results: list[Any], asking: dict[int, Node],
                      reloaded: set[int]) -> tuple[list[int], bool]:
        pool = self.connections(node)
        retry: list[int] = []
        refresh = False
        reloaded_nodes: set[Node] = set()
        n = 0
        try:
            for n, i in enumerate(idx):  # noqa: B007 - n says where a broken connection stopped
                if i in asking:
                    self._read_one(conn)  # the ASKING +OK
                    del asking[i]
                reply = self._read_one(conn, getattr(calls[i], "read_timeout_s", SENTINEL))
                results[i] = reply
                if not isinstance(reply, Exception):
                    continue  # the common case: no string work on successful replies
                # MovedError subclasses AskError in redis-py: test it first.
                if (isinstance(reply, (rexc.MovedError, *_RETRYABLE_CONN)) or _is_readonly(reply)
                        or _is_slot_in_flux(reply)):
                    retry.append(i)
                    refresh = True
                elif isinstance(reply, rexc.AskError) and _writes_many_keys(calls[i]):
                    # Half the slot has moved. Running the function on the importing
                    # node would create second copies of keys still on the source, so
                    # wait (back-off and retry) until the migration ends with MOVED.
                    retry.append(i)
                    refresh = True
                elif isinstance(reply, rexc.AskError):
                    asking[i] = f"{reply.host}:{reply.port}"
                    retry.append(i)
                elif _is_missing_function(reply) and self.on_missing_library and i not in reloaded:
                    # A failover or FUNCTION FLUSH dropped the library: load it once, retry once.
                    if node not in reloaded_nodes:
                        self.on_missing_library(self.client(node))
                        reloaded_nodes.add(node)
                    reloaded.add(i)
                    retry.append(i)
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as e:
            conn.disconnect()
            for i in idx[n:]:
                results[i] = e
                retry.append(i)
            refresh = True
        except BaseException:
            conn.disconnect()  # replies may be left unread: the next borrower must not read them
            raise
        finally:
            pool.give(conn)
        return retry, refresh

    @staticmethod
    def _read_one(conn: Any, timeout: Any = SENTINEL) -> Any:
        try:
            return conn.read_response(timeout=timeout)
        except rexc.ResponseError as e:
            return e

    def close(self) -> None:
        for connections in self._connections.values():
            connections.close()
        for client in self._clients.values():
            client.close()
            client.connection_pool.disconnect()
