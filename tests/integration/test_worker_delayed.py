"""Delayed work runs with a worker alone: the worker promotes due delayed executions itself."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.server


def test_a_delayed_task_runs_with_only_a_worker_and_no_daemon(cluster, namespace, make_app, spawn_worker):
    spawn_worker(cluster.url, namespace)
    app = make_app(cluster.url, namespace)
    handle = app.submit("basic.add", 2, 3, delay_s=1)
    assert handle.state() == "delayed"
    assert handle.result(timeout=30) == 5
