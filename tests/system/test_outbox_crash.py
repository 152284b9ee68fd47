"""The outbox on a real cluster: a message whose sender never flushed it is applied by the
reconciler's scanner exactly once, and two flushers racing apply each message once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from engine import outbox
from engine.client import Client
from engine.router import Command
from keys import key_slot
from reconciler import OutboxScanner
from tests import outbox_lib
from tests.conftest import TEST_PARTITIONS

pytestmark = [pytest.mark.server, pytest.mark.system]

SENDER = """
import os, sys, time
from engine.client import Client
from tests import outbox_lib
client = Client(sys.argv[1], namespace=sys.argv[2], partitions=int(sys.argv[3]))
outbox_lib.send(client, int(sys.argv[4]), int(sys.argv[5]), count=int(sys.argv[6]))
print("sent", flush=True)
time.sleep(60)  # killed here, before any flush
"""


def two_partitions_on_two_nodes(client):
    """A sender and a target partition served by different primaries."""
    node_of = {p: client.router.node_for_slot(key_slot(client.keys.prefix(p).encode()))
               for p in range(TEST_PARTITIONS)}
    target = next(p for p in range(1, TEST_PARTITIONS) if node_of[p] != node_of[0])
    return 0, target


def total(client, partition):
    key = outbox_lib.counter(client.keys, partition)
    return int(client.run(Command(("GET", key), key)) or 0)


@pytest.fixture
def client(cluster, namespace):
    c = Client(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
    outbox_lib.load(c)
    yield c
    c.close()


def test_a_message_whose_sender_was_killed_before_flushing_is_applied_by_the_scanner_once(cluster, namespace,
                                                                                        client):
    sender, target = two_partitions_on_two_nodes(client)
    proc = subprocess.Popen([sys.executable, "-c", SENDER, cluster.url, namespace, str(TEST_PARTITIONS),
                             str(sender), str(target), "3"], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert total(client, target) == 0
    first = OutboxScanner(age_s=0).run(client, range(TEST_PARTITIONS))
    assert first.repaired == 3 and not first.errors
    assert total(client, target) == 1 + 2 + 3
    assert OutboxScanner(age_s=0).run(client, range(TEST_PARTITIONS)).repaired == 0
    assert total(client, target) == 6


def test_two_flushers_racing_on_one_outbox_apply_each_message_exactly_once(cluster, namespace, client):
    sender, target = two_partitions_on_two_nodes(client)
    for _ in range(20):
        outbox_lib.send(client, sender, target, count=5)
    raws = [client.run(outbox.due_call(client.keys, sender)) for _ in range(2)]
    assert raws[0] == raws[1] and len(raws[0]) == 100          # both flushers read the same 100 messages
    barrier = threading.Barrier(2)
    results = [None, None]

    def flush(i):
        c = Client(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
        try:
            barrier.wait(timeout=10)
            results[i] = outbox.apply(c, sender, raws[i])
        finally:
            c.close()

    threads = [threading.Thread(target=flush, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    outcomes = [results[0].applied[m] + "/" + results[1].applied[m] for m, _ in raws[0]]
    assert all(o in ("applied/duplicate", "duplicate/applied") for o in outcomes), outcomes
    assert total(client, target) == 20 * (1 + 2 + 3 + 4 + 5)
    assert client.run(outbox.due_call(client.keys, sender)) == []
