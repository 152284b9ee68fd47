"""The router's own connections: lent without redis-py's per-checkout poll, and still never
lent with a reply left unread, closed by the server, or shared across a fork."""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

from engine import router as router_module
from engine.router import Command, Router

pytestmark = pytest.mark.server

KEY = "conn{t}"


def client_id(router: Router) -> int:
    return int(router.execute(Command(("CLIENT", "ID"), KEY)))


class Interrupt(BaseException):
    """Stands for anything that can end a round between two replies (a signal, a bug)."""


class InterruptedRead:
    """A call whose reply is never read: asking for its read timeout interrupts the round."""

    def __init__(self, command: Command) -> None:
        self._command = command
        self.slot = command.slot

    def command(self) -> tuple[Any, ...]:
        return self._command.command()

    def parse(self, reply: Any) -> Any:
        return reply

    @property
    def read_timeout_s(self) -> Any:
        raise Interrupt


def test_a_round_interrupted_between_replies_leaves_nothing_for_the_next_call(standalone_server):
    router = Router(standalone_server.url)
    router.execute(Command(("SET", KEY, "first"), KEY))
    with pytest.raises(Interrupt):
        router.execute_many([Command(("GET", KEY), KEY), InterruptedRead(Command(("ECHO", "stale"), KEY))])
    assert router.connections(router.node_for_slot(0)).lent == 0
    assert router.execute(Command(("ECHO", "fresh"), KEY)) == "fresh"  # not the unread "stale"
    router.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_reused(standalone_server, monkeypatch):
    monkeypatch.setattr(router_module, "IDLE_CHECK_S", 0.0)  # poll every connection before lending it
    router = Router(standalone_server.url)
    before = client_id(router)
    refreshes = []
    original = router.refresh
    monkeypatch.setattr(router, "refresh", lambda: (refreshes.append(1), original())[1])
    killer = redis.Redis.from_url(standalone_server.url)
    killer.execute_command("CLIENT", "KILL", "ID", before)  # type: ignore[no-untyped-call]
    killer.close()
    after = client_id(router)
    assert after != before
    assert refreshes == []  # replaced before the call was sent: no failed round, no retry
    router.close()


def test_a_connection_the_server_closed_while_in_use_is_retried_on_a_new_one(standalone_server):
    router = Router(standalone_server.url)  # the connection was given back moments ago: lent unpolled
    before = client_id(router)
    killer = redis.Redis.from_url(standalone_server.url)
    killer.execute_command("CLIENT", "KILL", "ID", before)  # type: ignore[no-untyped-call]
    killer.close()
    assert client_id(router) != before
    assert router.connections(router.node_for_slot(0)).lent == 0
    router.close()


def test_a_forked_child_makes_its_own_connections_and_leaves_the_parents_working(standalone_server):
    router = Router(standalone_server.url)
    parent_id = client_id(router)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, then leave without cleanup
        try:
            os.write(write_end, str(client_id(router)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_id = int(os.read(read_end, 64))
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_id != parent_id
    assert client_id(router) == parent_id  # the child neither used nor shut down the parent's socket
    router.close()


def test_new_connections_do_not_look_up_redis_py_s_version_each_and_still_name_the_client(
        standalone_server, monkeypatch):
    router = Router(standalone_server.url)
    try:
        lookups = []
        real_version = redis.utils.metadata.version

        def counted(name: str) -> str:
            lookups.append(name)
            return real_version(name)

        monkeypatch.setattr(redis.utils.metadata, "version", counted)
        connections = router.connections(router.node_for_slot(Command(("GET", KEY), KEY).slot))
        made = [connections.take() for _ in range(5)]  # none idle: five new connections
        for conn in made:
            connections.give(conn)
        assert lookups == []
        info = router.execute(Command(("CLIENT", "INFO"), KEY))
        assert f"lib-name=redis-py lib-ver={real_version('redis')}" in info
    finally:
        router.close()
