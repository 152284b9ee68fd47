"""The benchmark CLI runs end to end at a tiny size (shape only: no timing is asserted)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import bench

pytestmark = pytest.mark.server


def test_submit_claim_complete_prints_one_json_object_and_completes_every_task() -> None:
    args = ["submit-claim-complete", "--tasks", "200", "--workers", "2", "--concurrency", "4",
            "--standalone", "--timeout-s", "30", "--json"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scenario"] == "submit-claim-complete"
    assert (out["tasks"], out["workers"]) == (200, 2)
    for key in ("ops_per_s", "p50_ms", "p99_ms", "commands_per_job"):
        assert isinstance(out["flowslot"][key], (int, float)), key
    assert out["flowslot"]["completed"] == 200 and not out["flowslot"]["timed_out"]
    assert out["baseline"]["completed"] == 200 and out["baseline"]["ops_per_s"] > 0
    flowslot_over_baseline = out["flowslot"]["ops_per_s"] / out["baseline"]["ops_per_s"]
    assert out["ratio"] == pytest.approx(flowslot_over_baseline, rel=0.01)
    assert out["server"]["mode"] == "standalone" and out["server"]["version"]
    assert out["machine"]["cpu_count"] and out["machine"]["python"]
    assert isinstance(out["git"], str) and out["git"]
