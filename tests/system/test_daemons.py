"""Several daemons share the partitions; a killed one's partitions and stragglers move on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest

from engine import executions as X
from engine.router import Command
from tests.conftest import TEST_PARTITIONS
from tests.integration.workers import ROOT
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]


def start_daemon(url, namespace, metrics_port=0):
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "daemon", "--url", url, "--namespace", namespace,
         "--partitions", str(TEST_PARTITIONS), "--lease-ttl-s", "1", "--metrics-port", str(metrics_port),
         "--scanner", "delayed=0.2", "--log-json"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def owners(app):
    ks = app.client.keys
    return app.client.run_many([Command(("GET", ks.owner(p)), ks.owner(p)) for p in range(ks.partitions)])


def settled_shares(app, daemons: int) -> Counter[str] | None:
    """The owners' shares once every partition has an owner among ``daemons`` live daemons
    and the shares are fair; None while a rebalance is still moving partitions."""
    share = Counter(owners(app))
    if None in share or len(share) != daemons or max(share.values()) - min(share.values()) > 1:
        return None
    return share




def test_a_killed_daemons_partitions_and_stragglers_are_taken_over(cluster, namespace, make_app):
    app = make_app(cluster.url, namespace)
    daemons = [start_daemon(cluster.url, namespace) for _ in range(3)]
    try:
        share = wait_until(lambda: settled_shares(app, 3), what="three owners with fair shares")
        assert sum(share.values()) == TEST_PARTITIONS
        victim = daemons[0]
        victim_id = next(o for o in share if f":{victim.pid}:" in o)
        victim_partitions = [p for p, o in enumerate(owners(app)) if o == victim_id]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        # Straggler work in the dead daemon's partition: a delayed execution, back-dated.
        partition = victim_partitions[0]
        spec, _ = app.prepare("basic.add", (1, 1))
        spec = X.SubmitSpec(f"e_{partition:04x}_{spec.execution_id[7:]}", spec.task, spec.lane,
                            spec.payload, delay_ms=3_600_000)
        app.client.run(X.submit(app.client.keys, spec, partition))
        delayed = app.client.keys.delayed(partition)
        app.client.run(Command(("ZADD", delayed, 1, spec.execution_id), delayed))
        survivors = wait_until(lambda: settled_shares(app, 2), what="re-ownership by the two survivors")
        assert victim_id not in survivors
        key = app.client.keys.execution(partition, spec.execution_id)
        wait_until(lambda: app.client.run(Command(("HGET", key, "state"), key)) == "ready",
                   what="the straggler to be promoted by a surviving daemon")
        survivor = daemons[1]
        survivor_id = next(o for o in survivors if f":{survivor.pid}:" in o)
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=20) == 0
        wait_until(lambda: survivor_id not in owners(app), what="SIGTERM to release the partitions")
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
            d.wait(timeout=10)
            d.stderr.close()


def test_the_daemon_serves_metrics_and_health(cluster, namespace, make_app):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_app(cluster.url, namespace)
    daemon = start_daemon(cluster.url, namespace, metrics_port=port)
    try:
        def fetch(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return r.status, r.read().decode()
            except OSError:
                return None

        status, body = wait_until(lambda: fetch("/healthz"), what="the health endpoint")
        assert status == 200 and json.loads(body)["ok"] is True
        # every scanner's series appears after its first pass; the first passes run one after another
        wait_until(lambda: 'flowslot_scanner_repairs_total{scanner="lease_expiry"}'
                   in (fetch("/metrics") or (0, ""))[1], what="scanner metrics")
        _, metrics = fetch("/metrics")
        assert "flowslot_scanner_passes_total" in metrics
        assert 'flowslot_partitions_owned' in metrics
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        daemon.stderr.close()
