"""The benchmark CLI runs end to end at a tiny size (shape only: no timing is asserted)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import bench

pytestmark = pytest.mark.server


def test_submit_claim_complete_prints_one_json_object_and_completes_every_task() -> None:
    args = ["submit-claim-complete", "--tasks", "200", "--workers", "1,2", "--repeat", "2",
            "--concurrency", "4", "--standalone", "--timeout-s", "30", "--json"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scenario"] == "submit-claim-complete"
    assert (out["tasks"], out["workers"], out["repeat"]) == (200, [1, 2], 2)
    for workers in (1, 2):
        flowslot, baseline = out[f"flowslot w={workers}"], out[f"baseline w={workers}"]
        for key in ("ops_per_s", "p50_ms", "p99_ms", "commands_per_job"):
            assert isinstance(flowslot[key], (int, float)), key
        assert flowslot["completed"] == baseline["completed"] == 200
        assert flowslot["runs"] == baseline["runs"] == 2
        pairs = out["runs"][str(workers)]
        assert [p["workers"] for p in pairs] == [workers, workers]
        each = [p["flowslot"]["ops_per_s"] / p["baseline"]["ops_per_s"] for p in pairs]
        assert out["ratios"][str(workers)]["each"] == pytest.approx(each, rel=0.01)
    assert out["server"]["mode"] == "standalone" and out["server"]["version"]
    assert out["machine"]["cpu_count"] and out["machine"]["python"]
    assert isinstance(out["git"], str) and out["git"]


def test_submit_claim_complete_prints_its_table_by_worker_count() -> None:
    args = ["submit-claim-complete", "--tasks", "100", "--workers", "1", "--repeat", "1",
            "--concurrency", "2", "--standalone", "--timeout-s", "30"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "flowslot w=1" in result.stdout and "baseline w=1" in result.stdout
    assert "ratio flowslot/baseline (median, min-max over the repeats): 1 worker(s)" in result.stdout


def test_a_scenario_that_takes_one_worker_count_refuses_a_list() -> None:
    result = CliRunner().invoke(bench, ["chain", "--workers", "1,2", "--standalone"])
    assert result.exit_code == 2 and "chain takes one worker count" in result.output

