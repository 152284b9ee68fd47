"""The test harness's worker processes: ready when spawned, output always read."""

from __future__ import annotations

import socket

import pytest

from tests.apps import chatty
from tests.integration.workers import WorkerDidNotStart

pytestmark = pytest.mark.server


def test_a_spawned_worker_has_started_when_spawn_returns(cluster, namespace, spawn_worker):
    worker = spawn_worker(cluster.url, namespace)
    assert any("started" in line for line in worker.lines), worker.lines
    assert worker.proc.poll() is None


def test_a_worker_that_cannot_start_fails_the_spawn_with_its_output(namespace, spawn_worker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(WorkerDidNotStart, match="exited with [1-9]") as failure:
        spawn_worker(f"redis://127.0.0.1:{closed_port}", namespace)
    assert str(closed_port) in str(failure.value)  # the worker's own words about what it could not reach


def test_a_worker_that_prints_more_than_a_pipe_holds_keeps_running(standalone_server, namespace, make_app,
                                                                   spawn_worker):
    app = make_app(standalone_server.url, namespace)
    app.tasks.update(chatty.app.tasks)
    spawn_worker(standalone_server.url, namespace, target="tests.apps.chatty:app")
    # 256 KiB is four times a Linux pipe's default buffer: unread, the handler would block in print().
    assert app.submit("chatty.shout", 256).result(timeout=30) == 256
    assert app.submit("chatty.shout", 1).result(timeout=30) == 1
