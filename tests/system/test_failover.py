"""A primary dies; its replica takes over; submit, claim and complete carry on, nothing lost."""

from __future__ import annotations

import pytest

from engine import App
from engine.localcluster import LocalCluster
from engine.worker import Worker
from keys import partition_of_key, partition_slot
from tests.apps import basic
from tests.conftest import TEST_PARTITIONS

pytestmark = [pytest.mark.server, pytest.mark.system]


def test_work_survives_the_failover_of_a_primary(namespace):
    with LocalCluster(primaries=3, replicas=1) as cluster:
        app = App(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
        app.tasks.update(basic.app.tasks)
        worker = Worker(app, ["default"], concurrency=8, lease_ms=3000).start()
        try:
            keys = [k for k in (f"job-{i}" for i in range(4000))
                    if partition_of_key(k, TEST_PARTITIONS) == 7][:30]
            before = [app.submit("basic.add", i, 1, idempotency_key=k) for i, k in enumerate(keys[:15])]
            assert [h.result(timeout=20) for h in before] == [i + 1 for i in range(15)]
            victim = cluster.slot_owner(partition_slot(7, TEST_PARTITIONS))
            cluster.kill_node(victim)
            # Calls to the dead node fail, the router refreshes and retries until the
            # replica is promoted (cluster-node-timeout 2 s), then everything goes on.
            after = [app.submit("basic.add", i, 1, idempotency_key=k)
                     for i, k in enumerate(keys[15:], 15)]
            assert [h.result(timeout=30) for h in after] == [i + 1 for i in range(15, 30)]
            assert cluster.slot_owner(partition_slot(7, TEST_PARTITIONS)) != victim
            assert None not in app.client.library_status().values()  # functions reached the replica
        finally:
            worker.stop_and_wait()
            app.close()
