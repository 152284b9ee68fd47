"""The engine end to end on a real standalone server and a real 3-primary cluster,
with real worker processes."""

from __future__ import annotations

import time

import pytest

from engine import TaskCanceled, TaskFailed
from engine import executions as X
from engine.client import Client
from engine.errors import ConfigMismatch
from tests.conftest import TEST_PARTITIONS

pytestmark = pytest.mark.server


def wait_for_state(handle, state: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while handle.state().value != state:
        assert time.monotonic() < deadline, f"{handle.id} never became {state}"
        time.sleep(0.02)


def test_submit_claim_complete_with_plain_and_async_handlers(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    worker = spawn_worker(server_url, namespace)
    plain = app.submit("basic.add", 2, 3)
    batch = app.submit_many("basic.async_mul", [(i, 3) for i in range(50)])
    assert plain.result(timeout=20) == 5
    assert [h.result(timeout=20) for h in batch] == [i * 3 for i in range(50)]
    assert worker.proc.poll() is None


def test_a_failed_attempt_is_retried_and_then_succeeds(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    handle = app.submit("basic.flaky")
    assert handle.result(timeout=20) == 2  # delayed by back-off, promoted, run again
    assert handle.info()["attempts"] == "2"


def test_a_permanent_error_fails_without_retry(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    handle = app.submit("basic.boom")
    with pytest.raises(TaskFailed) as failure:
        handle.result(timeout=20)
    assert failure.value.kind == "PermanentError"
    assert "can never work" in failure.value.message
    assert handle.info()["attempts"] == "1"


def test_a_task_without_a_handler_fails_and_the_worker_keeps_running(server_url, namespace, make_app,
                                                                     spawn_worker):
    app = make_app(server_url, namespace)
    worker = spawn_worker(server_url, namespace)
    with pytest.raises(TaskFailed) as failure:
        app.submit("basic.does_not_exist").result(timeout=20)
    assert failure.value.kind == "unknown_task"
    assert app.submit("basic.add", 1, 1).result(timeout=20) == 2
    assert worker.proc.poll() is None


def test_cancel_of_a_running_task_is_seen_by_its_handler(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace, lease_ms=600)  # renewals every 200 ms carry the cancel
    handle = app.submit("basic.sleep", 30)
    wait_for_state(handle, "leased")
    assert handle.cancel() == "leased"
    with pytest.raises(TaskCanceled):
        handle.result(timeout=5)
    # The handler noticed and returned; its late result was refused, the worker is free again.
    assert app.submit("basic.add", 2, 2).result(timeout=10) == 4


def test_duplicate_submits_with_one_idempotency_key_create_one_execution(server_url, namespace, make_app):
    app = make_app(server_url, namespace)
    first = app.submit("basic.add", 1, 2, idempotency_key="invoice-42")
    second = app.submit("basic.add", 1, 2, idempotency_key="invoice-42")
    assert first.id == second.id
    assert first.created and not second.created


def test_a_different_partition_count_for_the_same_namespace_is_refused(server_url, namespace):
    Client(server_url, namespace=namespace, partitions=TEST_PARTITIONS).close()
    with pytest.raises(ConfigMismatch, match="partitions are fixed"):
        Client(server_url, namespace=namespace, partitions=TEST_PARTITIONS * 2)


def test_the_library_is_reloaded_after_function_flush(server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    client = app.client
    for node in client.router.primaries():
        client.router.client(node).execute_command("FUNCTION", "FLUSH")
    assert set(client.library_status().values()) == {None}
    handle = app.submit("basic.add", 20, 22)  # "function not found" -> load -> retry once
    spawn_worker(server_url, namespace)
    assert handle.result(timeout=20) == 42
    assert None not in client.library_status().values()


def test_urls_with_acl_credentials_reach_every_node(server_url, namespace, make_app):
    from urllib.parse import urlsplit

    from engine.client import Client

    seed = Client(server_url, namespace=namespace, partitions=TEST_PARTITIONS)
    user = f"u{namespace}"
    for node in seed.router.primaries():  # ACLs are per node, not replicated by the cluster
        seed.router.client(node).execute_command("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all")
    parts = urlsplit(server_url)
    client = Client(f"redis://{user}:s3cret@{parts.hostname}:{parts.port}", namespace=namespace,
                    partitions=TEST_PARTITIONS)
    replies = client.run_many([X.promote(client.keys, p, 1) for p in range(TEST_PARTITIONS)])
    assert replies == [(0, [])] * TEST_PARTITIONS  # one call on every partition, so every node
    with pytest.raises(Exception, match="(?i)invalid username-password|WRONGPASS"):
        Client(f"redis://{user}:wrong@{parts.hostname}:{parts.port}", namespace=namespace,
               partitions=TEST_PARTITIONS)
    for node in seed.router.primaries():
        seed.router.client(node).execute_command("ACL", "DELUSER", user)
    client.close()
    seed.close()


def test_a_worker_serves_its_own_metrics(server_url, namespace, make_app, spawn_worker):
    import socket
    import urllib.request

    from tests.waiting import wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace, metrics_port=port)
    assert app.submit("basic.add", 2, 2).result(timeout=20) == 4

    def scrape():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    def counted():
        body = scrape()
        return body if body and 'flowslot_executions_total{event="succeeded",lane="default"} 1.0' in body else None

    # The worker counts a success when the reply to its completion arrives, which may be
    # just after result() has woken: wait for the count rather than read it once.
    body = wait_until(counted, what="the success in the worker's metrics")
    assert "flowslot_execution_run_seconds_bucket" in body


def test_a_result_waiter_whose_watch_was_lost_still_returns_when_the_execution_ends(
        server_url, namespace, make_app, monkeypatch):
    import threading

    from engine import handle as handle_module
    from engine.router import Command

    monkeypatch.setattr(handle_module, "RECHECK_S", 0.2)
    app = make_app(server_url, namespace)
    handle = app.submit("basic.add", 2, 3)
    ks = app.client.keys
    p = X.execution_partition(ks, handle.id)
    key = ks.execution(p, handle.id)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(handle.result()), daemon=True)
    waiter.start()
    deadline = time.monotonic() + 5
    while app.client.run(Command(("HGET", key, "watched"), key)) != "1":
        assert time.monotonic() < deadline, "the waiter never asked for the done marker"
        time.sleep(0.01)
    app.client.run(Command(("HDEL", key, "watched"), key))  # as a failover that lost the write would
    claimed = app.client.run(X.claim(ks, p, "default", 10, 30_000, "w")).claimed[0]
    app.client.run(X.complete(ks, handle.id, claimed.token, "5"))
    waiter.join(timeout=5)
    assert got == [5]
