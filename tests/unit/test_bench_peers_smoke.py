"""``flowslot bench compare`` end to end at a tiny size: flowslot (standalone and cluster),
RQ (a real peer, in the ``dev`` extra) and one peer reported as not installed. Shape and
correctness only: no timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import compare
from bench.peers import versions
from bench.peers.base import (
    CASCADE,
    FAILED_INSTALL,
    LEAF_FAILS,
    LEAF_TREE,
    S1,
    Sizes,
    expected_states,
)

pytestmark = pytest.mark.server

TINY = Sizes(tasks=40, workers=2, concurrency=4, cascade_wait_s=1.0, timeout_s=20.0)


def _without(peer: str) -> Any:
    def fake(name: str) -> dict[str, str | None]:
        found = versions(name)
        return {dist: None for dist in found} if name == peer else found

    return fake


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare, "versions", _without("celery"))
        result = compare.run_compare([S1, CASCADE], TINY, ["rq", "celery"], True,
                                     lambda text: None, out_dir / "logs")
    result["command"] = "test"
    compare.write(result, out_dir)
    result["_out_dir"] = out_dir
    return result


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_every_system_has_a_cell_for_every_scenario(report: dict[str, Any]) -> None:
    assert set(report["systems"]) == {"flowslot", "baseline", "rq", "celery",
                                      "flowslot (cluster)", "baseline (cluster)"}
    for system in ("flowslot", "flowslot (cluster)", "rq", "celery"):
        assert set(report["systems"][system]) == {S1, CASCADE}, system
    assert report["server"]["mode"] == "standalone" and report["machine"]["cpu_count"]
    assert report["cluster_server"]["mode"] == "cluster"
    assert report["cluster_server"]["primaries"] == 3
    assert report["peers"]["rq"]["versions"]["rq"]
    assert isinstance(report["git"], str) and report["git"]


def test_throughput_cells_carry_jobs_commands_and_round_trips(report: dict[str, Any]) -> None:
    for system in ("flowslot", "baseline", "rq", "flowslot (cluster)"):
        cell = report["systems"][system][S1]
        assert cell["completed"] == cell["tasks"] == TINY.tasks, system
        for key in ("jobs_per_s", "commands_per_job", "round_trips_per_job"):
            assert _number(cell[key]), (system, key)


def test_flowslot_skips_what_needs_the_failed_leaf_and_rq_reports_every_node(
        report: dict[str, Any]) -> None:
    for system in ("flowslot", "flowslot (cluster)"):
        flowslot = report["systems"][system][CASCADE]
        assert flowslot["states"] == expected_states(LEAF_TREE, LEAF_FAILS), system
        assert flowslot["pending"] == [] and _number(flowslot["terminal_ms"]), system
    rq = report["systems"]["rq"][CASCADE]
    assert set(rq["states"]) == set(LEAF_TREE) and rq["states"][LEAF_FAILS] == "failed"
    assert isinstance(rq["pending"], list)


def test_a_peer_that_is_not_installed_is_reported_not_dropped(report: dict[str, Any]) -> None:
    for cell in report["systems"]["celery"].values():
        assert cell["status"] == FAILED_INSTALL and "celery" in cell["why"]
    text = (Path(report["_out_dir"]) / "REPORT.md").read_text()
    assert "| measure |" in text and FAILED_INSTALL in text
    assert (Path(report["_out_dir"]) / "report.json").is_file()
    assert all({"target", "met"} <= set(t) for t in report["targets"])
