"""The benchmark's worker-process plumbing: counts reach the parent, the stop flag is seen."""

from __future__ import annotations

from bench.procs import CTX, Child, publish_counts
from engine.recorder import WorkerStats


def _child() -> tuple[Child, object, object]:
    stop, counters = CTX.RawValue("b", 0), CTX.Array("q", 2, lock=False)
    return Child(1, stop, counters, CTX.Queue(), deadline_s=60), stop, counters


def test_published_stats_report_succeeded_plus_failed_to_the_parent_at_each_change() -> None:
    child, _, counters = _child()
    stats = WorkerStats()
    publish_counts(stats, child)
    stats.succeeded += 1
    stats.succeeded += 1
    stats.failed += 1
    stats.claimed += 5  # not a finished job: not reported
    assert list(counters) == [0, 3]  # type: ignore[call-overload]
    assert isinstance(stats, WorkerStats) and (stats.claimed, stats.succeeded, stats.failed) == (5, 2, 1)


def test_a_child_stops_once_the_parent_sets_the_stop_flag() -> None:
    child, stop, _ = _child()
    assert not child.stopping(0.001)
    stop.value = 1  # type: ignore[attr-defined]
    assert child.stopping(0.001)
