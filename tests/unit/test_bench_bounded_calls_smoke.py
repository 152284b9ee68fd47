"""``flowslot bench bounded-calls`` end to end at a tiny size: shape and correctness, no timing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import bench
from bench.scenarios.bounded_calls import PHASES
from bench.slowlog import call_name

pytestmark = pytest.mark.server


def test_bounded_calls_runs_every_phase_at_each_size_and_reports_the_calls_it_logged() -> None:
    result = CliRunner().invoke(bench, [
        "bounded-calls", "--steps", "20,40", "--slowlog-us", "0", "--no-server-priority",
        "--workers", "1", "--concurrency", "4", "--standalone", "--timeout-s", "60", "--json"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["steps"] == [20, 40] and out["server_priority"].startswith("priority not changed")
    for n in (20, 40):
        rows = {phase: out[f"{phase} N={n}"] for phase in PHASES}
        assert rows["fan-in"]["join_result"] == sum(1 + i for i in range(n))
        assert rows["fan-in"]["completed"] == rows["fan-in"]["handler_runs"] == n + 2
        assert rows["roots"]["completed"] == n and rows["fan-out"]["completed"] == n
        assert rows["retention"]["standalone_purged"] == n
        # with a threshold of 0 every call is logged: each phase's own functions are there
        assert "flow_submit" in rows["fan-in"]["calls"] and "exec_claim" in rows["fan-in"]["calls"]
        assert "flow_cancel" in rows["cancel-retry"]["calls"]
        assert "flow_retry" in rows["cancel-retry"]["calls"]
        assert "flow_purge" in rows["retention"]["calls"]
        for row in rows.values():
            assert row["max_call_ms"] == max(c["max_ms"] for c in row["calls"].values())
            assert not row["slowlog_overflowed"]


def test_a_slowlog_entry_is_named_by_its_function_or_its_command() -> None:
    assert call_name(["FCALL", "flow_submit", "1", "k"]) == "flow_submit"
    assert call_name(["fcall_ro", "rec_due", "1", "k"]) == "rec_due"
    assert call_name(["hgetall", "k"]) == "HGETALL"
