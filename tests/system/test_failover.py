"""A primary is SIGKILLed while submits, claims and completions run; its replica takes over.

Replication is asynchronous: a write the dying primary acknowledged may not
have reached its replica. The test counts every acknowledged submit after the
failover and holds the system to what that design can promise:

- every acknowledged submit still on the cluster ends ``succeeded`` exactly
  once (one execution per idempotency key, the right result, the succeeded
  counters equal to the number of executions);
- one that is gone (its submit was lost with the primary) belongs to a
  partition of the killed primary and was sent before the kill; nothing on a
  live node's partitions, or sent after the kill, is ever missing. (Its
  ``submit()`` may return after the failover all the same: the hint pushed
  after the FCALL waits for the new primary when its list was on the dead one.)

A claim or completion lost the same way is redone (the execution is ready
again, or its lease expires and it is retried), which the first point covers. The test prints how many
acknowledged submits were lost (``pytest -rP`` shows it).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import pytest
import redis

from engine import App
from engine import executions as X
from engine.errors import ClusterUnavailable, NotFound
from engine.localcluster import LocalCluster
from engine.router import Command
from keys import partition_of_key, partition_slot
from reconciler import DelayedPromoter, DependencyScanner, HintRepair, LeaseExpiry, Reconciler
from tests.apps import basic
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]


@dataclass
class Submitted:
    key: str
    value: int
    execution_id: str
    partition: int
    sent_at: float
    acked_at: float


class Submitters:
    """Threads that submit ``basic.add(i, 1)`` with idempotency key ``job-<thread>-<i>`` until stopped."""

    def __init__(self, app: App, threads: int = 2) -> None:
        self.app = app
        self.acked: list[Submitted] = []
        self.unacked: list[str] = []  # keys whose submit gave up (ClusterUnavailable): promised nothing
        self.errors: list[Exception] = []  # anything else a submit raised
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, thread: int) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"job-{thread}-{i}"
            sent_at = time.monotonic()
            try:
                handle = self.app.submit("basic.add", i, 1, idempotency_key=key)
            except ClusterUnavailable:
                self.unacked.append(key)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)
            else:
                partition = X.execution_partition(self.app.client.keys, handle.id)
                self.acked.append(Submitted(key, i + 1, handle.id, partition, sent_at, time.monotonic()))
            i += 1

    def start(self) -> Submitters:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def states(app: App, submitted: list[Submitted]) -> list[str | None]:
    keys = [app.client.keys.execution(s.partition, s.execution_id) for s in submitted]
    return app.client.run_many([Command(("HGET", k, "state"), k) for k in keys])


def landed(app: App, idempotency_keys: list[str]) -> list[str]:
    """Execution ids that unacknowledged submits created all the same (their idempotency records)."""
    ks = app.client.keys
    idem = [ks.idempotency(partition_of_key(k, ks.partitions), k) for k in idempotency_keys]
    return [eid for eid in app.client.run_many([Command(("GET", k), k) for k in idem]) if eid]


def succeeded_counted(app: App) -> int:
    ks = app.client.keys
    replies = app.client.run_many([Command(("HGET", ks.counts(p), "default:succeeded"), ks.counts(p))
                                   for p in range(ks.partitions)])
    return sum(int(r or 0) for r in replies)


def test_acknowledged_work_survives_a_primary_killed_under_load(namespace, spawn_worker):
    with LocalCluster(primaries=3, replicas=1) as cluster:
        app = App(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
        app.tasks.update(basic.app.tasks)
        spawn_worker(cluster.url, namespace, lease_ms=3000, concurrency=8)
        scanners = [LeaseExpiry(), DelayedPromoter(), HintRepair(age_s=1.0), DependencyScanner(age_s=1.0)]
        reconciler = Reconciler(app.client, scanners, interval_s=0.25).start()
        submitters = Submitters(app).start()
        try:
            victim = cluster.slot_owner(partition_slot(7, TEST_PARTITIONS))
            on_victim = {p for p in range(TEST_PARTITIONS)
                         if cluster.slot_owner(partition_slot(p, TEST_PARTITIONS)) == victim}
            wait_until(lambda: len(submitters.acked) >= 300 and succeeded_counted(app) >= 50,
                       timeout_s=30, what="submits and completions under way")
            cluster.kill_node(victim)  # mid-stream: the submitters and the worker keep calling it
            dead_at = time.monotonic()  # the process is reaped: nothing sent later reached it
            wait_until(lambda: cluster.slot_owner(partition_slot(7, TEST_PARTITIONS)) != victim,
                       timeout_s=30, what="the replica's promotion")
            promoted_at = time.monotonic()
            wait_until(lambda: sum(s.acked_at > promoted_at for s in submitters.acked) >= 200,
                       timeout_s=30, what="submits after the failover")
        finally:
            submitters.stop()
        try:
            acked = submitters.acked
            found = states(app, acked)
            lost = [s for s, state in zip(acked, found, strict=False) if state is None]
            print(f"{len(acked)} acknowledged submits, {len(lost)} lost with the killed primary, "
                  f"{len(submitters.unacked)} not acknowledged")
            for s in lost:  # when each was sent and returned, relative to the death of the primary
                print(f"lost {s.execution_id}: sent {s.sent_at - dead_at:+.3f}s, "
                      f"returned {s.acked_at - dead_at:+.3f}s")
            assert all(s.partition in on_victim and s.sent_at < dead_at for s in lost), lost
            kept = [s for s, state in zip(acked, found, strict=False) if state is not None]
            assert [app.handle(s.execution_id).result(timeout=30) for s in kept] == [s.value for s in kept]
            again = [app.submit("basic.add", s.value - 1, 1, idempotency_key=s.key) for s in kept]
            assert [(h.id, h.created) for h in again] == [(s.execution_id, False) for s in kept]
            extra = landed(app, submitters.unacked)
            for eid in extra:
                app.handle(eid).result(timeout=30)
            # One succeeded execution per key, nothing more: no work was duplicated.
            assert succeeded_counted(app) == len(kept) + len(extra)
            assert submitters.errors == []
            assert None not in app.client.library_status().values()  # functions reached the replica
        finally:
            reconciler.stop()
            app.close()


def replica_of(cluster: LocalCluster, slot: int) -> int:
    for start, end, _, replicas in cluster.slot_view(cluster.slot_owner(slot)):
        if start <= slot <= end:
            return int(replicas[0])
    raise AssertionError(f"slot {slot} has no replica")


def test_a_submit_acknowledged_while_the_replica_was_cut_off_is_lost_with_its_primary(namespace):
    """The limit of asynchronous replication, pinned: what a user sees when it is hit."""
    with LocalCluster(primaries=3, replicas=1) as cluster:
        app = App(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
        app.tasks.update(basic.app.tasks)
        try:
            slot = partition_slot(7, TEST_PARTITIONS)
            victim, replica = cluster.slot_owner(slot), replica_of(cluster, slot)
            first, second = [k for k in (f"job-{i}" for i in range(4000))
                             if partition_of_key(k, TEST_PARTITIONS) == 7][:2]
            kept = app.submit("basic.add", 1, 1, idempotency_key=first)
            on_replica = redis.Redis(port=replica, decode_responses=True, single_connection_client=True)
            on_replica.execute_command("READONLY")
            wait_until(lambda: on_replica.exists(app.client.keys.execution(7, kept.id)), what="replication")
            on_replica.close()
            cluster.kill_node(replica, signal.SIGSTOP)  # frozen: it cannot reconnect
            cluster.client(victim).execute_command("CLIENT", "KILL", "TYPE", "replica")
            lost = app.submit("basic.add", 2, 1, idempotency_key=second)  # acknowledged by the primary alone
            cluster.kill_node(victim)
            cluster.kill_node(replica, signal.SIGCONT)
            wait_until(lambda: cluster.slot_owner(slot) == replica, timeout_s=30,
                       what="the replica's promotion")
            assert kept.state().value == "ready"
            with pytest.raises(NotFound):
                lost.info()
            again = app.submit("basic.add", 2, 1, idempotency_key=second)
            assert again.created and again.id != lost.id  # the idempotency record went with it
        finally:
            app.close()
