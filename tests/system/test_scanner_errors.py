"""A broken partition or a failing scanner costs only itself: the rest is still repaired.

The fault planted here is a real one: a STRING where one partition's
``delayed`` index lives, so that partition's ``exec_promote`` answers
WRONGTYPE on every pass.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import pytest

from engine import executions as X
from engine import metrics
from engine.router import Command
from reconciler import DeadlineExpiry, DelayedPromoter, Reconciler, Scanner
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]


def submit_without_hint(app, partition, *, delay_ms=0, deadline_in_ms=0):
    spec, partition = app.prepare("basic.add", (1, 1), partition=partition)
    spec = dataclasses.replace(spec, delay_ms=delay_ms, deadline_in_ms=deadline_in_ms)
    app.client.run(X.submit(app.client.keys, spec, partition))
    return spec.execution_id


def back_date(app, partition, eid):
    """Make delayed work due long ago, so the promoter owes it a promotion."""
    delayed = app.client.keys.delayed(partition)
    app.client.run(Command(("ZADD", delayed, 1, eid), delayed))


def state_of(app, partition, eid):
    key = app.client.keys.execution(partition, eid)
    return app.client.run(Command(("HGET", key, "state"), key))


def break_partition(app, partition):
    """A STRING where the partition's delayed index lives: its exec_promote errors WRONGTYPE."""
    delayed = app.client.keys.delayed(partition)
    app.client.run(Command(("SET", delayed, "not a zset"), delayed))


def errors_counted(scanner: str) -> float:
    return metrics.REGISTRY.get_sample_value("flowslot_scanner_errors_total", {"scanner": scanner}) or 0.0


def skipped_lines(caplog, scanner: str, partition: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.getMessage().startswith(f"scanner {scanner} skipped partition {partition}:")]


def test_one_partitions_error_skips_only_that_partition_in_a_pass(cluster, namespace, make_app, caplog):
    app = make_app(cluster.url, namespace)
    good, bad = 2, 5
    eid = submit_without_hint(app, good, delay_ms=3_600_000)
    back_date(app, good, eid)
    break_partition(app, bad)
    before = errors_counted("delayed")
    result = Reconciler(app.client, [DelayedPromoter()]).run_pass()["delayed"]
    assert (result.repaired, result.errors, result.failed_partitions) == (1, 1, [bad])
    assert state_of(app, good, eid) == "ready"
    assert errors_counted("delayed") == before + 1
    [line] = skipped_lines(caplog, "delayed", bad)
    assert "WRONGTYPE" in line.getMessage()


def test_a_broken_partition_neither_starves_the_next_scanner_nor_floods_the_log(cluster, namespace, make_app,
                                                                                caplog):
    app = make_app(cluster.url, namespace)
    good, bad = 3, 9
    late = submit_without_hint(app, good, deadline_in_ms=50)
    due = submit_without_hint(app, good, delay_ms=3_600_000)
    back_date(app, good, due)
    break_partition(app, bad)
    passes = {"delayed": 0, "timeouts": 0}
    before = errors_counted("delayed")
    scanners = [DelayedPromoter(interval_s=0.05), DeadlineExpiry(interval_s=0.05)]  # the broken one first

    def count(name, result):
        passes[name] += 1

    reconciler = Reconciler(app.client, scanners, on_result=count).start()
    try:
        wait_until(lambda: state_of(app, good, late) == "expired", what="the deadline scanner's repair")
        wait_until(lambda: passes["delayed"] >= 5, what="five passes of the delayed scanner")
    finally:
        reconciler.stop()
    assert state_of(app, good, due) == "ready"
    assert errors_counted("delayed") == before + passes["delayed"]  # one skipped partition per pass
    assert len(skipped_lines(caplog, "delayed", bad)) == 1  # rate-limited: once a minute


class Exploding(Scanner):
    """A scanner with a bug: every pass raises before anything is sent."""

    name = "exploding"

    def __init__(self) -> None:
        super().__init__(interval_s=0.05)
        self.tries = 0

    def call(self, client, partition):
        self.tries += 1
        raise RuntimeError("a bug in this scanner")


def test_a_failing_scanner_backs_off_and_the_others_keep_running(cluster, namespace, make_app, caplog):
    app = make_app(cluster.url, namespace)
    late = submit_without_hint(app, 4, deadline_in_ms=50)
    exploding = Exploding()
    before = errors_counted("exploding")
    reconciler = Reconciler(app.client, [exploding, DeadlineExpiry(interval_s=0.05)])
    started = time.monotonic()
    reconciler.start()
    try:
        wait_until(lambda: state_of(app, 4, late) == "expired", what="the deadline scanner's repair")
        wait_until(lambda: exploding.tries >= 4, what="four tries of the failing scanner")
    finally:
        reconciler.stop()
    ran_s = time.monotonic() - started
    # Try k comes at least interval × (2 + 4 + … + 2^(k-1)) after the first, so in
    # ran_s there are at most log2(ran_s / interval + 2) of them; a loop without
    # back-off would have tried every 10 ms.
    assert exploding.tries <= math.log2(ran_s / exploding.interval_s + 2) + 1e-9
    assert errors_counted("exploding") == before + exploding.tries
    failures = [r for r in caplog.records if r.getMessage().startswith("scanner exploding failed")]
    assert len(failures) == 1 and failures[0].exc_info is not None  # first of the streak, with traceback
